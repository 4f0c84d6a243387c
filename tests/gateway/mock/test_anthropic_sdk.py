"""The official anthropic SDK, pointed straight at the simulator, works unchanged."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from flowloom.gateway.mock import MockServer

MODEL = "claude-haiku-4-5-20251001"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["location"],
    },
}


def client(mock: MockServer, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=mock.url, max_retries=0, **kw)  # type: ignore[arg-type]


def test_message_non_streaming(mock_provider: MockServer) -> None:
    msg = client(mock_provider).messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Hello there"}]
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and "mock provider" in msg.content[0].text
    assert msg.usage.input_tokens == 4  # "user" + "Hello there": 15 chars / 4, rounded up
    assert msg.usage.output_tokens == (len(msg.content[0].text) + 3) // 4


def test_stream_events_and_final_message(mock_provider: MockServer) -> None:
    with client(mock_provider).messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds and "text" in kinds
    assert final.stop_reason == "end_turn"
    assert "mock provider" in final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 1


def test_raw_stream_event_sequence(mock_provider: MockServer) -> None:
    events = client(mock_provider).messages.create(
        model=MODEL, max_tokens=64, stream=True, messages=[{"role": "user", "content": "Hi"}]
    )
    kinds = [e.type for e in events]  # the SDK drops `ping` events
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}


def test_wire_stream_has_named_events_and_ping(mock_provider: MockServer) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    response = httpx.post(
        mock_provider.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-1] == ""
    names = [b.split("\n")[0] for b in blocks[:-1]]
    assert names[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert names[-1] == "event: message_stop"
    for block in blocks[:-1]:
        event_line, data_line = block.split("\n")
        assert json.loads(data_line.removeprefix("data: "))["type"] == event_line[7:]


def test_tool_use_non_streaming(mock_provider: MockServer) -> None:
    msg = client(mock_provider).messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What's the weather in Paris? Use the tool."}],
    )
    assert msg.stop_reason == "tool_use"
    tool = next(b for b in msg.content if b.type == "tool_use")
    assert tool.name == "get_weather"
    assert tool.input == {"location": "mock", "unit": "celsius", "days": 1}
    assert tool.id.startswith("toolu_")


def test_tool_use_streaming_input_json(mock_provider: MockServer) -> None:
    with client(mock_provider).messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "weather?"}],
        extra_headers={"x-mock-tool": "get_weather"},
    ) as stream:
        deltas = [
            e.delta.type  # type: ignore[union-attr]
            for e in stream
            if e.type == "content_block_delta"
        ]
        final = stream.get_final_message()
    assert "input_json_delta" in deltas
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.input == {"location": "mock", "unit": "celsius", "days": 1}
    assert final.stop_reason == "tool_use"


def test_no_tool_call_without_the_trigger(mock_provider: MockServer) -> None:
    msg = client(mock_provider).messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Just chat"}],
    )
    assert msg.stop_reason == "end_turn"


def test_max_tokens_truncates(mock_provider: MockServer) -> None:
    msg = client(mock_provider).messages.create(
        model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "Hi"}]
    )
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3


def test_count_tokens_matches_message_usage(mock_provider: MockServer) -> None:
    c = client(mock_provider)
    messages = [{"role": "user", "content": "Count these words for me please"}]
    counted = c.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")  # type: ignore[arg-type]
    msg = c.messages.create(model=MODEL, max_tokens=64, messages=messages, system="Be brief.")  # type: ignore[arg-type]
    assert counted.input_tokens == msg.usage.input_tokens == (4 + 31 + 9 + 3) // 4


def test_models_list_and_retrieve(mock_provider: MockServer) -> None:
    c = client(mock_provider)
    ids = [m.id for m in c.models.list()]
    assert MODEL in ids
    assert c.models.retrieve(MODEL).display_name == "Claude Haiku 4.5"
    with pytest.raises(anthropic.NotFoundError):
        c.models.retrieve("claude-nope")


def test_headers_and_unknown_fields_are_logged(mock_provider: MockServer) -> None:
    client(mock_provider).messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        extra_body={"unknown_field": {"keep": True}},
    )
    row = mock_provider.last_request("/v1/messages")
    assert row["headers"]["anthropic-version"]  # the SDK's pinned version
    assert row["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    # this SDK version sends its key as a bearer token, older ones as x-api-key
    key = row["headers"].get("x-api-key") or row["headers"]["authorization"].removeprefix("Bearer ")
    assert key == "sk-ant-test"
    assert row["body"]["unknown_field"] == {"keep": True}
    assert row["format"] == "anthropic" and row["model"] == MODEL and row["status"] == 200


@pytest.mark.parametrize(
    ("fault", "exc"),
    [
        ("429", anthropic.RateLimitError),
        ("500", anthropic.InternalServerError),
        ("503", anthropic.ServiceUnavailableError),
        ("529", anthropic.OverloadedError),
        ("401", anthropic.AuthenticationError),
    ],
)
def test_faults_surface_as_sdk_exceptions(
    mock_provider: MockServer, fault: str, exc: type[anthropic.APIStatusError]
) -> None:
    with pytest.raises(exc) as info:
        client(mock_provider).messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": fault},
        )
    assert info.value.status_code == int(fault)
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"


def test_rate_limit_carries_retry_after(mock_provider: MockServer) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client(mock_provider).messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": "429;retry_after=7"},
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_overloaded_error_type(mock_provider: MockServer) -> None:
    with pytest.raises(anthropic.OverloadedError) as info:
        client(mock_provider).messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": "529"},
        )
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_sdk_retry_honours_retry_after_then_succeeds(mock_provider: MockServer) -> None:
    mock_provider.add_fault(429, times=1, retry_after=0)
    c = anthropic.Anthropic(api_key="k", base_url=mock_provider.url, max_retries=1)
    msg = c.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )
    assert msg.stop_reason == "end_turn"
    assert [r["status"] for r in mock_provider.requests("/v1/messages")] == [429, 200]


def test_context_window_error(mock_provider: MockServer) -> None:
    mock_provider.set_context_window(10)
    with pytest.raises(anthropic.BadRequestError) as info:
        client(mock_provider).messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x" * 100}]
        )
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "prompt is too long: 26 tokens > 10 maximum"


def test_mid_stream_disconnect_raises(mock_provider: MockServer) -> None:
    seen: list[str] = []
    stream_manager = client(mock_provider).messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-mock-fault": "disconnect;after=3"},
    )
    # the SDK lets the transport's error through (an incomplete chunked body)
    with (
        pytest.raises(Exception, match=r"incomplete|closed|peer") as info,
        stream_manager as stream,
    ):
        for event in stream:
            seen.append(event.type)
    assert "ProtocolError" in type(info.value).__name__ or isinstance(
        info.value, anthropic.APIConnectionError
    )
    assert seen == ["message_start", "content_block_start"]  # then ping, then the cut


def test_timeout_fault_hangs_until_client_gives_up(mock_provider: MockServer) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        client(mock_provider, timeout=0.3).messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": "timeout"},
        )
