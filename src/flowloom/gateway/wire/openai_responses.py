"""OpenAI Responses: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowloom.gateway.wire.common import (
    JsonWire,
    RequestInfo,
    Tokens,
    as_int,
    has_content_part,
    request_info,
)
from flowloom.gateway.wire.openai_chat import (
    openai_error_body,
    openai_error_type,
    openai_models,
    openai_usage,
)
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["OpenAIResponsesWire"]
_IMAGE_TYPES = ("input_image", "input_file")


class OpenAIResponsesWire(JsonWire):
    """The OpenAI Responses format."""

    name = "responses"
    error_object = staticmethod(openai_error_body)
    models = staticmethod(openai_models)

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        return request_info(
            model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools")),
            has_images=has_content_part(body.get("input"), _IMAGE_TYPES),
            max_tokens=body.get("max_output_tokens"),
            size=size,
        )

    @staticmethod
    def with_max_tokens(body: Mapping[str, Any], value: int) -> dict[str, Any]:
        return {**body, "max_output_tokens": value}

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        return openai_usage(response, "input_tokens", "output_tokens", "input_tokens_details")

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
    def stream_error(status: int, message: str) -> bytes:
        _, code = openai_error_type(status)
        data = json.dumps({"type": "error", "code": code, "message": message, "param": None})
        return f"event: error\ndata: {data}\n\n".encode()
