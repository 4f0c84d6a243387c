"""OpenTelemetry GenAI spans and metrics for gateway exchanges, when enabled.

Spans follow the GenAI semantic conventions (gen_ai.system, gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens, ...). They are
made after the fact in the recorder's thread, with the exchange's real start and end
times and the caller's `traceparent` as parent, so the hot path pays nothing. The
OpenTelemetry API is imported only when a `Telemetry` is built; exporters are whatever
the process configured (a TracerProvider / MeterProvider set globally, or passed in).
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import ConfigError
from flowloom.gateway.wire.common import Tokens

if TYPE_CHECKING:
    from flowloom.gateway.recorder import Exchange

__all__ = ["EXTRA", "GEN_AI_SYSTEMS", "Telemetry", "require_sdk", "span_attributes"]

EXTRA: Final = "otel"


def require_sdk() -> None:
    """Refuse `--otel` without the OpenTelemetry SDK: the bare API (which other packages
    bring along) would silently drop every span, so say which extra to install."""
    try:
        found = importlib.util.find_spec("opentelemetry.sdk") is not None
    except ImportError:  # not even the API
        found = False
    if not found:
        raise ConfigError(
            f"--otel needs the '{EXTRA}' extra (opentelemetry-sdk is not installed)",
            hint=f"install flowloom[{EXTRA}], or serve without --otel",
        )


GEN_AI_SYSTEMS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "responses": "openai",
    "gemini": "gcp.gemini",
}


def _operation(exchange: Exchange) -> str:
    return "chat" if exchange.format != "responses" else "responses"


def span_attributes(exchange: Exchange, tokens: Tokens, response: Any) -> dict[str, Any]:
    """The gen_ai.* attributes of one exchange."""
    fmt = exchange.upstream_format or exchange.format
    attrs: dict[str, Any] = {
        "gen_ai.system": GEN_AI_SYSTEMS.get(fmt, fmt),
        "gen_ai.operation.name": _operation(exchange),
        "gen_ai.request.model": exchange.model,
        "gen_ai.usage.input_tokens": tokens.input_tokens + tokens.cache_read + tokens.cache_write,
        "gen_ai.usage.output_tokens": tokens.output_tokens,
        "http.response.status_code": exchange.status,
        "flowloom.gateway.stream": exchange.stream,
        "flowloom.gateway.fallbacks": max(len(exchange.attempts) - 1, 0),
    }
    if exchange.upstream_model:
        attrs["gen_ai.response.model"] = exchange.upstream_model
    if exchange.provider:
        attrs["flowloom.gateway.provider"] = exchange.provider
    if exchange.max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = exchange.max_tokens
    if exchange.ttft_s is not None:
        attrs["flowloom.gateway.ttft_ms"] = round(exchange.ttft_s * 1000.0, 3)
    if exchange.status >= 400:
        attrs["error.type"] = str(exchange.status)
    if isinstance(response, dict):
        response_id = response.get("id") or response.get("responseId")
        if isinstance(response_id, str):
            attrs["gen_ai.response.id"] = response_id
        reasons = _finish_reasons(response)
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
    return attrs


def _finish_reasons(response: dict[str, Any]) -> list[str]:
    reasons: list[str] = []
    if isinstance(response.get("stop_reason"), str):
        reasons.append(response["stop_reason"])
    for choice in response.get("choices") or response.get("candidates") or []:
        if isinstance(choice, dict):
            reason = choice.get("finish_reason") or choice.get("finishReason")
            if isinstance(reason, str):
                reasons.append(reason)
    return reasons


class Telemetry:
    """Emits one span and a few metric points per exchange."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.propagate import extract

        self._extract = extract
        self._tracer = trace.get_tracer("flowloom.gateway", tracer_provider=tracer_provider)
        meter = metrics.get_meter("flowloom.gateway", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration"
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used"
        )
        self._ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token", unit="s", description="Time to first token"
        )

    def observe(self, exchange: Exchange, tokens: Tokens, response: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        attrs = span_attributes(exchange, tokens, response)
        context = None
        if exchange.traceparent:
            context = self._extract({"traceparent": exchange.traceparent})
        start_ns = int(exchange.started_at * 1e9)
        end_ns = start_ns + int(exchange.latency_s * 1e9)
        name = f"{attrs['gen_ai.operation.name']} {exchange.model}"
        span = self._tracer.start_span(
            name, context=context, kind=SpanKind.CLIENT, attributes=attrs, start_time=start_ns
        )
        if exchange.status >= 400:
            span.set_status(Status(StatusCode.ERROR, exchange.error or str(exchange.status)))
        span.end(end_time=min(end_ns, time.time_ns()) if end_ns > start_ns else None)
        metric_attrs = {
            "gen_ai.system": attrs["gen_ai.system"],
            "gen_ai.operation.name": attrs["gen_ai.operation.name"],
            "gen_ai.request.model": exchange.model,
        }
        self._duration.record(exchange.latency_s, metric_attrs)
        if tokens.total or tokens.cache_read:
            self._tokens.record(
                attrs["gen_ai.usage.input_tokens"], {**metric_attrs, "gen_ai.token.type": "input"}
            )
            self._tokens.record(
                tokens.output_tokens, {**metric_attrs, "gen_ai.token.type": "output"}
            )
        if exchange.ttft_s is not None and exchange.stream:
            self._ttft.record(exchange.ttft_s, metric_attrs)
