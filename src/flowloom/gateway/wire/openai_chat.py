"""OpenAI Chat Completions: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowloom.gateway.wire.common import RequestInfo, Tokens, as_int, estimate_tokens
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["OpenAIChatWire", "openai_error_body", "openai_error_type"]

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


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                    return True
    return False


class OpenAIChatWire:
    """The OpenAI Chat Completions format (also Azure OpenAI and OpenAI-compatible servers)."""

    name = "openai"

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        return RequestInfo(
            model=model or str(body.get("model") or ""),
            stream=body.get("stream") is True,
            has_tools=bool(body.get("tools") or body.get("functions")),
            has_images=_has_images(body.get("messages")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            est_input_tokens=estimate_tokens(size),
        )

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Tokens()
        details = usage.get("prompt_tokens_details")
        cached = as_int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        return Tokens(
            input_tokens=max(as_int(usage.get("prompt_tokens")) - cached, 0),
            output_tokens=as_int(usage.get("completion_tokens")),
            cache_read=cached,
        )

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

    @staticmethod
    def error_body(status: int, message: str) -> bytes:
        return json.dumps(openai_error_body(status, message)).encode()

    @staticmethod
    def stream_error(status: int, message: str) -> bytes:
        return f"data: {json.dumps(openai_error_body(status, message))}\n\n".encode()

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
