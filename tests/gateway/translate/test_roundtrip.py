"""Property tests: random conversations, answers and streams survive A → B → A unchanged.

Anthropic is the richest of the formats for what they all share, so each property starts
from a random Anthropic value, translates it to another format and back, and expects the
same content: text, tool calls with their ids and arguments, tool results, system prompt,
tool definitions, stop reason and token counts.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom.gateway.translate import StreamTranslator, translate_request, translate_response
from flowloom.gateway.wire.sse import SseEvent, iter_events, serialize
from tests.gateway.translate.checks import check_anthropic_stream

OTHERS = ("openai", "gemini", "responses")
SETTINGS = settings(
    max_examples=int(os.environ.get("FLOWLOOM_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,20}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
inputs = st.dictionaries(names, json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    tool_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    counter = 0
    for _ in range(draw(st.integers(1, 4))):
        user: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": call_id, "content": draw(text)}
            for call_id in pending
        ]
        user += [{"type": "text", "text": t} for t in draw(st.lists(text, min_size=1, max_size=2))]
        messages.append({"role": "user", "content": user})
        assistant: list[dict[str, Any]] = [{"type": "text", "text": draw(text)}]
        pending = []
        for _ in range(draw(st.integers(0, 2))):
            counter += 1
            call_id = f"toolu_{counter:03d}"
            pending.append(call_id)
            assistant.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": draw(st.sampled_from(tool_names)),
                    "input": draw(inputs),
                }
            )
        messages.append({"role": "assistant", "content": assistant})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": c, "content": draw(text)} for c in pending
            ]
            or [{"type": "text", "text": draw(text)}],
        }
    )
    tools = [
        {
            "name": name,
            "description": draw(text),
            "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}},
        }
        for name in tool_names
    ]
    return {
        "model": "m",
        "max_tokens": draw(st.integers(1, 10000)),
        "system": draw(text),
        "tools": tools,
        "messages": messages,
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def normal_request(body: dict[str, Any]) -> dict[str, Any]:
    """Equivalent Anthropic requests compare equal: string content as one text block."""
    messages = [{"role": m["role"], "content": _blocks(m["content"])} for m in body["messages"]]
    return {
        "system": body.get("system"),
        "max_tokens": body["max_tokens"],
        "tools": body.get("tools"),
        "messages": messages,
    }


@SETTINGS
@given(conversations(), st.sampled_from(OTHERS))
def test_request_round_trip(conversation: dict[str, Any], other: str) -> None:
    there = translate_request(conversation, "anthropic", other, model="x")  # type: ignore[arg-type]
    json.dumps(there)  # plain JSON all the way
    back = translate_request(there, other, "anthropic", model="m")  # type: ignore[arg-type]
    assert normal_request(back) == normal_request(conversation)


@st.composite
def answers(draw: st.DrawFn) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if draw(st.booleans()):
        content.append({"type": "text", "text": draw(text)})
    calls = draw(st.lists(st.tuples(names, inputs), max_size=3))
    for n, (name, args) in enumerate(calls):
        content.append({"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args})
    if not content:
        content.append({"type": "text", "text": draw(text)})
    stop = "tool_use" if calls else draw(st.sampled_from(["end_turn", "max_tokens"]))
    usage = {
        "input_tokens": draw(st.integers(0, 10**6)),
        "output_tokens": draw(st.integers(0, 10**6)),
    }
    cached = draw(st.integers(0, 10**5))
    if cached:
        usage["cache_read_input_tokens"] = cached
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


@SETTINGS
@given(answers(), st.sampled_from(OTHERS))
def test_response_round_trip(answer: dict[str, Any], other: str) -> None:
    there = translate_response(answer, "anthropic", other, model="x")  # type: ignore[arg-type]
    back = translate_response(there, other, "anthropic", model="m")  # type: ignore[arg-type]
    assert back["content"] == answer["content"]
    assert back["stop_reason"] == answer["stop_reason"]
    assert back["usage"] == answer["usage"]


def stream_of(answer: dict[str, Any], rng: random.Random) -> list[SseEvent]:
    """An Anthropic stream that adds up to `answer`, text and JSON cut at random points."""

    def ev(body: dict[str, Any]) -> SseEvent:
        return SseEvent(body["type"], json.dumps(body))

    def cuts(value: str) -> list[str]:
        points = (
            sorted(rng.sample(range(1, len(value)), min(3, len(value) - 1)))
            if len(value) > 1
            else []
        )
        return [value[a:b] for a, b in zip([0, *points], [*points, len(value)], strict=True)]

    usage = answer["usage"]
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
    message = {**answer, "content": [], "stop_reason": None, "usage": start_usage}
    events = [ev({"type": "message_start", "message": message})]
    for index, block in enumerate(answer["content"]):
        if block["type"] == "text":
            events.append(
                ev(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
            )
            for piece in cuts(block["text"]):
                events.append(
                    ev(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
                )
        else:
            start = {**block, "input": {}}
            events.append(
                ev({"type": "content_block_start", "index": index, "content_block": start})
            )
            for piece in cuts(json.dumps(block["input"])):
                events.append(
                    ev(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
                )
        events.append(ev({"type": "content_block_stop", "index": index}))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    events.append(ev(delta))
    events.append(ev({"type": "message_stop"}))
    return events


def relay(events: list[SseEvent], src: str, dst: str) -> list[SseEvent]:
    """Translate, then serialise and re-parse each event, as the wire does."""
    translator = StreamTranslator(src, dst, model="m")  # type: ignore[arg-type]
    out = [e for event in events for e in translator.feed(event)] + translator.close()
    return list(iter_events(serialize(e) for e in out))


@SETTINGS
@given(answers(), st.sampled_from(OTHERS), st.randoms(use_true_random=False))
def test_stream_round_trip(answer: dict[str, Any], other: str, rng: random.Random) -> None:
    events = stream_of(answer, rng)
    there = relay(events, "anthropic", other)
    back = check_anthropic_stream(relay(there, other, "anthropic"))
    texts = [b for b in answer["content"] if b["type"] == "text"]
    assert [b for b in back["content"] if b["type"] == "text"] == texts
    calls = [(b["id"], b["name"], b["input"]) for b in answer["content"] if b["type"] == "tool_use"]
    assert [
        (b["id"], b["name"], b["input"]) for b in back["content"] if b["type"] == "tool_use"
    ] == calls
    assert back["stop_reason"] == answer["stop_reason"]
    assert back["usage"]["output_tokens"] == answer["usage"]["output_tokens"]
    assert back["usage"]["input_tokens"] == answer["usage"]["input_tokens"]


@st.composite
def chat_conversations(draw: st.DrawFn) -> dict[str, Any]:
    """A random Chat Completions conversation: system, user, assistant tool calls, tool results."""
    tool_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    messages: list[dict[str, Any]] = [{"role": "system", "content": draw(text)}]
    counter = 0
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(text)})
        calls = []
        for _ in range(draw(st.integers(0, 2))):
            counter += 1
            arguments = json.dumps(draw(inputs))
            function = {"name": draw(st.sampled_from(tool_names)), "arguments": arguments}
            calls.append({"id": f"call_{counter}", "type": "function", "function": function})
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text)}
        if calls:
            assistant["tool_calls"] = calls
        elif assistant["content"] is None:
            assistant["content"] = draw(text)
        messages.append(assistant)
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(text)})
    tools = [
        {
            "type": "function",
            "function": {"name": n, "parameters": {"type": "object", "properties": {}}},
        }
        for n in tool_names
    ]
    return {"model": "m", "messages": messages, "tools": tools, "max_completion_tokens": 100}


def normal_chat(body: dict[str, Any]) -> list[Any]:
    out = []
    for message in body["messages"]:
        row = dict(message)
        for call in row.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        out.append(row)
    return out


@SETTINGS
@given(chat_conversations(), st.sampled_from(["anthropic", "gemini", "responses"]))
def test_chat_request_round_trip(conversation: dict[str, Any], other: str) -> None:
    there = translate_request(conversation, "openai", other, model="x")  # type: ignore[arg-type]
    back = translate_request(there, other, "openai", model="m")  # type: ignore[arg-type]
    assert normal_chat(back) == normal_chat(conversation)
    assert back["tools"] == conversation["tools"]
    assert back["max_completion_tokens"] == 100
