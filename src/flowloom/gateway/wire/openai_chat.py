"""OpenAI Chat Completions: request peek, usage, stream reassembly and errors."""

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
from flowloom.gateway.wire.sse import SseEvent

__all__ = [
    "OpenAIChatWire",
    "openai_error_body",
    "openai_error_type",
    "openai_models",
    "openai_usage",
]

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def openai_error_type(status: int) -> tuple[str, str]:
    return _ERROR_TYPES.get(status, ("server_error", "server_error"))


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = openai_error_type(status)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def openai_usage(response: Mapping[str, Any], prompt: str, output: str, details: str) -> Tokens:
    """The counts of an OpenAI ``usage`` object, named by the API (Chat or Responses)."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return Tokens()
    found = usage.get(details)
    return Tokens.cached_inside(
        as_int(usage.get(prompt)),
        as_int(usage.get(output)),
        as_int(found.get("cached_tokens")) if isinstance(found, dict) else 0,
    )


def openai_models(ids: Iterable[str]) -> bytes:
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "flowloom"} for i in ids]
    return json.dumps({"object": "list", "data": data}).encode()


_IMAGE_TYPES = ("image_url", "input_image")


class OpenAIChatWire(JsonWire):
    """The OpenAI Chat Completions format (also Azure OpenAI and OpenAI-compatible servers)."""

    name = "openai"
    error_object = staticmethod(openai_error_body)
    models = staticmethod(openai_models)

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        return request_info(
            model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools") or body.get("functions")),
            has_images=has_content_part(body.get("messages"), _IMAGE_TYPES),
            max_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
            size=size,
        )

    @staticmethod
    def with_max_tokens(body: Mapping[str, Any], value: int) -> dict[str, Any]:
        out = dict(body)
        for key in ("max_completion_tokens", "max_tokens"):
            if isinstance(out.get(key), int):
                out[key] = value
        return out

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        return openai_usage(response, "prompt_tokens", "completion_tokens", "prompt_tokens_details")

    @staticmethod
    def reassemble(events: Iterable[SseEvent]) -> dict[str, Any]:
        """The chat.completion object a non-streaming call would have returned."""
        result: dict[str, Any] = {"object": "chat.completion"}
        choices: dict[int, dict[str, Any]] = {}
        for event in events:
            if event.data == "[DONE]":
                continue
            try:
                chunk = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
                if chunk.get(key) is not None:
                    result[key] = chunk[key]
            if isinstance(chunk.get("usage"), dict):
                result["usage"] = chunk["usage"]
            if "error" in chunk:
                result["error"] = chunk["error"]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                index = as_int(choice.get("index"))
                slot = choices.setdefault(
                    index,
                    {"index": index, "message": {"role": "assistant", "content": None}},
                )
                message = slot["message"]
                delta = choice.get("delta") or {}
                if delta.get("role"):
                    message["role"] = delta["role"]
                if isinstance(delta.get("content"), str):
                    message["content"] = (message["content"] or "") + delta["content"]
                if isinstance(delta.get("refusal"), str):
                    message["refusal"] = message.get("refusal", "") + delta["refusal"]
                for call in delta.get("tool_calls") or []:
                    calls = message.setdefault("tool_calls", [])
                    at = as_int(call.get("index"))
                    while len(calls) <= at:
                        calls.append(
                            {
                                "id": "",
                                "type": "function",
                                "function": {"name": "", "arguments": ""},
                            }
                        )
                    target = calls[at]
                    if call.get("id"):
                        target["id"] = call["id"]
                    function = call.get("function") or {}
                    if function.get("name"):
                        target["function"]["name"] += function["name"]
                    if function.get("arguments"):
                        target["function"]["arguments"] += function["arguments"]
                if choice.get("finish_reason") is not None:
                    slot["finish_reason"] = choice["finish_reason"]
        result["choices"] = [choices[i] for i in sorted(choices)]
        return result
