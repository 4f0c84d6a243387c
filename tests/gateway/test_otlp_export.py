"""`flowloom gateway serve --otel` exports GenAI spans and metrics over OTLP/HTTP to the
endpoint the standard variables name: received here by a real OTLP/HTTP listener that
decodes the protobuf requests, as a collector would."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowloom.gateway.mock import MockServer
from tests.gateway.processes import served_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Collector(ThreadingHTTPServer):
    received: list[tuple[str, bytes]]


class _Handler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.server.received.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_otel_exports_spans_and_metrics_over_otlp_http(
    tmp_path: Path, mock_provider: MockServer, collector: _Collector
) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "gateway-under-test"}
    args = ("--open-access", "--upstream", f"openai={mock_provider.url}", "--otel")
    with served_gateway(tmp_path, *args, env=env) as (url, process):
        response = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        process.send_signal(signal.SIGTERM)  # a graceful stop sends what is buffered
        assert process.wait(timeout=60) == 0
    spans = []
    services = set()
    metrics = set()
    for path, body in collector.received:
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            for resource_spans in traces.resource_spans:
                services.update(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    spans.extend(scope.spans)
        elif path == "/v1/metrics":
            exported = ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in exported.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    metrics.update(m.name for m in scope.metrics)
    assert services == {"gateway-under-test"}
    [span] = spans
    attrs = {a.key: a.value for a in span.attributes}
    assert span.name == "chat gpt-4o-mini"
    assert span.trace_id.hex() == TRACE_ID  # parented on the caller's traceparent
    assert attrs["gen_ai.request.model"].string_value == "gpt-4o-mini"
    assert attrs["gen_ai.system"].string_value == "openai"
    assert attrs["gen_ai.usage.output_tokens"].int_value > 0
    assert "gen_ai.client.operation.duration" in metrics
