"""Whole-response details: stop reasons, usage, refusals, reasoning, and error shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowloom.gateway.translate import (
    StreamTranslator,
    error_body,
    error_event,
    translate_error,
    translate_response,
)
from tests.gateway.translate import samples


def anthropic_answer(stop: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 1, "output_tokens": 2},
    }


@pytest.mark.parametrize(
    ("stop", "openai", "gemini", "responses"),
    [
        ("end_turn", "stop", "STOP", "completed"),
        ("stop_sequence", "stop", "STOP", "completed"),
        ("max_tokens", "length", "MAX_TOKENS", "incomplete"),
        ("refusal", "content_filter", "SAFETY", "completed"),
        ("pause_turn", "stop", "STOP", "completed"),
    ],
)
def test_stop_reasons_from_anthropic(stop: str, openai: str, gemini: str, responses: str) -> None:
    body = anthropic_answer(stop)
    assert (
        translate_response(body, "anthropic", "openai", model="m")["choices"][0]["finish_reason"]
        == openai
    )
    assert (
        translate_response(body, "anthropic", "gemini", model="m")["candidates"][0]["finishReason"]
        == gemini
    )
    assert translate_response(body, "anthropic", "responses", model="m")["status"] == responses


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_stop_reasons_from_openai(finish: str, stop: str) -> None:
    body = samples.openai_response(False)
    body["choices"][0]["finish_reason"] = finish
    assert translate_response(body, "openai", "anthropic", model="m")["stop_reason"] == stop


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("STOP", "end_turn"),
        ("MAX_TOKENS", "max_tokens"),
        ("SAFETY", "refusal"),
        ("RECITATION", "refusal"),
        ("OTHER", "end_turn"),
    ],
)
def test_stop_reasons_from_gemini(finish: str, stop: str) -> None:
    body = samples.gemini_response(False)
    body["candidates"][0]["finishReason"] = finish
    assert translate_response(body, "gemini", "anthropic", model="m")["stop_reason"] == stop


def test_gemini_blocked_prompt_is_a_refusal() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    out = translate_response(body, "gemini", "anthropic", model="m")
    assert out["content"] == [] and out["stop_reason"] == "refusal"
    assert out["usage"] == {"input_tokens": 3, "output_tokens": 0}


def test_usage_with_cache_to_each_format() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 7,
    }
    body = anthropic_answer("end_turn", usage)
    chat = translate_response(body, "anthropic", "openai", model="m")["usage"]
    assert chat == {
        "prompt_tokens": 117,
        "completion_tokens": 5,
        "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    gem = translate_response(body, "anthropic", "gemini", model="m")["usageMetadata"]
    assert gem == {
        "promptTokenCount": 117,
        "candidatesTokenCount": 5,
        "totalTokenCount": 122,
        "cachedContentTokenCount": 100,
    }
    resp = translate_response(body, "anthropic", "responses", model="m")["usage"]
    assert resp["input_tokens"] == 117 and resp["input_tokens_details"] == {"cached_tokens": 100}


def test_gemini_thinking_tokens_count_as_output() -> None:
    out = translate_response(samples.gemini_response(False), "gemini", "anthropic", model="m")
    assert out["usage"] == {"input_tokens": 21, "output_tokens": 17, "cache_read_input_tokens": 4}


def test_openai_refusal_and_reasoning_to_anthropic() -> None:
    body = samples.openai_response(False)
    message = body["choices"][0]["message"]
    message.update(content=None, refusal="I can't help with that.", reasoning_content="policy")
    out = translate_response(body, "openai", "anthropic", model="m")
    assert out["content"] == [
        {"type": "thinking", "thinking": "policy", "signature": ""},
        {"type": "text", "text": "I can't help with that."},
    ]
    assert out["stop_reason"] == "refusal"


def test_anthropic_thinking_to_openai_reasoning_content() -> None:
    body = anthropic_answer("end_turn")
    body["content"].insert(0, {"type": "thinking", "thinking": "let me think", "signature": "s"})
    out = translate_response(body, "anthropic", "openai", model="m")
    assert out["choices"][0]["message"]["reasoning_content"] == "let me think"
    assert out["choices"][0]["message"]["content"] == "hi"


def test_gemini_thought_parts_become_thinking_blocks() -> None:
    body = samples.gemini_response(False)
    body["candidates"][0]["content"]["parts"].insert(
        0, {"text": "pondering", "thought": True, "thoughtSignature": "c2ln"}
    )
    out = translate_response(body, "gemini", "anthropic", model="m")
    assert out["content"][0] == {"type": "thinking", "thinking": "pondering", "signature": "c2ln"}


def test_tool_call_only_openai_answer_has_null_content() -> None:
    body = samples.anthropic_response(True)
    body["content"] = body["content"][1:]
    out = translate_response(body, "anthropic", "openai", model="m")
    assert out["choices"][0]["message"]["content"] is None


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fmt", "status", "expected"),
    [
        (
            "anthropic",
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "m"}},
        ),
        (
            "anthropic",
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "m"}},
        ),
        ("anthropic", 502, {"type": "error", "error": {"type": "api_error", "message": "m"}}),
        (
            "openai",
            400,
            {
                "error": {
                    "message": "m",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        ),
        ("gemini", 429, {"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED"}}),
        ("gemini", 418, {"error": {"code": 418, "message": "m", "status": "INVALID_ARGUMENT"}}),
    ],
)
def test_error_body_shapes(fmt: str, status: int, expected: dict[str, Any]) -> None:
    assert error_body(fmt, status, "m") == expected  # type: ignore[arg-type]


def test_translate_error_between_formats() -> None:
    upstream = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    status, body = translate_error(upstream, 529, "anthropic", "openai")
    assert status == 503 and body["error"]["message"] == "Overloaded"
    status, body = translate_error(upstream, 529, "anthropic", "gemini")
    assert (status, body["error"]["status"]) == (503, "UNAVAILABLE")
    gemini = [{"error": {"code": 400, "message": "bad arg", "status": "INVALID_ARGUMENT"}}]
    status, body = translate_error(gemini, 400, "gemini", "anthropic")
    assert body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad arg"},
    }
    status, body = translate_error(b"<html>Bad gateway</html>", 502, "openai", "anthropic")
    assert status == 502 and body["error"]["message"] == "<html>Bad gateway</html>"
    status, body = translate_error(
        {"error": {"message": "quota", "type": "insufficient_quota"}}, 429, "openai", "responses"
    )
    assert body["error"]["type"] == "insufficient_quota"


@pytest.mark.parametrize("fmt", ["anthropic", "openai", "gemini", "responses"])
def test_error_event_shapes(fmt: str) -> None:
    event = error_event(fmt, 503, "upstream went away")  # type: ignore[arg-type]
    data = json.loads(event.data)
    if fmt == "anthropic":  # the gateway's own 503 in Anthropic's words: overloaded
        assert event.event == "error" and data["error"]["type"] == "overloaded_error"
    elif fmt == "responses":
        assert (
            event.event == "error"
            and data["type"] == "error"
            and data["message"] == "upstream went away"
        )
    else:
        assert event.event is None and data["error"]["message"] == "upstream went away"


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422, 429, 500, 502, 503, 504])
def test_gateway_and_translated_anthropic_errors_agree(status: int) -> None:
    from flowloom.gateway.translate import error_body
    from flowloom.gateway.wire.anthropic import AnthropicWire

    own = AnthropicWire.error_object(status, "m")["error"]["type"]
    translated = error_body("anthropic", status, "m")["error"]["type"]
    assert own == translated


def test_broken_upstream_stream_is_a_translation_error() -> None:
    from flowloom.gateway.translate import TranslationError
    from flowloom.gateway.wire.sse import SseEvent

    translator = StreamTranslator("openai", "anthropic", model="m")
    out = translator.feed(SseEvent(None, "{truncated"))
    assert [e.event for e in out] == ["error"]
    assert json.loads(out[0].data)["error"]["type"] == "api_error"
    assert translator.error is not None and "not JSON" in translator.error
    assert translator.feed(SseEvent(None, "[DONE]")) == [] and translator.close() == []
    assert issubclass(TranslationError, Exception)


def test_gemini_thought_signature_survives_a_round_trip_through_tool_call_ids() -> None:
    """Gemini 3 needs its function-call thoughtSignature back; other callers echo the id."""
    from tests.gateway.translate.checks import check_openai_stream

    events = samples.gemini_stream(True)
    last = json.loads(events[-1].data)
    part = last["candidates"][0]["content"]["parts"][0]
    part["thoughtSignature"] = "c2lnbmF0dXJl+/=="
    part["functionCall"]["id"] = "fc-7"
    events[-1] = type(events[-1])(None, json.dumps(last))
    translator = StreamTranslator("gemini", "openai", model="m")
    out = [e for ev in events for e in translator.feed(ev)] + translator.close()
    chat = check_openai_stream(out)
    call = chat["choices"][0]["message"]["tool_calls"][0]
    assert call["id"] == "fc-7__thought__c2lnbmF0dXJl+/=="
    follow_up = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]
    }
    from flowloom.gateway.translate import translate_request

    gemini = translate_request(follow_up, "openai", "gemini", model="g")
    model_turn, answer_turn = gemini["contents"][1], gemini["contents"][2]
    assert model_turn["parts"] == [
        {
            "functionCall": {"id": "fc-7", "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "c2lnbmF0dXJl+/==",
        }
    ]
    assert answer_turn["parts"][0]["functionResponse"]["id"] == "fc-7"
    whole = samples.gemini_response(True)
    whole["candidates"][0]["content"]["parts"][1]["thoughtSignature"] = "abc"
    out_whole = translate_response(whole, "gemini", "anthropic", model="m")
    assert out_whole["content"][1]["id"].endswith("__thought__abc")
    back = translate_response(out_whole, "anthropic", "gemini", model="m")
    assert back["candidates"][0]["content"]["parts"][1]["thoughtSignature"] == "abc"
