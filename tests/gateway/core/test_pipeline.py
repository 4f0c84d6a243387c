"""The gateway pipeline against the simulator: relay, headers, errors, disconnects."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from flowloom.gateway.app import GatewaySettings
from flowloom.gateway.mock import MockServer
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.routing import Router
from flowloom.gateway.wire.sse import SseSplitter, parse_event
from tests.gateway.core.conftest import mock_config
from tests.gateway.core.harness import RunningGateway, run_gateway

ANTHROPIC_BODY = {
    "model": "claude-x",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Write a few words."}],
}
_IDS = re.compile(
    r'"(id|item_id|created|created_at|completed_at|responseId|sequence_number)":\s*("[^"]*"|\d+)'
)


def events_of(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data without volatile ids) of every SSE event in `raw`, in order."""
    splitter = SseSplitter()
    out = []
    for block in [*splitter.feed(raw), splitter.rest()]:
        event = parse_event(block) if block else None
        if event is not None:
            out.append((event.event, _IDS.sub("", event.data)))
    return out


def stream_raw(url: str, body: dict[str, object], headers: dict[str, str]) -> tuple[int, bytes]:
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        return response.status_code, response.read()


@pytest.mark.parametrize(
    ("kind", "path", "body"),
    [
        ("anthropic", "/v1/messages", {**ANTHROPIC_BODY, "stream": True}),
        (
            "openai",
            "/v1/chat/completions",
            {"model": "gpt-x", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        ),
        ("openai", "/v1/responses", {"model": "gpt-x", "stream": True, "input": "Hi"}),
        (
            "gemini",
            "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        ),
    ],
)
def test_stream_events_arrive_as_the_provider_sent_them(
    tmp_path: Path, mock_provider: MockServer, kind: str, path: str, body: dict[str, object]
) -> None:
    with run_gateway(tmp_path, provider=mock_config(mock_provider, kind)) as run:
        headers = {"x-api-key": "k", "authorization": "Bearer k"}
        status, via_gateway = stream_raw(run.url + path, body, headers)
        assert status == 200
        _, direct = stream_raw(mock_provider.url + path, body, headers)
        got, want = events_of(via_gateway), events_of(direct)
        assert len(want) > 3
        assert got == want
        event = run.events()[-1]
        assert event["refs"]["stream"] is True and event["refs"]["status"] == 200
        assert event["refs"]["output_tokens"] > 0


def test_headers_and_unknown_fields_are_forwarded(
    anthropic_gw: RunningGateway, mock_provider: MockServer
) -> None:
    body = {**ANTHROPIC_BODY, "metadata": {"user_id": "u1"}, "future_field": {"x": [1, 2]}}
    raw = json.dumps(body, separators=(",", ":")).encode()
    response = httpx.post(
        anthropic_gw.url + "/v1/messages",
        content=raw,
        headers={
            "x-api-key": "k",
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "prompt-caching-2024-07-31,tools-2024-05-16",
        },
    )
    assert response.status_code == 200
    upstream = mock_provider.last_request("/v1/messages")
    assert upstream["headers"]["anthropic-version"] == "2023-06-01"
    assert upstream["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31,tools-2024-05-16"
    assert upstream["body"] == body
    assert upstream["headers"]["content-length"] == str(len(raw))


def test_huge_body_is_refused_in_the_callers_format(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    settings = GatewaySettings(default_project="gw", reload_interval_s=0, max_request_bytes=2000)
    with run_gateway(tmp_path, provider=mock_config(mock_provider), settings=settings) as run:
        big = {**ANTHROPIC_BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = httpx.post(run.url + "/v1/messages", json=big, headers={"x-api-key": "k"})
        assert response.status_code == 413
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "request_too_large"
        # Chunked upload without a content-length is cut off too.
        response = httpx.post(
            run.url + "/v1/chat/completions",
            content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]),
            headers={"authorization": "Bearer k"},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert mock_provider.requests() == []
        assert [e["refs"]["status"] for e in run.events()] == [413, 413]


def test_malformed_json_is_a_400_in_the_callers_format(openai_gw: RunningGateway) -> None:
    response = httpx.post(
        openai_gw.url + "/v1/chat/completions",
        content=b'{"model": "gpt-x", "messages": [',
        headers={"authorization": "Bearer k", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]
    response = httpx.post(
        openai_gw.url + "/v1beta/models/gemini-x:generateContent",
        content=b"[1, 2]",
        headers={"x-goog-api-key": "k"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_unreachable_upstream_is_a_502_in_the_callers_format(tmp_path: Path) -> None:
    dead = ProviderConfig(
        name="gemini", kind="gemini", base_url="http://127.0.0.1:9", first_byte_timeout_s=5
    )
    with run_gateway(tmp_path, provider=dead) as run:
        response = httpx.post(
            run.url + "/v1beta/models/gemini-x:generateContent",
            json={"contents": [{"parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": "k"},
        )
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == 502 and error["status"] == "UNAVAILABLE"
        event = run.events()[-1]
        assert event["refs"]["status"] == 502
        assert event["refs"]["fallback"][0]["error_kind"] == "connect"


def test_unknown_path_and_health(anthropic_gw: RunningGateway) -> None:
    assert httpx.get(anthropic_gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(anthropic_gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["recorder"]["available"] is True
    missing = httpx.post(anthropic_gw.url + "/v1/nothing", json={})
    assert missing.status_code == 404 and "error" in missing.json()


def test_mid_stream_failure_ends_cleanly_in_the_callers_format(
    anthropic_gw: RunningGateway, mock_provider: MockServer
) -> None:
    mock_provider.add_fault("disconnect", after=3)
    status, raw = stream_raw(
        anthropic_gw.url + "/v1/messages", {**ANTHROPIC_BODY, "stream": True}, {"x-api-key": "k"}
    )
    assert status == 200
    events = events_of(raw)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"]["type"] == "api_error"
    refs = anthropic_gw.events()[-1]["refs"]
    assert refs["status"] == 502 and "mid-stream" in refs["error"]


def test_client_disconnect_mid_stream_stops_the_upstream(
    anthropic_gw: RunningGateway, mock_provider: MockServer
) -> None:
    mock_provider.add_fault("slow_stream", ms=200)
    started = time.monotonic()
    with httpx.stream(
        "POST",
        anthropic_gw.url + "/v1/messages",
        json={**ANTHROPIC_BODY, "max_tokens": 400, "stream": True},
        headers={"x-api-key": "k"},
    ) as response:
        for chunk in response.iter_raw():
            if chunk:
                break
    events = anthropic_gw.events()
    refs = events[-1]["refs"]
    assert refs["status"] == 499 and "disconnected" in refs["error"]
    # The slow stream would take many seconds; the gateway let go at once.
    assert time.monotonic() - started < 3
    assert anthropic_gw.gateway.recorder.status()["queued"] == 0


def test_fallback_on_overload_records_the_chain(tmp_path: Path, mock_provider: MockServer) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[providers.primary]
kind = "anthropic"
base_url = "{mock_provider.url}"

[providers.backup]
kind = "openai"
base_url = "{mock_provider.url}/v1"

[models."smart"]
strategy = "ordered"
targets = [{{ provider = "primary", model = "claude-primary" }},
           {{ provider = "backup", model = "gpt-backup" }}]
"""
    )
    mock_provider.add_fault(529, model="claude-primary")
    with run_gateway(tmp_path, router=Router(config)) as run:
        response = httpx.post(
            run.url + "/v1/messages",
            json={**ANTHROPIC_BODY, "model": "smart"},
            headers={"x-api-key": "k"},
        )
        assert response.status_code == 200, response.text
        message = response.json()
        assert message["type"] == "message" and message["content"][0]["type"] == "text"
        status, raw = stream_raw(
            run.url + "/v1/messages",
            {**ANTHROPIC_BODY, "model": "smart", "stream": True},
            {"x-api-key": "k"},
        )
        names = [name for name, _ in events_of(raw)]
        assert status == 200 and names[0] == "message_start" and names[-1] == "message_stop"
        refs = run.events()[0]["refs"]
        assert [a["provider"] for a in refs["fallback"]] == ["primary", "backup"]
        assert refs["fallback"][0]["status"] == 529
        assert refs["provider"] == "backup" and refs["upstream_format"] == "openai"
