"""Wire formats: SSE framing, and for each provider format the few fields the gateway reads."""
