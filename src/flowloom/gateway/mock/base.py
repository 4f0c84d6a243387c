"""The shapes shared by every simulated provider: a parsed call and a planned answer.

Each provider module turns request JSON into a `Call`, and a `Reply` into either one
JSON body or a list of pre-encoded SSE events; the app applies faults around them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowloom.gateway.mock.content import Reply

__all__ = ["Call", "Ids", "ProviderWire", "dumps", "json_str"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_encode_str: Any = (
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)


def dumps(value: Any) -> str:
    """Compact JSON, as the providers send it."""
    return _ENCODER.encode(value)


def json_str(text: str) -> str:
    """A JSON string literal (C-accelerated): stream deltas are templates around it."""
    result: str = _encode_str(text)
    return result


@dataclass
class Call:
    """The few fields of a request the simulator needs."""

    model: str
    stream: bool
    input_tokens: int
    max_tokens: int | None
    tools: list[tuple[str, Mapping[str, Any]]]
    messages: Any  # the conversation, for the "use the tool" trigger
    body: Mapping[str, Any]
    include_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ids:
    """Identifiers and clock for one response (counter-based: cheap and unique per process)."""

    seq: int
    created: int

    def make(self, prefix: str, width: int = 24) -> str:
        return f"{prefix}{self.seq:0{width}x}"


class ProviderWire(Protocol):
    """One provider's wire format."""

    name: str
    content_type_stream: bytes
    default_context_window: int

    def parse(self, body: Mapping[str, Any], model_hint: str | None) -> Call: ...

    def complete(self, call: Call, reply: Reply, ids: Ids) -> bytes: ...

    def stream(self, call: Call, reply: Reply, ids: Ids) -> list[bytes]: ...

    def error(self, status: int, message: str | None = None) -> bytes: ...

    def context_error(self, call: Call, limit: int) -> tuple[int, bytes]: ...
