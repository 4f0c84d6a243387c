"""Anthropic Messages: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowloom.gateway.wire.common import RequestInfo, Tokens, as_int, estimate_tokens
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["AnthropicWire"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in ("image", "document"):
                    return True
    return False


class AnthropicWire:
    """The Anthropic Messages format."""

    name = "anthropic"

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        max_tokens = body.get("max_tokens")
        return RequestInfo(
            model=model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools")),
            has_images=_has_images(body.get("messages")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            est_input_tokens=estimate_tokens(size),
        )

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Tokens()
        return Tokens(
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            cache_read=as_int(usage.get("cache_read_input_tokens")),
            cache_write=as_int(usage.get("cache_creation_input_tokens")),
        )

    @staticmethod
    def reassemble(events: Iterable[SseEvent]) -> dict[str, Any]:
        """The message object a non-streaming call would have returned."""
        message: dict[str, Any] = {}
        blocks: dict[int, dict[str, Any]] = {}
        partial: dict[int, list[str]] = {}
        for event in events:
            try:
                data = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            if kind == "message_start" and isinstance(data.get("message"), dict):
                message = dict(data["message"])
            elif kind == "content_block_start":
                block = data.get("content_block")
                blocks[as_int(data.get("index"))] = dict(block) if isinstance(block, dict) else {}
            elif kind == "content_block_delta":
                index = as_int(data.get("index"))
                delta = data.get("delta") or {}
                block = blocks.setdefault(index, {})
                dtype = delta.get("type")
                if dtype == "text_delta":
                    block["text"] = block.get("text", "") + str(delta.get("text", ""))
                elif dtype == "input_json_delta":
                    partial.setdefault(index, []).append(str(delta.get("partial_json", "")))
                elif dtype == "thinking_delta":
                    block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
                elif dtype == "signature_delta":
                    block["signature"] = str(delta.get("signature", ""))
                elif dtype == "citations_delta":
                    block.setdefault("citations", []).append(delta.get("citation"))
            elif kind == "message_delta":
                delta = data.get("delta") or {}
                for key in ("stop_reason", "stop_sequence"):
                    if key in delta:
                        message[key] = delta[key]
                if isinstance(data.get("usage"), dict):
                    usage = dict(message.get("usage") or {})
                    usage.update({k: v for k, v in data["usage"].items() if v is not None})
                    message["usage"] = usage
            elif kind == "error":
                message["error"] = data.get("error")
        for index, parts in partial.items():
            text = "".join(parts)
            try:
                blocks[index]["input"] = json.loads(text) if text else {}
            except ValueError:
                blocks[index]["input"] = text
        message["content"] = [blocks[i] for i in sorted(blocks)]
        return message

    @staticmethod
    def error_body(status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()

    @staticmethod
    def stream_error(status: int, message: str) -> bytes:
        kind = _ERROR_TYPES.get(status, "api_error")
        data = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
        return f"event: error\ndata: {data}\n\n".encode()

    @staticmethod
    def error_message(body: Mapping[str, Any]) -> str | None:
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        return None

    @staticmethod
    def models(ids: Iterable[str]) -> bytes:
        data = [
            {"type": "model", "id": i, "display_name": i, "created_at": "2025-01-01T00:00:00Z"}
            for i in ids
        ]
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        return json.dumps(
            {"data": data, "has_more": False, "first_id": first, "last_id": last}
        ).encode()
