"""Errors across formats: what cannot be translated, and error bodies in the caller's shape.

A route that crosses formats must answer the caller in the caller's own error shape, whatever
the provider said, so the caller's SDK raises its usual exception class. `TranslationError`
is an `InputError` (HTTP 400): the request asked for something the destination format
cannot carry, and silently dropping it would change what the model sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowloom.errors import InputError
from flowloom.gateway.providers.interface import Format
from flowloom.gateway.wire.anthropic import ANTHROPIC_ERROR_TYPES
from flowloom.gateway.wire.sse import SseEvent

__all__ = [
    "SHAPE_ERRORS",
    "TranslationError",
    "error_body",
    "error_event",
    "parse_error",
    "translate_error",
]


class TranslationError(InputError):
    """The request (or response) uses a feature the other format cannot represent."""

    status = 400


SHAPE_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    ValueError,
    RecursionError,
)
"""What the translators, which walk JSON trusting its documented shape, raise on a field
of another shape deeper than intake checks: a translation failure, never a gateway bug."""


_OPENAI_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "insufficient_quota",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_exceeded",
        500: "server_error",
        503: "server_error",
        529: "server_error",
    }
)
_GEMINI_STATUS: Mapping[int, str] = MappingProxyType(
    {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        402: "RESOURCE_EXHAUSTED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ABORTED",
        413: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
        529: "UNAVAILABLE",
    }
)
_ANTHROPIC_KINDS = frozenset(ANTHROPIC_ERROR_TYPES.values())
_OPENAI_KINDS = frozenset(_OPENAI_TYPES.values())
_STATUS_OF_KIND: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request_error": 400,
        "authentication_error": 401,
        "billing_error": 402,
        "insufficient_quota": 429,
        "permission_error": 403,
        "not_found_error": 404,
        "request_too_large": 413,
        "rate_limit_error": 429,
        "rate_limit_exceeded": 429,
        "api_error": 500,
        "server_error": 500,
        "timeout_error": 504,
        "overloaded_error": 529,
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "RESOURCE_EXHAUSTED": 429,
        "CANCELLED": 499,
        "INTERNAL": 500,
        "UNKNOWN": 500,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }
)


def _kind_for(table: Mapping[int, str], status: int, default: str) -> str:
    kind = table.get(status)
    if kind is not None:
        return kind
    return default if status < 500 else table.get(500, default)


def error_body(
    fmt: Format, status: int, message: str, *, kind: str | None = None
) -> dict[str, Any]:
    """An error body in `fmt`'s own shape, so that format's SDK raises its usual error class.

    `kind` overrides the error type the status suggests (ignored for Gemini, whose shape
    carries a canonical status name derived from the HTTP status).
    """
    if fmt == "anthropic":
        if kind not in _ANTHROPIC_KINDS:
            kind = _kind_for(ANTHROPIC_ERROR_TYPES, status, "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if fmt == "gemini":
        return {
            "error": {
                "code": status,
                "message": message,
                "status": _kind_for(_GEMINI_STATUS, status, "INVALID_ARGUMENT"),
            }
        }
    if kind not in _OPENAI_KINDS:
        kind = _kind_for(_OPENAI_TYPES, status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def parse_error(body: Any, status: int) -> tuple[int, str, str | None]:
    """(status, message, kind) read from an error body of any of the formats.

    Tolerates bodies that are not errors at all (a proxy's HTML page, bytes): the message
    then says what came back, so the caller still gets a useful one-line error.
    """
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            text = body[:200].decode("utf-8", "replace").strip()
            return status, text or f"upstream answered HTTP {status}", None
    if isinstance(body, list) and body:  # Gemini sometimes wraps the error in a list
        body = body[0]
    if not isinstance(body, Mapping):
        return status, f"upstream answered HTTP {status}", None
    err = body.get("error")
    if isinstance(err, Mapping):
        message = err.get("message")
        kind = err.get("type") or err.get("status") or err.get("code")
        text = message if isinstance(message, str) and message else f"upstream HTTP {status}"
        return status, text, kind if isinstance(kind, str) else None
    if isinstance(err, str):
        return status, err, None
    message = body.get("message")
    if isinstance(message, str):
        return status, message, None
    return status, f"upstream answered HTTP {status}", None


def translate_error(body: Any, status: int, src: Format, dst: Format) -> tuple[int, dict[str, Any]]:
    """A provider's error (`src` shape, HTTP `status`) as (status, body) in the caller's shape.

    The status is kept, except Anthropic's 529 "overloaded", which non-Anthropic SDKs know
    as 503; the error kind is carried over where the caller's format has an equivalent.
    """
    status, message, kind = parse_error(body, status)
    if status == 529 and dst != "anthropic":
        status = 503
    return status, error_body(dst, status, message, kind=kind)


def error_event(fmt: Format, status: int, message: str, *, kind: str | None = None) -> SseEvent:
    """An in-stream error event in `fmt`'s shape (an upstream failed after the stream began).

    Each SDK raises on it: Anthropic's `event: error`, an OpenAI chunk carrying `error`, a
    Responses `error` event, a Gemini chunk carrying `error`.
    """
    body = error_body(fmt, status, message, kind=kind)
    if fmt == "anthropic":
        return SseEvent("error", json.dumps(body, separators=(",", ":")))
    if fmt == "responses":
        inner = body["error"]
        data = {"type": "error", "code": inner["code"], "message": message, "param": None}
        return SseEvent("error", json.dumps(data, separators=(",", ":")))
    return SseEvent(None, json.dumps(body, separators=(",", ":")))


def status_of_kind(kind: str | None, default: int = 500) -> int:
    """The HTTP status an error kind name stands for (any format's names)."""
    if kind is None:
        return default
    return _STATUS_OF_KIND.get(kind, default)
