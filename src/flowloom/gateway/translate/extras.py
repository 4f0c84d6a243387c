"""Request settings the hub cannot hold, carried past it between the other formats.

Structured output (JSON mode, a JSON schema) and a few sampling settings exist in Chat
Completions, Responses and Gemini but not in Anthropic Messages. A request between two
non-Anthropic formats passes through the Anthropic hub, so these ride along under one
private key of the hub body, which is always removed before the body leaves the gateway:
towards Anthropic structured output is refused, towards the others it is written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.providers.interface import Format
from flowloom.gateway.translate.errors import TranslationError

__all__ = ["EXTRA_KEY", "apply_extra", "json_format", "take_extra"]

EXTRA_KEY = "_flowloom_extra"
"""The hub-body key holding the extras (never sent to a provider)."""

_SAMPLING = ("frequency_penalty", "presence_penalty", "seed")
_GEMINI_SAMPLING: Mapping[str, str] = MappingProxyType(
    {
        "frequency_penalty": "frequencyPenalty",
        "presence_penalty": "presencePenalty",
        "seed": "seed",
    }
)


def json_format(
    kind: str, schema: Any = None, name: Any = None, strict: Any = None
) -> dict[str, Any]:
    """The neutral structured-output setting: {"type": "json_object"} or a named JSON schema."""
    if kind == "json_object" or schema is None:
        return {"type": "json_object"}
    out: dict[str, Any] = {"type": "json_schema", "name": name or "response", "schema": schema}
    if isinstance(strict, bool):
        out["strict"] = strict
    return out


def sampling_from(body: Mapping[str, Any], extra: dict[str, Any], names: Mapping[str, str]) -> None:
    """Copy sampling settings (source name → neutral name) into `extra`."""
    for source, neutral in names.items():
        value = body.get(source)
        if value is not None:
            extra[neutral] = value


def take_extra(hub: dict[str, Any], dst: Format) -> dict[str, Any] | None:
    """Remove the extras from a hub body; refuse structured output towards Anthropic."""
    extra = hub.pop(EXTRA_KEY, None)
    if not isinstance(extra, dict):
        return None
    if dst == "anthropic" and extra.get("format"):
        raise TranslationError(
            "structured output (response_format, text.format or responseSchema) cannot be "
            "sent to an Anthropic model; describe the format in the prompt or use a tool"
        )
    return extra


def apply_extra(dst: Format, out: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Write the extras into a translated request in format `dst`."""
    fmt = extra.get("format")
    if dst == "openai":
        if isinstance(fmt, Mapping):
            if fmt["type"] == "json_schema":
                schema = {k: v for k, v in fmt.items() if k != "type"}
                out["response_format"] = {"type": "json_schema", "json_schema": schema}
            else:
                out["response_format"] = {"type": "json_object"}
        for key in _SAMPLING:
            if key in extra:
                out[key] = extra[key]
    elif dst == "responses":
        if isinstance(fmt, Mapping):
            out["text"] = {"format": dict(fmt)}
    elif dst == "gemini":
        config = out.setdefault("generationConfig", {})
        if isinstance(fmt, Mapping):
            config["responseMimeType"] = "application/json"
            if fmt["type"] == "json_schema":
                config["responseJsonSchema"] = fmt["schema"]
        for key, name in _GEMINI_SAMPLING.items():
            if key in extra:
                config[name] = extra[key]
        if not config:
            del out["generationConfig"]
