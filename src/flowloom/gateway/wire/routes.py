"""Which caller format and operation a request path names, for every provider's SDK paths.

One table for the gateway's surface: Anthropic (`/v1/messages…`, `/v1/models…`), OpenAI
(`/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/models…`, with or without
the `/v1`), Azure OpenAI (deployment paths and the v1 style `/openai/v1/…`), and Gemini
(`/v1beta/models/{model}:{method}` and the same under `/v1`, which the current google-genai
SDK uses). A path shared by several providers (`GET /v1/models`) is told apart by the
header its SDK sends: `anthropic-version`, `x-goog-api-key` (or `?key=`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

from flowloom.gateway.providers.interface import Format

__all__ = ["EMBEDDING_OPS", "ModelCall", "ModelsRead", "caller_format", "model_call", "models_read"]

EMBEDDING_OPS: Final = frozenset({"embeddings", "embed_content", "batch_embed"})
"""Operations that answer vectors: never streamed, never translated across formats."""


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A POST that calls a model: the caller's format, the operation, the URL's model."""

    format: Format
    op: str
    url_model: str | None = None


@dataclass(frozen=True, slots=True)
class ModelsRead:
    """A GET of the model list (`model` None) or of one model."""

    format: Format
    model: str | None


_POSTS: Mapping[str, ModelCall] = MappingProxyType(
    {
        "/v1/messages": ModelCall("anthropic", "messages"),
        "/v1/messages/count_tokens": ModelCall("anthropic", "count_tokens"),
        "/v1/chat/completions": ModelCall("openai", "chat"),
        "/chat/completions": ModelCall("openai", "chat"),
        "/openai/v1/chat/completions": ModelCall("openai", "chat"),
        "/v1/responses": ModelCall("responses", "responses"),
        "/responses": ModelCall("responses", "responses"),
        "/openai/responses": ModelCall("responses", "responses"),
        "/openai/v1/responses": ModelCall("responses", "responses"),
        "/v1/embeddings": ModelCall("openai", "embeddings"),
        "/embeddings": ModelCall("openai", "embeddings"),
        "/openai/v1/embeddings": ModelCall("openai", "embeddings"),
    }
)
_GEMINI_METHODS: Mapping[str, str] = MappingProxyType(
    {
        "generateContent": "generate",
        "streamGenerateContent": "stream_generate",
        "countTokens": "count_tokens",
        "embedContent": "embed_content",
        "batchEmbedContents": "batch_embed",
    }
)
_GEMINI_ROOTS: Final = ("/v1beta/models/", "/v1/models/")
_AZURE_DEPLOYMENT_OPS: Mapping[str, ModelCall] = MappingProxyType(
    {
        "chat/completions": ModelCall("openai", "chat"),
        "embeddings": ModelCall("openai", "embeddings"),
    }
)
_MODEL_LISTS: Final = ("/v1/models", "/models", "/openai/v1/models", "/openai/models")


def model_call(path: str) -> ModelCall | None:
    """The model call a POST to `path` makes, or None when the path is not one."""
    found = _POSTS.get(path)
    if found is not None:
        return found
    if path.startswith(_GEMINI_ROOTS):
        name, _, method = path.split("/models/", 1)[1].rpartition(":")
        op = _GEMINI_METHODS.get(method)
        if op is None or not name:
            return None
        return ModelCall("gemini", op, unquote(name).removeprefix("models/"))
    if path.startswith("/openai/deployments/"):
        deployment, _, tail = path[len("/openai/deployments/") :].partition("/")
        call = _AZURE_DEPLOYMENT_OPS.get(tail)
        if call is None or not deployment:
            return None
        return ModelCall(call.format, call.op, unquote(deployment))
    return None


def caller_format(path: str, headers: Mapping[str, str], query: str) -> Format:
    """The format of a caller on `path`, by its SDK's own header (for shared paths)."""
    if "anthropic-version" in headers or path.startswith("/v1/messages"):
        return "anthropic"
    if (
        path.startswith("/v1beta")
        or "x-goog-api-key" in headers
        or "key=" in query
        or (path.startswith("/v1/models/") and ":" in path)
    ):
        return "gemini"
    return "openai"


def models_read(path: str, headers: Mapping[str, str], query: str) -> ModelsRead | None:
    """The model list or model a GET of `path` asks for, or None."""
    fmt = caller_format(path, headers, query)
    if path in _MODEL_LISTS or path == "/v1beta/models":
        return ModelsRead(fmt, None)
    for root in (*_MODEL_LISTS, "/v1beta/models"):
        if path.startswith(root + "/"):
            model = unquote(path[len(root) + 1 :]).removeprefix("models/")
            if not model or "/" in model or ":" in model:
                return None
            return ModelsRead(fmt, model)
    return None
