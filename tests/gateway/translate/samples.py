"""Hand-written provider outputs in each format's native shape, as the providers send them.

Each answer is the same exchange: text "Let me check." then a call of get_weather with
{"city": "Paris"} (or, when `tools` is False, just the text "Hello there!"). They are
independent of the translator, so tests can feed them in and compare what comes out.
"""

from __future__ import annotations

import json
from typing import Any

from flowloom.gateway.wire.sse import SseEvent

WEATHER_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}


def _j(value: Any) -> str:
    return json.dumps(value)


# ---------------------------------------------------------------- Anthropic


def anthropic_response(tools: bool) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "Let me check." if tools else "Hello there!"}
    ]
    if tools:
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "get_weather",
                "input": {"city": "Paris"},
            }
        )
    return {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": "tool_use" if tools else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 21,
            "output_tokens": 17,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 0,
        },
    }


def anthropic_stream(tools: bool) -> list[SseEvent]:
    def ev(kind: str, body: dict[str, Any]) -> SseEvent:
        return SseEvent(kind, _j({"type": kind, **body}))

    message: dict[str, Any] = {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 21, "output_tokens": 1, "cache_read_input_tokens": 4},
    }
    events = [
        ev("message_start", {"message": message}),
        ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("ping", {}),
    ]
    texts = ["Let me ", "check."] if tools else ["Hello ", "there!"]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        events.append(ev("content_block_delta", {"index": 0, "delta": delta}))
    events.append(ev("content_block_stop", {"index": 0}))
    if tools:
        block = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}
        events.append(ev("content_block_start", {"index": 1, "content_block": block}))
        for fragment in ('{"city": ', '"Paris"}'):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            events.append(ev("content_block_delta", {"index": 1, "delta": delta}))
        events.append(ev("content_block_stop", {"index": 1}))
    stop = "tool_use" if tools else "end_turn"
    events.append(
        ev(
            "message_delta",
            {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 17}},
        )
    )
    events.append(ev("message_stop", {}))
    return events


# ---------------------------------------------------------------- OpenAI Chat Completions


def openai_response(tools: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "Let me check." if tools else "Hello there!",
        "refusal": None,
    }
    if tools:
        message["tool_calls"] = [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tools else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 25,
            "completion_tokens": 17,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


def openai_stream(tools: bool) -> list[SseEvent]:
    head = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1700000000}
    head["model"] = "gpt-4o"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> SseEvent:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return SseEvent(None, _j({**head, "choices": [choice]}))

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for text in ["Let me ", "check."] if tools else ["Hello ", "there!"]:
        events.append(chunk({"content": text}))
    if tools:
        call = {
            "index": 0,
            "id": "call_abc",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        events.append(chunk({"tool_calls": [call]}))
        for fragment in ('{"city": ', '"Paris"}'):
            events.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
            )
    events.append(chunk({}, "tool_calls" if tools else "stop"))
    usage = {
        "prompt_tokens": 25,
        "completion_tokens": 17,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    events.append(SseEvent(None, _j({**head, "choices": [], "usage": usage})))
    events.append(SseEvent(None, "[DONE]"))
    return events


# ---------------------------------------------------------------- Gemini


def gemini_response(tools: bool) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": "Let me check." if tools else "Hello there!"}]
    if tools:
        parts.append({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": 25,
            "candidatesTokenCount": 12,
            "thoughtsTokenCount": 5,
            "totalTokenCount": 42,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-gem-1",
    }


def gemini_stream(tools: bool) -> list[SseEvent]:
    def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> SseEvent:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, Any] = {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 25, "totalTokenCount": 25},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-gem-1",
        }
        if finish:
            body["usageMetadata"] = {
                "promptTokenCount": 25,
                "candidatesTokenCount": 12,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 42,
                "cachedContentTokenCount": 4,
            }
        return SseEvent(None, _j(body))

    if not tools:
        return [chunk([{"text": "Hello "}]), chunk([{"text": "there!"}], "STOP")]
    return [
        chunk([{"text": "Let me "}]),
        chunk([{"text": "check."}]),
        chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], "STOP"),
    ]


# ---------------------------------------------------------------- OpenAI Responses


def responses_response(tools: bool) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {
            "type": "message",
            "id": "msg_r1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Let me check." if tools else "Hello there!",
                    "annotations": [],
                }
            ],
        }
    ]
    if tools:
        output.append(
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_abc",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            }
        )
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": "gpt-4.1",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 25,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 17,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 42,
        },
    }


def responses_stream(tools: bool) -> list[SseEvent]:
    seq = iter(range(1000))

    def ev(kind: str, body: dict[str, Any]) -> SseEvent:
        return SseEvent(kind, _j({"type": kind, "sequence_number": next(seq), **body}))

    final = responses_response(tools)
    pending = {**final, "status": "in_progress", "output": [], "usage": None}
    texts = ["Let me ", "check."] if tools else ["Hello ", "there!"]
    message: dict[str, Any] = {"type": "message", "id": "msg_r1", "status": "in_progress"}
    message.update(role="assistant", content=[])
    part = {"type": "output_text", "text": "", "annotations": []}
    ids = {"item_id": "msg_r1", "output_index": 0, "content_index": 0}
    events = [
        ev("response.created", {"response": pending}),
        ev("response.in_progress", {"response": pending}),
        ev("response.output_item.added", {"output_index": 0, "item": message}),
        ev("response.content_part.added", {**ids, "part": part}),
    ]
    for text in texts:
        events.append(ev("response.output_text.delta", {**ids, "delta": text}))
    events.append(ev("response.output_text.done", {**ids, "text": "".join(texts)}))
    done_part = final["output"][0]["content"][0]
    events.append(ev("response.content_part.done", {**ids, "part": done_part}))
    events.append(ev("response.output_item.done", {"output_index": 0, "item": final["output"][0]}))
    if tools:
        item = {**final["output"][1], "arguments": "", "status": "in_progress"}
        events.append(ev("response.output_item.added", {"output_index": 1, "item": item}))
        for fragment in ('{"city": ', '"Paris"}'):
            body = {"item_id": "fc_1", "output_index": 1, "delta": fragment}
            events.append(ev("response.function_call_arguments.delta", body))
        body = {"item_id": "fc_1", "output_index": 1, "arguments": '{"city": "Paris"}'}
        events.append(ev("response.function_call_arguments.done", body))
        events.append(
            ev("response.output_item.done", {"output_index": 1, "item": final["output"][1]})
        )
    events.append(ev("response.completed", {"response": final}))
    return events


RESPONSES = {
    "anthropic": anthropic_response,
    "openai": openai_response,
    "gemini": gemini_response,
    "responses": responses_response,
}
STREAMS = {
    "anthropic": anthropic_stream,
    "openai": openai_stream,
    "gemini": gemini_stream,
    "responses": responses_stream,
}
