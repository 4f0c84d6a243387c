"""What the simulator says: token estimates, the reply text, and tool-call arguments.

Everything is deterministic so tests can assert exact numbers: tokens ≈ characters / 4 over
every string in the prompt, the reply is a fixed sentence (or `x-mock-text`), and tool
arguments are generated from the tool's JSON schema (the first enum value, the schema's
default or example, or a plain value of the declared type).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_REPLY",
    "Reply",
    "ToolCall",
    "arguments_for",
    "chunk_words",
    "count_tokens",
    "plan_reply",
    "split_json",
    "string_chars",
    "wants_tool",
]

DEFAULT_REPLY = (
    "Hello from the FlowLoom mock provider. This reply is canned, deterministic and fast."
)
TOOL_PREAMBLE = "I'll use the tool."
_TOOL_TRIGGERS = ("use the tool", "use a tool", "call the tool", "use tool")
_FILLER = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
)


def string_chars(value: Any) -> int:
    """Characters in every string (keys excluded) inside a JSON value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(string_chars(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(string_chars(v) for v in value)
    return 0


def count_tokens(*parts: Any) -> int:
    """The simulator's tokenizer: ceil(characters / 4), at least 1."""
    chars = sum(string_chars(p) for p in parts)
    return max(1, (chars + 3) // 4)


def text_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _last_user_text(messages: Any, role_key: str = "role", user: str = "user") -> str:
    """The text of the last user message (string content or text parts)."""
    if not isinstance(messages, list):
        return messages if isinstance(messages, str) else ""
    for message in reversed(messages):
        if not isinstance(message, Mapping):
            continue
        if message.get(role_key, user) != user:
            continue
        content = message.get("content", message.get("parts"))
        if isinstance(content, str):
            return content
        texts: list[str] = []
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping):
                    value = part.get("text")
                    if isinstance(value, str):
                        texts.append(value)
                elif isinstance(part, str):
                    texts.append(part)
        return " ".join(texts)
    return ""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Reply:
    """The planned answer: text (maybe empty), an optional tool call, and why it stopped."""

    text: str
    tool: ToolCall | None
    truncated: bool  # hit max_tokens
    output_tokens: int


def wants_tool(
    tools: Sequence[tuple[str, Mapping[str, Any]]], messages: Any, header: str | None
) -> ToolCall | None:
    """A tool call when tools exist and the header names one or the user asks for a tool."""
    if not tools:
        return None
    if header:
        for name, schema in tools:
            if name == header.strip():
                return ToolCall(name, arguments_for(schema))
        name, schema = tools[0]
        return ToolCall(name, arguments_for(schema))
    text = _last_user_text(messages).lower()
    if not any(trigger in text for trigger in _TOOL_TRIGGERS):
        return None
    for name, schema in tools:  # prefer a tool the user names
        if name.lower() in text:
            return ToolCall(name, arguments_for(schema))
    name, schema = tools[0]
    return ToolCall(name, arguments_for(schema))


def plan_reply(
    *,
    tool: ToolCall | None,
    max_tokens: int | None,
    text_header: str | None,
    output_tokens_header: str | None,
) -> Reply:
    """The reply text (custom, padded to N tokens, or the default), cut at max_tokens."""
    if tool is not None:
        text = TOOL_PREAMBLE
    elif text_header is not None:
        text = text_header
    elif output_tokens_header and output_tokens_header.strip().isdigit():
        wanted = max(1, int(output_tokens_header))
        words: list[str] = []
        chars = 0
        i = 0
        while chars < wanted * 4 - 1:
            word = _FILLER[i % len(_FILLER)]
            words.append(word)
            chars += len(word) + (1 if len(words) > 1 else 0)
            i += 1
        text = " ".join(words)[: wanted * 4]
    else:
        text = DEFAULT_REPLY
    truncated = False
    if max_tokens is not None and max_tokens > 0 and text_tokens(text) > max_tokens:
        text = text[: max_tokens * 4]
        truncated = True
        tool = None
    out = text_tokens(text) + (text_tokens(tool.arguments_json) + 4 if tool else 0)
    return Reply(text=text, tool=tool, truncated=truncated, output_tokens=max(1, out))


def chunk_words(text: str) -> list[str]:
    """Stream deltas: one word each (leading space kept), like a real tokenizer's pieces."""
    if not text:
        return []
    pieces: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = text.find(" ", start + 1)
        if end == -1:
            end = n
        pieces.append(text[start:end])
        start = end
    return pieces


def split_json(text: str, size: int = 12) -> list[str]:
    """Argument deltas: the JSON text in pieces that are not valid on their own."""
    if not text:
        return [""]
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---- tool arguments from a JSON schema ----


def arguments_for(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Arguments valid for the tool's (object) schema."""
    value = _generate(schema or {}, schema or {}, 0)
    return value if isinstance(value, dict) else {}


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for key in ref[2:].split("/"):
            node = node.get(key, {}) if isinstance(node, Mapping) else {}
        if isinstance(node, Mapping):
            return node
    return schema


def _generate(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    schema = _resolve(schema, root)
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    if isinstance(option, Mapping):
                        merged.update(_resolve(option, root))
                return _generate(merged, root, depth + 1)
            for option in options:  # prefer a non-null branch
                if isinstance(option, Mapping) and option.get("type") != "null":
                    return _generate(option, root, depth + 1)
            return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    kind = str(kind).lower()  # Gemini writes OBJECT, STRING, ...
    if kind == "object":
        props = schema.get("properties")
        result: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for name, sub in props.items():
                if isinstance(sub, Mapping):
                    result[str(name)] = _generate(sub, root, depth + 1)
        return result
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems", 1) or 1))
        if isinstance(items, Mapping):
            return [_generate(items, root, depth + 1) for _ in range(count)]
        return []
    if kind == "integer":
        return int(_number(schema, 1))
    if kind == "number":
        return float(_number(schema, 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _number(schema: Mapping[str, Any], fallback: float) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = fallback
    if isinstance(low, int | float):
        value = max(value, low + (1 if "exclusiveMinimum" in schema else 0))
    if isinstance(high, int | float):
        value = min(value, high - (1 if "exclusiveMaximum" in schema else 0))
    return value


def _string(schema: Mapping[str, Any]) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "email":
        return "mock@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/"
    if fmt == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    text = "mock"
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and min_len > len(text):
        text = text + "x" * (min_len - len(text))
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and max_len < len(text):
        text = text[:max_len]
    return text
