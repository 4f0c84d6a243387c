"""Codex's tools across formats: `namespace` tools flattened and restored, `web_search`
carried as Anthropic's web search server tool and Gemini's Google Search.

The tool list is the shape Codex 0.171 sends (function tools, a `namespace` of
sub-agent functions, `{"type": "web_search", "external_web_access": false}`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowloom.gateway.translate import (
    StreamTranslator,
    TranslationError,
    namespaced_tools,
    translate_request,
    translate_response,
)
from flowloom.gateway.wire.sse import SseEvent

SCHEMA = {"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"]}
CODEX_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "exec_command", "description": "Run.", "parameters": SCHEMA},
    {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Tools for spawning and managing sub-agents.",
        "tools": [
            {
                "type": "function",
                "name": "close_agent",
                "description": "Close.",
                "parameters": SCHEMA,
            },
            {"type": "function", "name": "spawn_agent", "parameters": SCHEMA},
        ],
    },
    {"type": "web_search", "external_web_access": False},
]
REQUEST = {"model": "claude-x", "input": "hi", "tools": CODEX_TOOLS, "stream": True}


@pytest.mark.parametrize("dst", ["anthropic", "gemini"])
def test_namespace_functions_are_flattened_and_web_search_is_carried(dst: str) -> None:
    out = translate_request(REQUEST, "responses", dst, model="m")  # type: ignore[arg-type]
    if dst == "anthropic":
        names = [t["name"] for t in out["tools"]]
        assert names == [
            "exec_command",
            "multi_agent_v1__close_agent",
            "multi_agent_v1__spawn_agent",
            "web_search",
        ]
        assert out["tools"][-1] == {"type": "web_search_20250305", "name": "web_search"}
        assert "sub-agents" in out["tools"][1]["description"]
    else:
        declarations = out["tools"][0]["functionDeclarations"]
        assert [d["name"] for d in declarations][1:] == [
            "multi_agent_v1__close_agent",
            "multi_agent_v1__spawn_agent",
        ]
        assert out["tools"][1] == {"googleSearch": {}}


def test_web_search_cannot_reach_chat_completions() -> None:
    with pytest.raises(TranslationError, match="web_search"):
        translate_request(REQUEST, "responses", "openai", model="gpt-x")


def test_history_names_namespace_calls_and_drops_hosted_search_items() -> None:
    body = {
        "model": "c",
        "tools": CODEX_TOOLS,
        "input": [
            {"type": "message", "role": "user", "content": "spawn one"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {
                "type": "function_call",
                "namespace": "multi_agent_v1",
                "name": "spawn_agent",
                "call_id": "call_1",
                "arguments": '{"target": "a"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
        ],
    }
    out = translate_request(body, "responses", "anthropic", model="c")
    use = out["messages"][1]["content"][0]
    assert use["name"] == "multi_agent_v1__spawn_agent" and use["input"] == {"target": "a"}


def test_namespace_calls_come_back_with_their_namespace() -> None:
    mapping = namespaced_tools(REQUEST)
    assert mapping == {
        "multi_agent_v1__close_agent": ("multi_agent_v1", "close_agent"),
        "multi_agent_v1__spawn_agent": ("multi_agent_v1", "spawn_agent"),
    }
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
             "input": {"query": "flowloom"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent",
             "input": {"target": "a"}},
            {"type": "tool_use", "id": "toolu_2", "name": "exec_command", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 12, "output_tokens": 5},
    }  # fmt: skip
    out = translate_response(answer, "anthropic", "responses", model="c", namespaced=mapping)
    search, spawn, plain = out["output"]
    assert search["type"] == "web_search_call" and search["action"]["query"] == "flowloom"
    assert spawn["name"] == "spawn_agent" and spawn["namespace"] == "multi_agent_v1"
    assert plain["name"] == "exec_command" and "namespace" not in plain


def test_streamed_namespace_call_and_search_for_a_responses_caller() -> None:
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 9}}},
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"query": "x"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__close_agent",
            "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {
            "type": "input_json_delta", "partial_json": '{"target": "a"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"input_tokens": 9, "output_tokens": 3}},
        {"type": "message_stop"},
    ]  # fmt: skip
    translator = StreamTranslator(
        "anthropic", "responses", model="c", namespaced=namespaced_tools(REQUEST)
    )
    out: list[SseEvent] = []
    for event in events:
        out.extend(translator.feed(SseEvent(event["type"], json.dumps(event))))
    assert translator.error is None
    done = [json.loads(e.data) for e in out if e.event == "response.completed"]
    output = done[0]["response"]["output"]
    assert output[0]["type"] == "web_search_call" and output[0]["action"]["query"] == "x"
    assert output[1]["name"] == "close_agent" and output[1]["namespace"] == "multi_agent_v1"
    assert json.loads(output[1]["arguments"]) == {"target": "a"}


def test_gemini_google_search_becomes_anthropic_web_search_and_back() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "news?"}]}],
        "tools": [{"googleSearch": {}}, {"functionDeclarations": [{"name": "f"}]}],
    }
    out = translate_request(body, "gemini", "anthropic", model="c")
    assert {"type": "web_search_20250305", "name": "web_search"} in out["tools"]
    assert "f" in [t["name"] for t in out["tools"]]
    back = translate_request(out, "anthropic", "gemini", model="g")
    assert {"googleSearch": {}} in back["tools"]
    translator = StreamTranslator("anthropic", "gemini", model="g")
    for event in (
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 1},
    ):  # fmt: skip
        translator.feed(SseEvent(event["type"], json.dumps(event)))
    assert translator.error is None
