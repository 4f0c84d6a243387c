"""What the gateway reads from a request or response, whatever its format.

`RequestInfo` holds the few fields routing needs; `Tokens` the usage counts a response
reports. Both are filled by the per-format modules without copying the body.
`JsonWire` is what those modules share: errors as JSON objects with a "message".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JsonWire",
    "RequestInfo",
    "Tokens",
    "as_int",
    "classify_error",
    "estimate_tokens",
    "has_content_part",
    "request_info",
]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The fields of a request the router and limits look at."""

    model: str
    stream: bool
    has_tools: bool
    has_images: bool
    max_tokens: int | None
    est_input_tokens: int


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts reported by a provider (0 when it did not say).

    Anthropic's convention, whatever the format: `input_tokens` excludes tokens read from
    or written to the prompt cache (OpenAI and Gemini count cached tokens inside their
    prompt count, so their wire modules subtract them).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def cached_inside(cls, prompt: int, output: int, cached: int) -> Tokens:
        """Counts from a prompt count that includes the `cached` tokens (OpenAI, Gemini)."""
        return cls(input_tokens=max(prompt - cached, 0), output_tokens=output, cache_read=cached)


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def estimate_tokens(body_len: int) -> int:
    """A cheap input-token estimate from the body size (about four bytes per token)."""
    return body_len // 4 + 1


def request_info(
    model: str, *, stream: bool, has_tools: bool, has_images: bool, max_tokens: Any, size: int
) -> RequestInfo:
    """A peeked request: `max_tokens` counts when it is an int, the input is estimated."""
    return RequestInfo(
        model,
        stream,
        has_tools,
        has_images,
        max_tokens if isinstance(max_tokens, int) else None,
        estimate_tokens(size),
    )


def has_content_part(items: Any, types: tuple[str, ...]) -> bool:
    """Whether some message of the list `items` has a content part of one of `types`."""
    if not isinstance(items, list):
        return False
    for item in items:
        parts = item.get("content") if isinstance(item, dict) else None
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, dict) and part.get("type") in types:
                    return True
    return False


class JsonWire:
    """Errors of a JSON format: bodies from `error_object`, the message read back."""

    @staticmethod
    def error_object(status: int, message: str) -> dict[str, Any]:
        """The error response object of this format for `status` and `message`."""
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> bytes:
        return json.dumps(self.error_object(status, message)).encode()

    def stream_error(self, status: int, message: str) -> bytes:
        return f"data: {json.dumps(self.error_object(status, message))}\n\n".encode()

    @staticmethod
    def error_message(body: Mapping[str, Any]) -> str | None:
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        return None


_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "maximum context",
    "input length and `max_tokens` exceed",
    "exceeds the maximum number of tokens",
    "input token count",
)


def classify_error(status: int, body: bytes) -> str | None:
    """An error kind for routing: "context_window", "rate_limited", "overloaded", "server_error"."""
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status >= 500:
        return "server_error"
    if status in (400, 413, 422) and body:
        lowered = body[:4096].decode("utf-8", "replace").lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return "context_window"
    return None
