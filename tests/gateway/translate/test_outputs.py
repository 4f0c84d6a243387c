"""Whole responses and streams, every provider format to every caller format.

The provider's native answer (samples.py) goes through the translator; the caller's
version must be valid in the caller's format and say the same thing: same text, same tool
calls, equivalent stop reason and usage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowloom.gateway.translate import StreamTranslator, translate_response
from flowloom.gateway.wire.sse import SseEvent
from tests.gateway.translate import samples
from tests.gateway.translate.checks import CHECKS, Summary, summary

FORMATS = ("anthropic", "openai", "gemini", "responses")
PAIRS = [(s, d) for s in FORMATS for d in FORMATS]


def expected(tools: bool) -> Summary:
    if tools:
        calls = (("get_weather", json.dumps({"city": "Paris"})),)
        return Summary("Let me check.", calls, "tool", 25, 4, 17)
    return Summary("Hello there!", (), "end", 25, 4, 17)


def run(src: str, dst: str, events: list[SseEvent]) -> list[SseEvent]:
    translator = StreamTranslator(src, dst, model="caller-model")  # type: ignore[arg-type]
    out: list[SseEvent] = []
    for event in events:
        out.extend(translator.feed(event))
    out.extend(translator.close())
    return out


@pytest.mark.parametrize("tools", [True, False], ids=["tools", "text"])
@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_whole_response(src: str, dst: str, tools: bool) -> None:
    native = samples.RESPONSES[src](tools)
    out = translate_response(native, src, dst, model="caller-model")  # type: ignore[arg-type]
    assert summary(dst, out) == expected(tools)
    if src != dst:
        assert out.get("model", out.get("modelVersion")) == "caller-model"


@pytest.mark.parametrize("tools", [True, False], ids=["tools", "text"])
@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_stream(src: str, dst: str, tools: bool) -> None:
    out = run(src, dst, samples.STREAMS[src](tools))
    whole = CHECKS[dst](out)
    assert summary(dst, whole) == expected(tools)


@pytest.mark.parametrize(("src", "dst"), [p for p in PAIRS if p[0] != p[1]])
def test_stream_emits_each_event_as_it_arrives(src: str, dst: str) -> None:
    """The first text fragment reaches the caller before the upstream stream ends."""
    translator = StreamTranslator(src, dst, model="m")  # type: ignore[arg-type]
    seen = ""
    for event in samples.STREAMS[src](True):
        for out in translator.feed(event):
            seen += out.data
        if "Let me " in seen:
            break
    else:
        pytest.fail("no text came out before the upstream stream ended")


def test_openai_stream_without_usage_chunk() -> None:
    translator = StreamTranslator("anthropic", "openai", model="m", include_usage=False)
    out: list[SseEvent] = []
    for event in samples.anthropic_stream(True):
        out.extend(translator.feed(event))
    from tests.gateway.translate.checks import check_openai_stream

    whole = check_openai_stream(out, usage=False)
    assert whole["choices"][0]["finish_reason"] == "tool_calls"


def test_same_format_stream_passes_events_through() -> None:
    translator = StreamTranslator("openai", "openai", model="m")
    events = samples.openai_stream(True)
    assert [e for ev in events for e in translator.feed(ev)] == events
    assert translator.close() == []


def test_gemini_stream_without_finish_reason_still_ends_validly() -> None:
    events = samples.gemini_stream(False)[:1]  # the upstream stopped after one chunk
    out = run("gemini", "anthropic", events)
    message = CHECKS["anthropic"](out)
    assert message["content"] == [{"type": "text", "text": "Hello "}]
    assert message["stop_reason"] == "end_turn"


def test_openai_stream_without_done_marker_ends_on_close() -> None:
    events = samples.openai_stream(False)[:-1]
    out = run("openai", "anthropic", events)
    message = CHECKS["anthropic"](out)
    assert message["usage"]["output_tokens"] == 17


def test_parallel_tool_calls_stream_openai_to_anthropic() -> None:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "g"}

    def chunk(delta: dict[str, object], finish: str | None = None) -> SseEvent:
        return SseEvent(
            None,
            json.dumps(
                {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            ),
        )

    events = [chunk({"role": "assistant"})]
    for i, city in enumerate(("Paris", "Rome")):
        call = {
            "index": i,
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "w", "arguments": ""},
        }
        events.append(chunk({"tool_calls": [call]}))
        args = {"index": i, "function": {"arguments": json.dumps({"city": city})}}
        events.append(chunk({"tool_calls": [args]}))
    events.append(chunk({}, "tool_calls"))
    events.append(SseEvent(None, "[DONE]"))
    message = CHECKS["anthropic"](run("openai", "anthropic", events))
    assert [(b["id"], b["input"]) for b in message["content"]] == [
        ("call_0", {"city": "Paris"}),
        ("call_1", {"city": "Rome"}),
    ]
    assert message["stop_reason"] == "tool_use"
    back = CHECKS["openai"](run("anthropic", "openai", run("openai", "anthropic", events)))
    assert [c["id"] for c in back["choices"][0]["message"]["tool_calls"]] == ["call_0", "call_1"]


def test_thinking_stream_anthropic_to_openai_and_gemini() -> None:
    def ev(body: dict[str, object]) -> SseEvent:
        return SseEvent(str(body["type"]), json.dumps(body))

    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 0},
    }
    events = [
        ev({"type": "message_start", "message": message}),
        ev(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"},
            }
        ),
        ev({"type": "content_block_stop", "index": 0}),
        ev(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "text_delta", "text": "ok"},
            }
        ),
        ev({"type": "content_block_stop", "index": 1}),
        ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"output_tokens": 9},
            }
        ),
        ev({"type": "message_stop"}),
    ]
    chat = CHECKS["openai"](run("anthropic", "openai", events))
    assert chat["choices"][0]["message"]["content"] == "ok"
    assert chat["choices"][0]["finish_reason"] == "length"
    gem = CHECKS["gemini"](run("anthropic", "gemini", events))
    assert gem["candidates"][0]["content"]["parts"] == [
        {"text": "hmm", "thought": True},
        {"text": "ok"},
    ]
    assert gem["candidates"][0]["finishReason"] == "MAX_TOKENS"
    resp = CHECKS["responses"](run("anthropic", "responses", events))
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    back = CHECKS["anthropic"](run("gemini", "anthropic", run("anthropic", "gemini", events)))
    assert [b["type"] for b in back["content"]] == ["thinking", "text"]
    assert back["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("dst", ["openai", "gemini", "responses"])
def test_mid_stream_error_reaches_the_caller_in_its_shape(dst: str) -> None:
    events = samples.anthropic_stream(False)[:3]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events.append(SseEvent("error", json.dumps(error)))
    out = run("anthropic", dst, events)
    last = json.loads(out[-1].data)
    if dst == "openai":
        assert last["error"]["message"] == "Overloaded"
        assert last["error"]["type"] == "server_error"
    elif dst == "gemini":
        assert last["error"] == {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}
    else:
        assert out[-1].event == "error" and last["message"] == "Overloaded"


@pytest.mark.parametrize("src", ["openai", "gemini", "responses"])
def test_upstream_stream_error_becomes_anthropic_error_event(src: str) -> None:
    if src == "responses":
        body = {
            "type": "error",
            "code": "rate_limit_exceeded",
            "message": "slow down",
            "sequence_number": 0,
        }
        event = SseEvent("error", json.dumps(body))
    elif src == "gemini":
        event = SseEvent(
            None,
            json.dumps(
                {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}
            ),
        )
    else:
        event = SseEvent(
            None, json.dumps({"error": {"message": "slow down", "type": "rate_limit_exceeded"}})
        )
    out = run(src, "anthropic", [event])
    assert out[-1].event == "error"
    assert json.loads(out[-1].data)["error"] == {"type": "rate_limit_error", "message": "slow down"}


def test_tool_calls_without_index_from_compatible_servers() -> None:
    """Some OpenAI-compatible servers send whole calls without `index`, or repeat the id."""
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "llama"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> SseEvent:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return SseEvent(None, json.dumps({**head, "choices": [choice]}))

    def call(call_id: str, args: str) -> dict[str, Any]:
        return {"id": call_id, "type": "function", "function": {"name": "w", "arguments": args}}

    events = [
        chunk({"role": "assistant", "tool_calls": [call("a", '{"x":')]}),
        chunk({"tool_calls": [call("a", "1}")]}),
        chunk({"tool_calls": [call("b", '{"x":2}')]}),
        chunk({}, "tool_calls"),
        SseEvent(None, "[DONE]"),
    ]
    message = CHECKS["anthropic"](run("openai", "anthropic", events))
    assert [(b["id"], b["input"]) for b in message["content"]] == [("a", {"x": 1}), ("b", {"x": 2})]


def test_untranslatable_stream_content_ends_in_an_error_event_for_the_caller() -> None:
    """A Gemini image answer cannot reach a Chat Completions caller: it gets an error chunk."""
    image = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    chunk = {"candidates": [{"content": {"role": "model", "parts": [image]}, "index": 0}]}
    translator = StreamTranslator("gemini", "openai", model="m")
    out = translator.feed(SseEvent(None, json.dumps(chunk)))
    assert json.loads(out[-1].data)["error"]["type"] == "server_error"
    assert translator.error is not None and "inlineData" in translator.error
