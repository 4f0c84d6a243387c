"""Prometheus metrics of the standalone gateway, served at GET /metrics.

Aggregates only: labels are the caller's wire format, the configured provider name and
the status code — never a key, user, project or model name (model names are the
caller's to choose, so they would also let any caller grow the label set without bound).
So the endpoint, unauthenticated like /healthz, tells a scraper how the gateway runs and
nothing about who uses it.

With several worker processes, each writes its samples to files in a directory the
supervisor made (prometheus_client's multiprocess mode, selected by the
PROMETHEUS_MULTIPROC_DIR environment variable before the first import), and any worker
answering a scrape sums them all. Counted in the recorder's thread, after the response.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from flowloom.gateway.recorder import Exchange
    from flowloom.gateway.wire.common import Tokens

__all__ = ["MULTIPROC_ENV", "GatewayMetrics", "MetricsEndpoint"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """The gateway's counters and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self._multiproc = os.environ.get(MULTIPROC_ENV) or None
        # In multiprocess mode the values live in files: registering them would only
        # double them, so they are made unregistered and collected from the files.
        own = CollectorRegistry(auto_describe=True)
        registry = None if self._multiproc else own
        self._registry = own
        self.requests = Counter(
            "flowloom_gateway_requests",
            "Model calls answered, by caller format, provider and HTTP status.",
            ["format", "provider", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "flowloom_gateway_request_duration_seconds",
            "Model call duration (to the last byte), by caller format.",
            ["format"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.ttft = Histogram(
            "flowloom_gateway_time_to_first_token_seconds",
            "Time to the first streamed byte, by caller format.",
            ["format"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.tokens = Counter(
            "flowloom_gateway_tokens",
            "Tokens used, by provider and type (input, output).",
            ["provider", "type"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "flowloom_gateway_fallbacks",
            "Calls answered by another target than the first.",
            ["format"],
            registry=registry,
        )

    def observe(self, exchange: Exchange, tokens: Tokens, response: Any) -> None:
        """The recorder's observe hook: count one exchange."""
        provider = exchange.provider or "none"
        self.requests.labels(exchange.format, provider, str(exchange.status)).inc()
        self.duration.labels(exchange.format).observe(exchange.latency_s)
        if exchange.stream and exchange.ttft_s is not None:
            self.ttft.labels(exchange.format).observe(exchange.ttft_s)
        if len(exchange.attempts) > 1:
            self.fallbacks.labels(exchange.format).inc()
        inputs = tokens.input_tokens + tokens.cache_read + tokens.cache_write
        if inputs:
            self.tokens.labels(provider, "input").inc(inputs)
        if tokens.output_tokens:
            self.tokens.labels(provider, "output").inc(tokens.output_tokens)

    def render(self) -> bytes:
        if self._multiproc is None:
            return generate_latest(self._registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._multiproc)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class MetricsEndpoint:
    """`GET /metrics` in front of the gateway app; every other request passes through."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] == "GET":
            body = self.metrics.render()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", CONTENT_TYPE_LATEST.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
