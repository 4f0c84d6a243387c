"""Fault specs, the seeded RNG, the schema-driven tool arguments, and the /_mock/ endpoints."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from flowloom.errors import InputError
from flowloom.gateway.mock import FaultPlan, MockServer, parse_fault_spec
from flowloom.gateway.mock.content import arguments_for, count_tokens
from flowloom.gateway.mock.faults import parse_header

MESSAGES = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}


def test_parse_spec_and_header() -> None:
    rules = parse_fault_spec("429:0.1, 500:0.05, claude-opus*@529:1, disconnect;after=3:0.5")
    assert [(r.kind, r.model, r.probability) for r in rules] == [
        ("429", "*", 0.1),
        ("500", "*", 0.05),
        ("529", "claude-opus*", 1.0),
        ("disconnect", "*", 0.5),
    ]
    assert rules[3].params == {"after": 3.0}
    faults = parse_header("429;retry_after=3,slow_stream;ms=20")
    assert faults.status == 429 and faults.retry_after == 3 and faults.chunk_delay_ms == 20
    assert parse_header("529").retry_after == 1.0  # a default retry-after on 429/503/529
    for bad in ("teapot", "429:2", "disconnect;after", "700"):
        with pytest.raises(InputError):
            parse_fault_spec(bad)


def test_seeded_rng_is_reproducible_and_rates_hold() -> None:
    def draw(seed: int) -> list[int | None]:
        plan = FaultPlan(parse_fault_spec("429:0.2,500:0.1"), seed=seed)
        return [plan.choose("m", None).status for _ in range(2000)]

    first = draw(7)
    assert first == draw(7) and first != draw(8)
    assert 300 < first.count(429) < 500 and 100 < first.count(500) < 260


def test_times_and_model_rules() -> None:
    plan = FaultPlan(parse_fault_spec("gpt-*@503;times=2"))
    assert [plan.choose("gpt-4o", None).status for _ in range(3)] == [503, 503, None]
    assert plan.choose("claude", None).status is None


def test_arguments_from_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "n": {"type": ["integer", "null"], "exclusiveMinimum": 3},
            "mode": {"anyOf": [{"type": "null"}, {"const": "fast"}]},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 2},
            "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
            "ratio": {"type": "number", "default": 0.25},
        },
        "$defs": {
            "item": {"type": "object", "properties": {"id": {"type": "string", "maxLength": 2}}}
        },
    }
    assert arguments_for(schema) == {
        "when": "2025-01-01T00:00:00Z",
        "n": 4,
        "mode": "fast",
        "items": [{"id": "mo"}, {"id": "mo"}],
        "nested": {"ok": True},
        "ratio": 0.25,
    }
    assert count_tokens("abcd", ["efgh", {"k": "i"}]) == 3


def test_request_log_endpoint_reset_and_region(mock_provider: MockServer) -> None:
    url = mock_provider.url
    httpx.post(url + "/v1/messages", json=MESSAGES, headers={"x-mock-region": "eu-west"})
    response = httpx.post(url + "/v1/messages", json={**MESSAGES, "extra": 1})
    assert "x-mock-region" not in response.headers
    mock_provider.set_region("us")
    assert httpx.post(url + "/v1/messages", json=MESSAGES).headers["x-mock-region"] == "us"
    rows = httpx.get(url + "/_mock/requests", params={"limit": 2}).json()["requests"]
    assert len(rows) == 2 and rows[0]["body"]["extra"] == 1
    assert mock_provider.requests()[0]["headers"]["x-mock-region"] == "eu-west"
    assert httpx.post(url + "/_mock/reset").json() == {"ok": True}
    assert mock_provider.requests() == []


def test_log_is_bounded(mock_provider_factory: object) -> None:
    server = mock_provider_factory(log_size=3)  # type: ignore[operator]
    for _ in range(5):
        httpx.post(server.url + "/v1/messages", json=MESSAGES)
    assert [r["seq"] for r in server.requests()] == [3, 4, 5]


def test_faults_endpoint_and_slow_first_token(mock_provider: MockServer) -> None:
    url = mock_provider.url
    set_ = httpx.post(url + "/_mock/faults", json={"faults": "500:1", "seed": 3}).json()
    assert set_["faults"][0]["kind"] == "500"
    assert httpx.post(url + "/v1/chat/completions", json=MESSAGES).status_code == 500
    httpx.post(url + "/_mock/faults", json={"faults": ""})
    start = time.perf_counter()
    ok = httpx.post(
        url + "/v1/messages", json=MESSAGES, headers={"x-mock-fault": "slow_first;ms=150"}
    )
    assert ok.status_code == 200 and time.perf_counter() - start >= 0.15
    assert mock_provider.last_request()["fault"] == "slow_first;ms=150"


def test_slow_stream_sends_events_separately(mock_provider: MockServer) -> None:
    body = {**MESSAGES, "stream": True}
    arrivals: list[float] = []
    with httpx.stream(
        "POST",
        mock_provider.url + "/v1/messages",
        json=body,
        headers={"x-mock-fault": "slow_stream;ms=20"},
    ) as response:
        for _ in response.iter_raw():
            arrivals.append(time.perf_counter())
    assert len(arrivals) > 5 and arrivals[-1] - arrivals[0] >= 0.1


def test_unknown_path_and_bad_json(mock_provider: MockServer) -> None:
    missing = httpx.post(mock_provider.url + "/v1/nothing", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    bad = httpx.post(
        mock_provider.url + "/v1/messages", content=b"{nope", headers={"anthropic-version": "x"}
    )
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    invalid = httpx.post(mock_provider.url + "/v1/messages", json={"model": "m"})
    assert invalid.json()["error"]["message"] == "messages: Field required"


def test_cli_serves_and_rejects_bad_faults() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "flowloom", "dev", "mock-provider", "--faults", "teapot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 3 and "unknown fault" in bad.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowloom",
            "dev",
            "mock-provider",
            "--port",
            str(port),
            "--faults",
            "503:1",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/_mock/health")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        response = httpx.post(url + "/v1/messages", json=MESSAGES)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
    finally:
        proc.terminate()
        proc.wait(10)
