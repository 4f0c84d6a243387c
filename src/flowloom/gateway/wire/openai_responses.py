"""OpenAI Responses: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowloom.gateway.wire.common import RequestInfo, Tokens, as_int, estimate_tokens
from flowloom.gateway.wire.openai_chat import openai_error_body, openai_error_type
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["OpenAIResponsesWire"]


def _has_images(items: Any) -> bool:
    if not isinstance(items, list):
        return False
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("input_image", "input_file"):
                    return True
    return False


class OpenAIResponsesWire:
    """The OpenAI Responses format."""

    name = "responses"

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        max_tokens = body.get("max_output_tokens")
        return RequestInfo(
            model=model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools")),
            has_images=_has_images(body.get("input")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            est_input_tokens=estimate_tokens(size),
        )

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Tokens()
        details = usage.get("input_tokens_details")
        cached = as_int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        return Tokens(
            input_tokens=max(as_int(usage.get("input_tokens")) - cached, 0),
            output_tokens=as_int(usage.get("output_tokens")),
            cache_read=cached,
        )

    @staticmethod
    def reassemble(events: Iterable[SseEvent]) -> dict[str, Any]:
        """The final response object (from response.completed, else built from items)."""
        final: dict[str, Any] | None = None
        items: dict[int, Any] = {}
        for event in events:
            try:
                data = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            kind = data.get("type")
            if kind in ("response.created", "response.in_progress") and final is None:
                response = data.get("response")
                if isinstance(response, dict):
                    final = dict(response)
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                response = data.get("response")
                if isinstance(response, dict):
                    return dict(response)
            elif kind == "response.output_item.done":
                items[as_int(data.get("output_index"))] = data.get("item")
            elif kind == "error":
                final = dict(final or {})
                final["error"] = data
        result = final or {"object": "response"}
        if items:
            result["output"] = [items[i] for i in sorted(items)]
        return result

    @staticmethod
    def error_body(status: int, message: str) -> bytes:
        return json.dumps(openai_error_body(status, message)).encode()

    @staticmethod
    def stream_error(status: int, message: str) -> bytes:
        _, code = openai_error_type(status)
        data = json.dumps({"type": "error", "code": code, "message": message, "param": None})
        return f"event: error\ndata: {data}\n\n".encode()

    @staticmethod
    def error_message(body: Mapping[str, Any]) -> str | None:
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        return None

    @staticmethod
    def models(ids: Iterable[str]) -> bytes:
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "flowloom"} for i in ids]
        return json.dumps({"object": "list", "data": data}).encode()
