"""OpenAI (Chat Completions and Responses) and OpenAI-compatible servers as upstreams."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from flowloom.gateway.providers.interface import Format, ProviderConfig, UpstreamCall

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider"]


def api_root(base_url: str) -> str:
    """The base URL with "/v1" appended when it has no path (SDK-style base URLs keep theirs)."""
    base = base_url.rstrip("/")
    return base if urlsplit(base).path not in ("", "/") else base + "/v1"


class OpenAIProvider:
    """POST {base}/chat/completions or {base}/responses with a bearer key."""

    format: Format = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.region = config.region
        self._root = api_root(config.base_url)

    def url(self, call: UpstreamCall) -> str:
        if call.format == "responses":
            return f"{self._root}/responses"
        if call.path_hint == "embeddings":
            return f"{self._root}/embeddings"
        return f"{self._root}/chat/completions"

    def models_url(self, model: str | None) -> str | None:
        root = f"{self._root}/models"
        return root if model is None else f"{root}/{quote(model, safe='')}"

    def headers(self, call: UpstreamCall, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        beta = call.passthrough_headers.get("openai-beta")
        if beta:
            headers["openai-beta"] = beta
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers


class OpenAICompatibleProvider(OpenAIProvider):
    """vLLM, Ollama, llama.cpp server: the OpenAI wire format, a key only if configured."""
