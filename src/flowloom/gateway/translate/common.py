"""Small shared pieces of translation: stop reasons, usage, ids, data URLs, JSON.

Translation goes through one hub, Anthropic Messages: every other format is translated to
and from it, so each format needs two converters instead of one per pair. The tables here
are the hub's vocabulary mapped to each format's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.translate.errors import TranslationError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "as_blocks",
    "dumps",
    "loads_object",
    "new_id",
    "parse_data_url",
]

DEFAULT_MAX_TOKENS = 4096
"""max_tokens for an Anthropic request whose source format left it out (Anthropic needs it)."""

STOP_TO_OPENAI: Mapping[str, str] = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)
STOP_FROM_OPENAI: Mapping[str, str] = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
)
STOP_TO_GEMINI: Mapping[str, str] = MappingProxyType(
    {
        "end_turn": "STOP",
        "stop_sequence": "STOP",
        "pause_turn": "STOP",
        "tool_use": "STOP",
        "max_tokens": "MAX_TOKENS",
        "model_context_window_exceeded": "MAX_TOKENS",
        "refusal": "SAFETY",
    }
)
STOP_FROM_GEMINI: Mapping[str, str] = MappingProxyType(
    {
        "STOP": "end_turn",
        "MAX_TOKENS": "max_tokens",
        "SAFETY": "refusal",
        "RECITATION": "refusal",
        "BLOCKLIST": "refusal",
        "PROHIBITED_CONTENT": "refusal",
        "SPII": "refusal",
        "IMAGE_SAFETY": "refusal",
        "IMAGE_PROHIBITED_CONTENT": "refusal",
        "MODEL_ARMOR": "refusal",
    }
)

_SEPARATORS = (",", ":")


def dumps(value: Any) -> str:
    """Compact JSON, ASCII only.

    Escaping non-ASCII keeps every SSE parser safe: some split lines on U+2028, U+2029 or
    U+0085, which JSON would otherwise carry raw inside a string.
    """
    return json.dumps(value, separators=_SEPARATORS)


def loads_object(text: str | None, what: str) -> dict[str, Any]:
    """A JSON object from tool-call arguments; an empty string is the empty object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise TranslationError(
            f"{what} is not valid JSON; send tool arguments as a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise TranslationError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def new_id(prefix: str) -> str:
    """A fresh identifier in a format's usual style (msg_…, toolu_…, call_…)."""
    return prefix + os.urandom(12).hex()


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, comma, data = url.partition(",")
    if not comma or not head.endswith(";base64"):
        raise TranslationError("a data: URL must be base64-encoded (data:<type>;base64,<data>)")
    media = head[5:-7].split(";", 1)[0]
    return media or "application/octet-stream", data


_IMAGE_EXT: Mapping[str, str] = MappingProxyType(
    {
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".webp": "image/webp",
        ".pdf": "application/pdf",
    }
)


def guess_media_type(url: str) -> str | None:
    """The media type an image/PDF URL's extension suggests (query and fragment ignored)."""
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    dot = path.rfind(".")
    return _IMAGE_EXT.get(path[dot:]) if dot != -1 else None


def as_blocks(content: Any) -> list[dict[str, Any]]:
    """Anthropic content (a string or a list of blocks) as a list of blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return content
    if content is None:
        return []
    raise TranslationError("message content must be a string or a list of content blocks")


def text_of(content: Any) -> str:
    """The text of Anthropic content (string or text blocks); other blocks are refused."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in as_blocks(content):
        if block.get("type") != "text":
            raise TranslationError(
                f"a {block.get('type')!r} block cannot appear here in the destination format; "
                "send text only"
            )
        parts.append(block.get("text") or "")
    return "\n".join(parts)


def anthropic_usage(
    input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    """An Anthropic usage object; cache fields only when non-zero (input excludes cache)."""
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write:
        usage["cache_creation_input_tokens"] = cache_write
    return usage


def usage_numbers(usage: Any) -> tuple[int, int, int, int]:
    """(input, output, cache read, cache write) from an Anthropic usage object."""
    if not isinstance(usage, Mapping):
        return 0, 0, 0, 0
    return (
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _int(usage.get("cache_read_input_tokens")),
        _int(usage.get("cache_creation_input_tokens")),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_int(value: Any) -> int:
    """`value` if it is an int (not a bool), else 0: usage fields are often absent or null."""
    return _int(value)
