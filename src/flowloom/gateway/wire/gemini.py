"""Gemini generateContent: request peek, usage, stream reassembly and errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flowloom.gateway.wire.common import JsonWire, RequestInfo, Tokens, as_int, request_info
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["GeminiWire"]

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": status, "message": message, "status": _STATUS.get(status, "INTERNAL")}
    }


def _has_images(contents: Any) -> bool:
    if not isinstance(contents, list):
        return False
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict) and ("inlineData" in part or "fileData" in part):
                    return True
    return False


class GeminiWire(JsonWire):
    """The Gemini generateContent / streamGenerateContent format."""

    name = "gemini"
    error_object = staticmethod(_error)

    @staticmethod
    def peek(body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        config = body.get("generationConfig", body.get("generation_config"))
        limit = None
        if isinstance(config, dict):
            limit = config.get("maxOutputTokens", config.get("max_output_tokens"))
        return request_info(
            model or "",
            stream=False,  # the path says whether a Gemini call streams
            has_tools=bool(body.get("tools")),
            has_images=_has_images(body.get("contents")),
            max_tokens=limit,
            size=size,
        )

    @staticmethod
    def with_max_tokens(body: Mapping[str, Any], value: int) -> dict[str, Any]:
        out = dict(body)
        for key in ("generationConfig", "generation_config"):
            config = out.get(key)
            if isinstance(config, dict):
                config = dict(config)
                for name in ("maxOutputTokens", "max_output_tokens"):
                    if isinstance(config.get(name), int):
                        config[name] = value
                out[key] = config
        return out

    @staticmethod
    def usage(response: Mapping[str, Any]) -> Tokens:
        usage = response.get("usageMetadata")
        if not isinstance(usage, dict):
            return Tokens()
        return Tokens.cached_inside(
            as_int(usage.get("promptTokenCount")),
            as_int(usage.get("candidatesTokenCount")) + as_int(usage.get("thoughtsTokenCount")),
            as_int(usage.get("cachedContentTokenCount")),
        )

    @staticmethod
    def reassemble(events: Iterable[SseEvent]) -> dict[str, Any]:
        """One GenerateContentResponse merging the streamed chunks."""
        result: dict[str, Any] = {}
        candidates: dict[int, dict[str, Any]] = {}
        for event in events:
            try:
                chunk = json.loads(event.data)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            for key in ("usageMetadata", "modelVersion", "responseId", "promptFeedback", "error"):
                if key in chunk:
                    result[key] = chunk[key]
            for candidate in chunk.get("candidates") or []:
                if not isinstance(candidate, dict):
                    continue
                index = as_int(candidate.get("index"))
                slot = candidates.setdefault(
                    index, {"index": index, "content": {"role": "model", "parts": []}}
                )
                parts: list[dict[str, Any]] = slot["content"]["parts"]
                content = candidate.get("content") or {}
                for part in content.get("parts") or []:
                    if not isinstance(part, dict):
                        continue
                    is_text = set(part) == {"text"}
                    if is_text and parts and set(parts[-1]) == {"text"}:
                        parts[-1] = {"text": parts[-1]["text"] + str(part["text"])}
                    else:
                        parts.append(dict(part))
                for key, value in candidate.items():
                    if key not in ("content", "index"):
                        slot[key] = value
        result["candidates"] = [candidates[i] for i in sorted(candidates)]
        return result

    @staticmethod
    def models(ids: Iterable[str]) -> bytes:
        data = [
            {
                "name": f"models/{i}",
                "displayName": i,
                "supportedGenerationMethods": ["generateContent"],
            }
            for i in ids
        ]
        return json.dumps({"models": data}).encode()
