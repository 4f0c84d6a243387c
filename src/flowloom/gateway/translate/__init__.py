"""Format translation between Anthropic Messages, OpenAI Chat Completions, OpenAI Responses
and Gemini generateContent: requests, whole responses, streams and errors.

Pure functions over parsed JSON (dicts in, dicts out) and SSE events. Every route goes
through the Anthropic shape as its hub: a request from format A to format B is A → Anthropic
→ B (one step when either side is Anthropic). What a destination cannot represent raises
`TranslationError` (an `InputError`, HTTP 400) with a message saying what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.providers.interface import Format
from flowloom.gateway.translate.errors import (
    SHAPE_ERRORS,
    TranslationError,
    error_body,
    error_event,
    parse_error,
    translate_error,
)
from flowloom.gateway.translate.extras import EXTRA_KEY, apply_extra, take_extra
from flowloom.gateway.translate.gemini import (
    anthropic_to_gemini_request,
    anthropic_to_gemini_response,
    gemini_to_anthropic_request,
    gemini_to_anthropic_response,
)
from flowloom.gateway.translate.openai_chat import (
    anthropic_to_openai_request,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
    openai_to_anthropic_response,
)
from flowloom.gateway.translate.responses import (
    anthropic_to_responses_request,
    anthropic_to_responses_response,
    namespaced_tools,
    responses_to_anthropic_request,
    responses_to_anthropic_response,
)
from flowloom.gateway.translate.streams import StreamTranslator

__all__ = [
    "SHAPE_ERRORS",
    "StreamTranslator",
    "TranslationError",
    "error_body",
    "error_event",
    "namespaced_tools",
    "parse_error",
    "translate_error",
    "translate_request",
    "translate_response",
]

_Convert = Callable[..., dict[str, Any]]

_TO_HUB_REQUEST: Mapping[str, _Convert] = MappingProxyType(
    {
        "openai": openai_to_anthropic_request,
        "gemini": gemini_to_anthropic_request,
        "responses": responses_to_anthropic_request,
    }
)
_FROM_HUB_REQUEST: Mapping[str, _Convert] = MappingProxyType(
    {
        "openai": anthropic_to_openai_request,
        "gemini": anthropic_to_gemini_request,
        "responses": anthropic_to_responses_request,
    }
)
_TO_HUB_RESPONSE: Mapping[str, _Convert] = MappingProxyType(
    {
        "openai": openai_to_anthropic_response,
        "gemini": gemini_to_anthropic_response,
        "responses": responses_to_anthropic_response,
    }
)
_FROM_HUB_RESPONSE: Mapping[str, _Convert] = MappingProxyType(
    {
        "openai": anthropic_to_openai_response,
        "gemini": anthropic_to_gemini_response,
        "responses": anthropic_to_responses_response,
    }
)


def _check(body: Any, what: str) -> None:
    if not isinstance(body, Mapping):
        raise TranslationError(f"the {what} must be a JSON object")


def translate_request(
    body: Mapping[str, Any], src: Format, dst: Format, *, model: str, stream: bool | None = None
) -> dict[str, Any]:
    """The caller's request `body` (format `src`) as a request in the provider's format `dst`.

    `model` is the upstream model id written into the result (Gemini takes it in the URL
    instead). `stream` overrides the body's stream flag: a Gemini caller says it in the URL
    (streamGenerateContent), not in the body. The result for src == dst is a shallow copy
    with the model replaced.
    """
    _check(body, "request body")
    if src == dst:
        out = dict(body)
        if dst != "gemini":
            out["model"] = model
        return out
    if src == "anthropic":
        hub = {k: v for k, v in body.items() if k != EXTRA_KEY}
        extra = None
    else:
        hub = _TO_HUB_REQUEST[src](body, model=model)
        extra = take_extra(hub, dst)
    if stream is not None:
        if stream:
            hub["stream"] = True
        else:
            hub.pop("stream", None)
    if dst == "anthropic":
        return hub
    out = _FROM_HUB_REQUEST[dst](hub, model=model)
    if dst == "gemini":
        out.pop("stream", None)
    if extra:
        apply_extra(dst, out, extra)
    return out


def translate_response(
    body: Mapping[str, Any],
    src: Format,
    dst: Format,
    *,
    model: str,
    namespaced: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A provider's whole response (format `src`) as the caller's format `dst`.

    `model` is the model name the caller sees in the result; `namespaced` (a Responses
    caller's `namespaced_tools`) names the function calls that belong to a namespace.
    """
    _check(body, "response body")
    if src == dst:
        return dict(body)
    hub = body if src == "anthropic" else _TO_HUB_RESPONSE[src](body, model=model)
    if dst == "anthropic":
        out = dict(hub)
        out["model"] = model
        return out
    if dst == "responses":
        return anthropic_to_responses_response(hub, model=model, namespaced=namespaced)
    return _FROM_HUB_RESPONSE[dst](hub, model=model)
