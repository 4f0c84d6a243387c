"""The provider simulator behind `flowloom dev mock-provider`.

It speaks Anthropic Messages, OpenAI Chat Completions and Responses, Azure OpenAI and
Gemini exactly as the official SDKs expect (streaming, tool calls, usage) and injects
faults on request: 429 with retry-after, 500, 503, 529, context-window errors, mid-stream
disconnects, slow first tokens, slow streams and hangs. See docs/mock-provider.md.
"""

from __future__ import annotations

from flowloom.gateway.mock.app import MockConfig, MockProvider
from flowloom.gateway.mock.faults import FaultPlan, FaultRule, Faults, parse_fault_spec
from flowloom.gateway.mock.server import MockServer, serve, start_in_thread

__all__ = [
    "FaultPlan",
    "FaultRule",
    "Faults",
    "MockConfig",
    "MockProvider",
    "MockServer",
    "parse_fault_spec",
    "serve",
    "start_in_thread",
]
