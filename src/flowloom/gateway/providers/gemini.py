"""Google Gemini (generateContent) as an upstream."""

from __future__ import annotations

from urllib.parse import quote

from flowloom.gateway.providers.interface import Format, ProviderConfig, UpstreamCall

__all__ = ["GeminiProvider"]

_METHODS = {
    "count_tokens": "countTokens",
    "embed_content": "embedContent",
    "batch_embed": "batchEmbedContents",
}


class GeminiProvider:
    """POST {base}/{version}/models/{model}:generateContent (or :streamGenerateContent?alt=sse)."""

    format: Format = "gemini"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.region = config.region
        self._base = config.base_url.rstrip("/")
        self._version = config.api_version or "v1beta"

    def url(self, call: UpstreamCall) -> str:
        model = quote(call.model.removeprefix("models/"), safe="")
        root = f"{self._base}/{self._version}/models/{model}"
        method = _METHODS.get(call.path_hint)
        if method is not None:
            return f"{root}:{method}"
        if call.stream:
            return f"{root}:streamGenerateContent?alt=sse"
        return f"{root}:generateContent"

    def models_url(self, model: str | None) -> str | None:
        root = f"{self._base}/{self._version}/models"
        if model is None:
            return root
        return f"{root}/{quote(model.removeprefix('models/'), safe='')}"

    def headers(self, call: UpstreamCall, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers
