"""What the gateway reads from a request or response, whatever its format.

`RequestInfo` holds the few fields routing needs; `Tokens` the usage counts a response
reports. Both are filled by the per-format modules without copying the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RequestInfo", "Tokens", "as_int", "classify_error", "estimate_tokens"]


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


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def estimate_tokens(body_len: int) -> int:
    """A cheap input-token estimate from the body size (about four bytes per token)."""
    return body_len // 4 + 1


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
