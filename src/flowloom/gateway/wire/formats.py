"""The wire format of each `Format`, behind one small interface."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from flowloom.gateway.providers.interface import Format
from flowloom.gateway.wire.anthropic import AnthropicWire
from flowloom.gateway.wire.common import RequestInfo, Tokens
from flowloom.gateway.wire.gemini import GeminiWire
from flowloom.gateway.wire.openai_chat import OpenAIChatWire
from flowloom.gateway.wire.openai_responses import OpenAIResponsesWire
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["Wire", "wire_for"]


class Wire(Protocol):
    """What the gateway asks of a wire format."""

    name: str

    def peek(self, body: Mapping[str, Any], *, size: int, model: str | None = None) -> RequestInfo:
        """The routing-relevant fields of a request body (already parsed)."""
        ...

    def usage(self, response: Mapping[str, Any]) -> Tokens:
        """Token counts of a complete response object."""
        ...

    def reassemble(self, events: Iterable[SseEvent]) -> dict[str, Any]:
        """The response object a stream of events adds up to."""
        ...

    def error_body(self, status: int, message: str) -> bytes:
        """An error response body in this format."""
        ...

    def stream_error(self, status: int, message: str) -> bytes:
        """An error as one SSE event in this format, to end a broken stream cleanly."""
        ...

    def error_message(self, body: Mapping[str, Any]) -> str | None:
        """The human message inside an error body of this format."""
        ...

    def models(self, ids: Iterable[str]) -> bytes:
        """A model list response in this format."""
        ...

    def with_max_tokens(self, body: Mapping[str, Any], value: int) -> dict[str, Any]:
        """A copy of request `body` asking for at most `value` output tokens."""
        ...


_WIRES: Mapping[str, Wire] = MappingProxyType(
    {
        "anthropic": AnthropicWire(),
        "openai": OpenAIChatWire(),
        "responses": OpenAIResponsesWire(),
        "gemini": GeminiWire(),
    }
)


def wire_for(fmt: Format) -> Wire:
    return _WIRES[fmt]
