"""Stream grammar checks per format, and a format-neutral summary of an answer.

Each `check_<format>_stream` asserts that a list of SSE events is a valid stream of that
format (the order its SDK relies on) and returns the whole response it adds up to, in the
same format's non-streaming shape; `summary` reduces any format's whole response to the
same neutral tuple so answers can be compared across formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flowloom.gateway.wire.sse import SseEvent


@dataclass(frozen=True)
class Summary:
    text: str
    calls: tuple[tuple[str, str], ...]  # (name, arguments as canonical JSON)
    stop: str  # "end" | "tool" | "max" | "refusal"
    prompt: int  # all input tokens, cached included
    cached: int
    output: int


def _canon(args: Any) -> str:
    if isinstance(args, str):
        args = json.loads(args) if args else {}
    return json.dumps(args, sort_keys=True)


def check_anthropic_stream(events: list[SseEvent]) -> dict[str, Any]:
    bodies = [json.loads(e.data) for e in events]
    for event, body in zip(events, bodies, strict=True):
        assert event.event == body["type"], (event.event, body)
    bodies = [b for b in bodies if b["type"] != "ping"]
    assert bodies[0]["type"] == "message_start"
    message = dict(bodies[0]["message"])
    assert message["content"] == [] and message["stop_reason"] is None
    content: list[dict[str, Any]] = []
    open_index: int | None = None
    partial: dict[int, str] = {}
    i = 1
    while bodies[i]["type"] in ("content_block_start", "content_block_delta", "content_block_stop"):
        body = bodies[i]
        if body["type"] == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            assert body["index"] == len(content)
            open_index = body["index"]
            block = dict(body["content_block"])
            content.append(block)
            partial[open_index] = ""
        elif body["type"] == "content_block_delta":
            assert body["index"] == open_index
            block = content[body["index"]]
            delta = body["delta"]
            if delta["type"] == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                assert block["type"] == "tool_use"
                partial[body["index"]] += delta["partial_json"]
            elif delta["type"] == "thinking_delta":
                assert block["type"] == "thinking"
                block["thinking"] += delta["thinking"]
        else:
            assert body["index"] == open_index
            block = content[body["index"]]
            if block["type"] == "tool_use":
                block["input"] = json.loads(partial[body["index"]] or "{}")
            open_index = None
        i += 1
    assert open_index is None
    assert bodies[i]["type"] == "message_delta", bodies[i]
    assert bodies[i]["delta"]["stop_reason"]
    message["stop_reason"] = bodies[i]["delta"]["stop_reason"]
    message["usage"] = {**message["usage"], **bodies[i]["usage"]}
    assert bodies[i + 1]["type"] == "message_stop"
    assert len(bodies) == i + 2
    message["content"] = content
    return message


def check_openai_stream(events: list[SseEvent], *, usage: bool = True) -> dict[str, Any]:
    assert events[-1].data == "[DONE]"
    assert all(e.event is None for e in events)
    chunks = [json.loads(e.data) for e in events[:-1]]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    first = chunks[0]["choices"][0]
    assert first["delta"].get("role") == "assistant"
    text = ""
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    final_usage = None
    for n, chunk in enumerate(chunks):
        assert chunk["object"] == "chat.completion.chunk"
        if not chunk["choices"]:
            assert n == len(chunks) - 1 and usage, "the usage chunk comes last"
            final_usage = chunk["usage"]
            continue
        choice = chunk["choices"][0]
        assert finish is None, "nothing may follow the finish_reason chunk but usage"
        delta = choice["delta"]
        text += delta.get("content") or ""
        for call in delta.get("tool_calls") or ():
            index = call["index"]
            if index not in calls:
                assert call["id"] and call["function"]["name"], "first tool delta names the call"
                assert index == len(calls)
                calls[index] = {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
            calls[index]["function"]["arguments"] += call["function"].get("arguments") or ""
        finish = choice["finish_reason"]
    assert finish is not None
    if usage:
        assert final_usage is not None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": chunks[0]["id"],
        "object": "chat.completion",
        "model": chunks[0]["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": final_usage,
    }


def check_gemini_stream(events: list[SseEvent]) -> dict[str, Any]:
    chunks = [json.loads(e.data) for e in events]
    parts: list[dict[str, Any]] = []
    finish = None
    usage = None
    for n, chunk in enumerate(chunks):
        candidate = chunk["candidates"][0]
        assert finish is None
        for part in candidate.get("content", {}).get("parts", ()):
            mergeable = parts and "text" in parts[-1] and not parts[-1].get("thought")
            if "text" in part and mergeable and not part.get("thought"):
                parts[-1] = {"text": parts[-1]["text"] + part["text"]}
            elif part != {"text": ""}:
                parts.append(part)
        finish = candidate.get("finishReason")
        if finish is not None:
            assert n == len(chunks) - 1
            usage = chunk["usageMetadata"]
    assert finish is not None and usage is not None
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": usage,
    }


def check_responses_stream(events: list[SseEvent]) -> dict[str, Any]:
    bodies = [json.loads(e.data) for e in events]
    for n, (event, body) in enumerate(zip(events, bodies, strict=True)):
        assert event.event == body["type"]
        assert body["sequence_number"] == n
    assert bodies[0]["type"] == "response.created"
    assert bodies[-1]["type"] in ("response.completed", "response.incomplete")
    added: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    texts: dict[int, str] = {}
    args: dict[int, str] = {}
    for body in bodies[1:-1]:
        kind = body["type"]
        if kind == "response.output_item.added":
            assert body["output_index"] == len(added)
            added[body["output_index"]] = body["item"]
        elif kind == "response.output_text.delta":
            texts[body["output_index"]] = texts.get(body["output_index"], "") + body["delta"]
        elif kind == "response.function_call_arguments.delta":
            args[body["output_index"]] = args.get(body["output_index"], "") + body["delta"]
        elif kind == "response.output_text.done":
            assert body["text"] == texts.get(body["output_index"], "")
        elif kind == "response.function_call_arguments.done":
            assert body["arguments"] == args.get(body["output_index"], "")
        elif kind == "response.output_item.done":
            assert body["output_index"] in added and body["output_index"] not in done
            done[body["output_index"]] = body["item"]
    assert added.keys() == done.keys()
    final: dict[str, Any] = bodies[-1]["response"]
    assert [i["id"] for i in final["output"]] == [done[k]["id"] for k in sorted(done)]
    return final


CHECKS = {
    "anthropic": check_anthropic_stream,
    "openai": check_openai_stream,
    "gemini": check_gemini_stream,
    "responses": check_responses_stream,
}


def summary(fmt: str, body: dict[str, Any]) -> Summary:
    """The neutral content of a whole response in format `fmt`."""
    if fmt == "anthropic":
        text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
        calls = tuple(
            (b["name"], _canon(b["input"])) for b in body["content"] if b["type"] == "tool_use"
        )
        stop = {"end_turn": "end", "tool_use": "tool", "max_tokens": "max"}.get(
            body["stop_reason"], body["stop_reason"]
        )
        u = body["usage"]
        cached = u.get("cache_read_input_tokens") or 0
        prompt = u["input_tokens"] + cached + (u.get("cache_creation_input_tokens") or 0)
        return Summary(text, calls, stop, prompt, cached, u["output_tokens"])
    if fmt == "openai":
        choice = body["choices"][0]
        message = choice["message"]
        calls = tuple(
            (c["function"]["name"], _canon(c["function"]["arguments"]))
            for c in message.get("tool_calls") or ()
        )
        stop = {"stop": "end", "tool_calls": "tool", "length": "max"}.get(
            choice["finish_reason"], choice["finish_reason"]
        )
        u = body["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        return Summary(
            message["content"] or "",
            calls,
            stop,
            u["prompt_tokens"],
            cached,
            u["completion_tokens"],
        )
    if fmt == "gemini":
        candidate = body["candidates"][0]
        parts = candidate["content"]["parts"]
        text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        calls = tuple(
            (p["functionCall"]["name"], _canon(p["functionCall"]["args"]))
            for p in parts
            if "functionCall" in p
        )
        stop = "tool" if calls else {"STOP": "end", "MAX_TOKENS": "max"}[candidate["finishReason"]]
        u = body["usageMetadata"]
        output = u["candidatesTokenCount"] + (u.get("thoughtsTokenCount") or 0)
        cached = u.get("cachedContentTokenCount") or 0
        return Summary(text, calls, stop, u["promptTokenCount"], cached, output)
    text = ""
    call_list = []
    for item in body["output"]:
        if item["type"] == "message":
            text += "".join(p["text"] for p in item["content"] if p["type"] == "output_text")
        elif item["type"] == "function_call":
            call_list.append((item["name"], _canon(item["arguments"])))
    stop = "max" if body["status"] == "incomplete" else "tool" if call_list else "end"
    u = body["usage"]
    cached = u["input_tokens_details"]["cached_tokens"]
    return Summary(text, tuple(call_list), stop, u["input_tokens"], cached, u["output_tokens"])
