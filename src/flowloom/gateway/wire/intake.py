"""Taking in a caller's request body: nesting, JSON and the JSON types of known fields.

Everything after intake — routing, translation, the recorder, the upstream — walks the
parsed body, so a body that could make any of them fail is refused here with an
`MalformedRequestError` (400, answered in the caller's format):

- nesting deeper than `MAX_DEPTH`, found on the bytes *before* `json.loads` could recurse
  (a body 100,000 arrays deep must not reach the parser);
- bytes that are not UTF-8, text that is not JSON, NaN / Infinity or a number too large
  for a double, an unpaired UTF-16 surrogate escape (none of which re-encodes), and a top
  level that is not an object;
- a known field holding the wrong JSON type, down to the parts of each message (the
  types each provider documents; see `SHAPES`). Unknown fields pass untouched, and so do
  known ones set to null (taken as absent); deeper nonsense is left to the provider.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from flowloom.errors import InputError

__all__ = [
    "MAX_DEPTH",
    "MAX_MODEL_CHARS",
    "SHAPES",
    "MalformedRequestError",
    "check_fields",
    "check_model_name",
    "parse_json",
    "parse_request",
    "too_deep",
]

MAX_DEPTH: Final = 128
"""Deepest nesting of arrays and objects accepted (tool schemas use a dozen or so)."""
MAX_MODEL_CHARS: Final = 256


class MalformedRequestError(InputError):
    """The request body cannot be taken in: the message names what is wrong, and where."""

    status = 400


# -- nesting, before parsing ---------------------------------------------------------------

_DROP = bytes(b for b in range(256) if b not in b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")


def _structure(body: bytes) -> bytes:
    """The brackets of `body` outside strings, as "(" and ")", in C-speed passes only.

    Escaped backslashes, then escaped quotes go (JSON reads escapes left to right, as
    `replace` does); then only quotes and brackets stay; adjacent quotes go (nothing lies
    between them, so no other byte changes sides); what is left between quotes goes.
    """
    if b"\\\\" in body:
        body = body.replace(b"\\\\", b"")
    if b'\\"' in body:
        body = body.replace(b'\\"', b"")
    bare = body.translate(None, _DROP).replace(b'""', b"")
    if b'"' in bare:
        bare = b"".join(bare.split(b'"')[::2])
    return bare.translate(_AS_PARENS)


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in `body` nest deeper than `limit` (strings not counted).

    With no more than `limit` opening brackets it cannot be; else innermost pairs of the
    bracket structure are removed level by level: a run of `limit + 1` openers, or
    anything left after `limit` levels, is too deep.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    shape = _structure(body)
    run = b"(" * (limit + 1)
    for _ in range(limit):
        if run in shape:
            return True
        inner = shape.replace(b"()", b"")
        if len(inner) == len(shape):
            return False  # no pair left: empty, or unbalanced (the parser says so)
        shape = inner
    return b"(" in shape and b")" in shape


# -- parsing -------------------------------------------------------------------------------

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON from UTF-8 bytes, nesting checked first; MalformedRequestError if not.

    Also what the recorder uses on bodies it stores, so that a body refused here cannot
    break the recorder either.
    """
    if too_deep(body, max_depth):
        raise MalformedRequestError(
            f"the request body nests arrays or objects more than {max_depth} deep"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(
            f"the request body is not UTF-8 (byte 0x{body[exc.start]:02x} at {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequestError(f"the request body is not valid JSON: {exc}") from None


def parse_request(body: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object, or MalformedRequestError saying why not."""
    if not body.strip():
        raise MalformedRequestError("the request body is empty; send a JSON object")
    parsed = parse_json(body, max_depth=max_depth)
    if not isinstance(parsed, dict):
        raise MalformedRequestError(
            f"the request body must be a JSON object, not {_kind_of(parsed)}"
        )
    if _SURROGATE_ESCAPE.search(body):  # rare: re-encode to find an unpaired one
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedRequestError(
                "the request body has an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
            ) from None
    return parsed


# -- field types ---------------------------------------------------------------------------

_NAMES = {
    "s": "a string",
    "i": "an integer",
    "n": "a number",
    "b": "true or false",
    "o": "an object",
    "a": "an array",
}


@dataclass(frozen=True, slots=True)
class Spec:
    """The JSON types a value may have (letters of `_NAMES`), and for an array what each
    item must be, for an object what its known fields must be."""

    kinds: str
    items: Spec | None = None
    fields: Mapping[str, Spec] | None = None


_LETTERS: Mapping[type, str] = MappingProxyType(
    {str: "s", int: "i", float: "n", bool: "b", dict: "o", list: "a"}
)


def _kind_of(value: Any) -> str:
    letter = _LETTERS.get(type(value))
    return "null" if letter is None else _NAMES[letter]


def _check(value: Any, spec: Spec, path: str) -> None:
    letter = _LETTERS.get(type(value))
    kinds = spec.kinds
    if letter is None or (letter not in kinds and not (letter == "i" and "n" in kinds)):
        wanted = " or ".join(_NAMES[k] for k in kinds)
        raise MalformedRequestError(f"{path} must be {wanted}, not {_kind_of(value)}")
    if letter == "a" and spec.items is not None:
        items = spec.items
        for index, item in enumerate(value):
            _check(item, items, f"{path}[{index}]")
    elif letter == "o" and spec.fields is not None:
        _check_object(value, spec.fields, path + ".")


def _check_object(value: Mapping[str, Any], fields: Mapping[str, Spec], prefix: str) -> None:
    for name, spec in fields.items():
        found = value.get(name)
        if found is not None:
            _check(found, spec, prefix + name)


_STR, _INT, _NUM, _BOOL, _OBJ = Spec("s"), Spec("i"), Spec("n"), Spec("b"), Spec("o")
_OBJECTS = Spec("a", items=_OBJ)
_STRINGS = Spec("a", items=_STR)
_PART = Spec("o", fields={"type": _STR})
_CONTENT = Spec("sa", items=_PART)
_CHAT_MESSAGE = Spec(
    "o",
    fields={
        "role": _STR,
        "content": _CONTENT,
        "name": _STR,
        "tool_calls": _OBJECTS,
        "tool_call_id": _STR,
        "refusal": _STR,
    },
)
_ANTHROPIC = MappingProxyType(
    {
        "model": _STR,
        "messages": Spec("a", items=Spec("o", fields={"role": _STR, "content": _CONTENT})),
        "max_tokens": _INT,
        "system": Spec("sa", items=_PART),
        "stop_sequences": _STRINGS,
        "stream": _BOOL,
        "temperature": _NUM,
        "top_p": _NUM,
        "top_k": _INT,
        "tools": _OBJECTS,
        "tool_choice": _OBJ,
        "metadata": _OBJ,
        "thinking": _OBJ,
        "service_tier": _STR,
        "mcp_servers": _OBJECTS,
    }
)
_OPENAI = MappingProxyType(
    {
        "model": _STR,
        "messages": Spec("a", items=_CHAT_MESSAGE),
        "max_tokens": _INT,
        "max_completion_tokens": _INT,
        "stream": _BOOL,
        "stream_options": _OBJ,
        "temperature": _NUM,
        "top_p": _NUM,
        "n": _INT,
        "stop": Spec("sa", items=_STR),
        "tools": _OBJECTS,
        "functions": _OBJECTS,
        "function_call": Spec("so"),
        "tool_choice": Spec("so"),
        "parallel_tool_calls": _BOOL,
        "response_format": _OBJ,
        "seed": _INT,
        "user": _STR,
        "safety_identifier": _STR,
        "prompt_cache_key": _STR,
        "logprobs": _BOOL,
        "top_logprobs": _INT,
        "presence_penalty": _NUM,
        "frequency_penalty": _NUM,
        "logit_bias": _OBJ,
        "metadata": _OBJ,
        "modalities": _STRINGS,
        "audio": _OBJ,
        "prediction": _OBJ,
        "web_search_options": _OBJ,
        "reasoning_effort": _STR,
        "verbosity": _STR,
        "service_tier": _STR,
        "store": _BOOL,
    }
)
_RESPONSES_ITEM = Spec("o", fields={"type": _STR, "role": _STR, "content": _CONTENT})
_RESPONSES = MappingProxyType(
    {
        "model": _STR,
        "input": Spec("sa", items=_RESPONSES_ITEM),
        "instructions": _STR,
        "max_output_tokens": _INT,
        "max_tool_calls": _INT,
        "stream": _BOOL,
        "stream_options": _OBJ,
        "temperature": _NUM,
        "top_p": _NUM,
        "top_logprobs": _INT,
        "tools": _OBJECTS,
        "tool_choice": Spec("so"),
        "parallel_tool_calls": _BOOL,
        "previous_response_id": _STR,
        "conversation": Spec("so"),
        "prompt": _OBJ,
        "reasoning": _OBJ,
        "text": _OBJ,
        "metadata": _OBJ,
        "store": _BOOL,
        "background": _BOOL,
        "user": _STR,
        "safety_identifier": _STR,
        "prompt_cache_key": _STR,
        "include": _STRINGS,
        "truncation": _STR,
        "service_tier": _STR,
    }
)
_GEMINI_CONTENT = Spec("o", fields={"role": _STR, "parts": _OBJECTS})
_GENERATION_CONFIG = Spec(
    "o",
    fields={
        **{
            name: spec
            for camel, snake, spec in (
                ("maxOutputTokens", "max_output_tokens", _INT),
                ("candidateCount", "candidate_count", _INT),
                ("temperature", "temperature", _NUM),
                ("topP", "top_p", _NUM),
                ("topK", "top_k", _NUM),
                ("stopSequences", "stop_sequences", _STRINGS),
                ("responseMimeType", "response_mime_type", _STR),
                ("thinkingConfig", "thinking_config", _OBJ),
            )
            for name in (camel, snake)
        }
    },
)
_GEMINI = MappingProxyType(
    {
        name: spec
        for camel, snake, spec in (
            ("contents", "contents", Spec("a", items=_GEMINI_CONTENT)),
            ("systemInstruction", "system_instruction", _GEMINI_CONTENT),
            ("tools", "tools", _OBJECTS),
            ("toolConfig", "tool_config", _OBJ),
            ("generationConfig", "generation_config", _GENERATION_CONFIG),
            ("safetySettings", "safety_settings", _OBJECTS),
            ("cachedContent", "cached_content", _STR),
            ("labels", "labels", _OBJ),
        )
        for name in (camel, snake)
    }
)
_OPENAI_EMBEDDINGS = MappingProxyType(
    {
        "model": _STR,
        "input": Spec("sa"),
        "encoding_format": _STR,
        "dimensions": _INT,
        "user": _STR,
    }
)
_GEMINI_EMBED_FIELDS = {
    "model": _STR,
    "content": _GEMINI_CONTENT,
    "taskType": _STR,
    "task_type": _STR,
    "title": _STR,
    "outputDimensionality": _INT,
    "output_dimensionality": _INT,
}
_GEMINI_EMBED = MappingProxyType(_GEMINI_EMBED_FIELDS)
_GEMINI_BATCH_EMBED = MappingProxyType(
    {"requests": Spec("a", items=Spec("o", fields=_GEMINI_EMBED_FIELDS))}
)
_GEMINI_COUNT = MappingProxyType(
    {
        "contents": Spec("a", items=_GEMINI_CONTENT),
        "generateContentRequest": Spec("o", fields=_GEMINI),
        "generate_content_request": Spec("o", fields=_GEMINI),
    }
)
SHAPES: Mapping[str, Mapping[str, Spec]] = MappingProxyType(
    {
        "anthropic": _ANTHROPIC,
        "openai": _OPENAI,
        "responses": _RESPONSES,
        "gemini": _GEMINI,
        "openai:embeddings": _OPENAI_EMBEDDINGS,
        "gemini:embed_content": _GEMINI_EMBED,
        "gemini:batch_embed": _GEMINI_BATCH_EMBED,
        "gemini:count_tokens": _GEMINI_COUNT,
    }
)
"""The known top-level fields of each caller format (Azure speaks "openai"), and of the
operations whose bodies differ from the format's model call ("format:operation")."""


def check_fields(fmt: str, body: Mapping[str, Any], op: str | None = None) -> None:
    """MalformedRequestError when a known field of `body` (format `fmt`, operation `op`)
    has the wrong JSON type, naming the field's path, e.g. "messages[2].content must be
    ..."."""
    _check_object(body, SHAPES.get(f"{fmt}:{op}") or SHAPES[fmt], "")
    model = body.get("model")
    if isinstance(model, str):
        check_model_name(model)


def check_model_name(name: str) -> None:
    """A model name is short: a huge one is a malformed request, not an unknown model."""
    if len(name) > MAX_MODEL_CHARS:
        raise MalformedRequestError(
            f"the model name is {len(name)} characters long; at most {MAX_MODEL_CHARS}"
        )
