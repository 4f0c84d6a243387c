"""Anthropic Messages: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.wire.common import (
    JsonWire,
    RequestInfo,
    Tokens,
    as_int,
    has_content_part,
    request_info,
)
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["ANTHROPIC_ERROR_TYPES", "AnthropicWire"]

ANTHROPIC_ERROR_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        503: "overloaded_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
)
"""Anthropic's error type for each HTTP status, for the gateway's own errors and for
errors translated from other formats (503, which Anthropic does not send, is the
gateway's "no provider can take it now": overloaded, which clients retry)."""
_IMAGE_TYPES = ("image", "document")


class AnthropicWire(JsonWire):
    """The Anthropic Messages format."""

    name = "anthropic"

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        return request_info(
            model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools")),
            has_images=has_content_part(body.get("messages"), _IMAGE_TYPES),
            max_tokens=body.get("max_tokens"),
            size=size,
        )

    @staticmethod
    def with_max_tokens(body: Mapping[str, Any], value: int) -> dict[str, Any]:
        return {**body, "max_tokens": value}

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
    def error_object(status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERROR_TYPES.get(status) or (
            "invalid_request_error" if status < 500 else "api_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self, status: int, message: str) -> bytes:
        return f"event: error\ndata: {json.dumps(self.error_object(status, message))}\n\n".encode()

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
