"""Anthropic Messages wire format: /v1/messages (JSON and SSE), count_tokens, models, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowloom.gateway.mock.base import Call, Ids, dumps, json_str
from flowloom.gateway.mock.content import Reply, chunk_words, count_tokens, split_json

__all__ = ["AnthropicWire", "anthropic_models"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "This request would exceed the rate limit for your organization.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out.",
    "overloaded_error": "Overloaded",
}
MODELS = (
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
)


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(reply: Reply) -> str:
    if reply.truncated:
        return "max_tokens"
    return "tool_use" if reply.tool is not None else "end_turn"


def anthropic_models(model_id: str | None = None) -> Any:
    """GET /v1/models (a page) or GET /v1/models/{id} (one model; None when unknown)."""
    rows = [
        {"type": "model", "id": mid, "display_name": name, "created_at": created}
        for mid, name, created in MODELS
    ]
    if model_id is not None:
        return next((r for r in rows if r["id"] == model_id), None)
    return {"data": rows, "has_more": False, "first_id": rows[0]["id"], "last_id": rows[-1]["id"]}


class AnthropicWire:
    name = "anthropic"
    content_type_stream = b"text/event-stream; charset=utf-8"
    default_context_window = 200_000

    def parse(self, body: Mapping[str, Any], model_hint: str | None) -> Call:
        tools: list[tuple[str, Mapping[str, Any]]] = []
        for tool in body.get("tools") or ():
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
                schema = tool.get("input_schema")
                tools.append((tool["name"], schema if isinstance(schema, Mapping) else {}))
        max_tokens = body.get("max_tokens")
        return Call(
            model=str(body.get("model") or model_hint or ""),
            stream=body.get("stream") is True,
            input_tokens=count_tokens(body.get("system"), body.get("messages"), body.get("tools")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            tools=tools,
            messages=body.get("messages"),
            body=body,
        )

    def validate(self, body: Mapping[str, Any]) -> str | None:
        """The message of Anthropic's 400 for a request missing required fields."""
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("messages"), list):
            return "messages: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        return None

    def _content(self, reply: Reply, ids: Ids) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        if reply.tool is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": ids.make("toolu_01", 22),
                    "name": reply.tool.name,
                    "input": reply.tool.arguments,
                }
            )
        return content

    def complete(self, call: Call, reply: Reply, ids: Ids) -> bytes:
        return dumps(
            {
                "id": ids.make("msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": self._content(reply, ids),
                "stop_reason": _stop_reason(reply),
                "stop_sequence": None,
                "usage": _usage(call.input_tokens, reply.output_tokens),
            }
        ).encode()

    def stream(self, call: Call, reply: Reply, ids: Ids) -> list[bytes]:
        events = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": ids.make("msg_01", 22),
                        "type": "message",
                        "role": "assistant",
                        "model": call.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": _usage(call.input_tokens, 1),
                    },
                },
            )
        ]
        index = 0
        if reply.text:
            events.append(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            events.append(_PING)
            for piece in chunk_words(reply.text):
                events.append(
                    b"event: content_block_delta\ndata: "
                    b'{"type":"content_block_delta","index":0,'
                    b'"delta":{"type":"text_delta","text":%s}}\n\n' % json_str(piece).encode()
                )
            events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        else:
            events.append(_PING)
        if reply.tool is not None:
            events.append(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": ids.make("toolu_01", 22),
                            "name": reply.tool.name,
                            "input": {},
                        },
                    },
                )
            )
            for piece in split_json(reply.tool.arguments_json):
                events.append(
                    _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
            events.append(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        events.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                    "usage": {
                        "input_tokens": call.input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": reply.output_tokens,
                    },
                },
            )
        )
        events.append(_STOP)
        return events

    def error(self, status: int, message: str | None = None) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return dumps(
            {"type": "error", "error": {"type": kind, "message": message or _MESSAGES[kind]}}
        ).encode()

    def stream_error(self, status: int) -> bytes:
        """The `event: error` Anthropic sends when a stream fails after it started."""
        kind = _ERROR_TYPES.get(status, "api_error")
        return _event(
            "error", {"type": "error", "error": {"type": kind, "message": _MESSAGES[kind]}}
        )

    def context_error(self, call: Call, limit: int) -> tuple[int, bytes]:
        tokens = max(call.input_tokens, limit + 1)
        return 400, self.error(400, f"prompt is too long: {tokens} tokens > {limit} maximum")

    def count_tokens_body(self, body: Mapping[str, Any]) -> bytes:
        tokens = count_tokens(body.get("system"), body.get("messages"), body.get("tools"))
        return dumps({"input_tokens": tokens}).encode()


_PING = _event("ping", {"type": "ping"})
_STOP = _event("message_stop", {"type": "message_stop"})
