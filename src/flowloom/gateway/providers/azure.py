"""Azure OpenAI deployments as an upstream."""

from __future__ import annotations

from urllib.parse import quote

from flowloom.gateway.providers.interface import Format, ProviderConfig, UpstreamCall

__all__ = ["AzureProvider"]

DEFAULT_API_VERSION = "2024-10-21"


class AzureProvider:
    """POST {base}/openai/deployments/{deployment}/chat/completions?api-version=... with api-key.

    The deployment is `deployments[model]` when configured, else the model name itself.
    """

    format: Format = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.region = config.region
        self._base = config.base_url.rstrip("/")
        self._version = config.api_version or DEFAULT_API_VERSION

    def url(self, call: UpstreamCall) -> str:
        deployment = quote(self.config.deployments.get(call.model, call.model), safe="")
        if call.format == "responses":
            return f"{self._base}/openai/responses?api-version={self._version}"
        operation = "embeddings" if call.path_hint == "embeddings" else "chat/completions"
        return (
            f"{self._base}/openai/deployments/{deployment}/{operation}?api-version={self._version}"
        )

    def models_url(self, model: str | None) -> str | None:
        return None  # deployments, not models: the gateway answers from its policy

    def headers(self, call: UpstreamCall, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["api-key"] = api_key
        return headers
