"""OpenTelemetry GenAI spans and metrics for gateway exchanges, when enabled.

Spans follow the GenAI semantic conventions (gen_ai.system, gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens, ...). They are
made after the fact in the recorder's thread, with the exchange's real start and end
times and the caller's `traceparent` as parent, so the hot path pays nothing. The
OpenTelemetry API is imported only when a `Telemetry` is built; spans and metrics go to
the providers passed in, else to the process's global ones. `otlp_providers()` makes
providers that export over OTLP/HTTP, configured by the standard environment variables
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, ...):
what `flowloom gateway serve --otel` uses, one set per worker process.
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import ConfigError
from flowloom.gateway.wire.common import Tokens

if TYPE_CHECKING:
    from flowloom.gateway.recorder import Exchange

__all__ = [
    "EXTRA",
    "GEN_AI_SYSTEMS",
    "OtlpProviders",
    "Telemetry",
    "otlp_providers",
    "require_sdk",
    "span_attributes",
]

EXTRA: Final = "otel"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # not even the parent package
        return False


def require_sdk(*, exporter: bool = False) -> None:
    """Refuse `--otel` without the OpenTelemetry SDK (and, to export, its OTLP exporter):
    the bare API (which other packages bring along) would silently drop every span, so
    say which extra to install."""
    needed = [("opentelemetry.sdk", "opentelemetry-sdk")]
    if exporter:
        needed.append(
            ("opentelemetry.exporter.otlp.proto.http", "opentelemetry-exporter-otlp-proto-http")
        )
    for module, package in needed:
        if not _installed(module):
            raise ConfigError(
                f"--otel needs the '{EXTRA}' extra ({package} is not installed)",
                hint=f"install flowloom[{EXTRA}], or serve without --otel",
            )


class OtlpProviders:
    """A TracerProvider and a MeterProvider exporting over OTLP/HTTP; close() flushes."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    def close(self) -> None:
        """Send what is buffered (spans in the batch, the last metric points), then stop."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def otlp_providers(*, service_name: str = "flowloom-gateway") -> OtlpProviders:
    """Providers exporting to the OTLP/HTTP endpoint the environment names (default
    http://localhost:4318); OTEL_SERVICE_NAME, when set, overrides `service_name`."""
    require_sdk(exporter=True)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.environment_variables import OTEL_SERVICE_NAME
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get(OTEL_SERVICE_NAME) or service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return OtlpProviders(tracer_provider, meter_provider)


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
