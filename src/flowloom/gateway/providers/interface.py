"""The provider interface: what the gateway needs to know to send a call to one provider.

An adapter only builds the URL and the headers; the gateway owns the one pooled HTTP
client, the body bytes and the streaming, so adapters stay small and allocation-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Format", "Provider", "ProviderConfig", "ProviderKind", "UpstreamCall"]

Format = Literal["anthropic", "openai", "responses", "gemini"]
"""A wire format: Anthropic Messages, OpenAI Chat Completions, OpenAI Responses, Gemini."""

ProviderKind = Literal["anthropic", "openai", "azure", "gemini", "openai_compatible"]


@dataclass(frozen=True)
class ProviderConfig:
    """One upstream provider as configured.

    `base_url` is what the provider's own SDK takes as its base URL: for example
    https://api.anthropic.com, https://api.openai.com/v1, https://NAME.openai.azure.com,
    https://generativelanguage.googleapis.com, http://localhost:8000/v1 (vLLM). For the
    OpenAI kinds a base URL without a path gets "/v1" appended.
    """

    name: str
    kind: ProviderKind
    base_url: str
    api_key_ref: str | None = None
    region: str | None = None
    api_version: str | None = None
    deployments: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    first_byte_timeout_s: float = 60.0


@dataclass(frozen=True)
class UpstreamCall:
    """One request to send upstream, already in the provider's format.

    `path_hint` names the operation: "messages", "count_tokens", "chat", "responses",
    "embeddings", "generate", "stream_generate", "embed_content" or "batch_embed".
    """

    format: Format
    model: str
    stream: bool
    body: bytes
    path_hint: str
    passthrough_headers: Mapping[str, str]


class Provider(Protocol):
    """Builds the URL and headers of an upstream call for one configured provider."""

    name: str
    format: Format
    region: str | None
    config: ProviderConfig

    def url(self, call: UpstreamCall) -> str: ...

    def headers(self, call: UpstreamCall, api_key: str | None) -> dict[str, str]: ...

    def models_url(self, model: str | None) -> str | None:
        """The provider's own GET of its model list (`model` None) or of one model; None
        when it has none (the gateway answers from its configuration)."""
        ...
