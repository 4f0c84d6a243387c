"""Anthropic's Messages API as an upstream."""

from __future__ import annotations

from urllib.parse import quote

from flowloom.gateway.providers.interface import Format, ProviderConfig, UpstreamCall

__all__ = ["AnthropicProvider"]

DEFAULT_VERSION = "2023-06-01"


class AnthropicProvider:
    """POST {base}/v1/messages with x-api-key; anthropic-version/-beta passed through."""

    format: Format = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.region = config.region
        self._base = config.base_url.rstrip("/")

    def url(self, call: UpstreamCall) -> str:
        if call.path_hint == "count_tokens":
            return f"{self._base}/v1/messages/count_tokens"
        return f"{self._base}/v1/messages"

    def models_url(self, model: str | None) -> str | None:
        root = f"{self._base}/v1/models"
        return root if model is None else f"{root}/{quote(model, safe='')}"

    def headers(self, call: UpstreamCall, api_key: str | None) -> dict[str, str]:
        passed = call.passthrough_headers
        headers = {
            "content-type": "application/json",
            "anthropic-version": passed.get("anthropic-version")
            or self.config.api_version
            or DEFAULT_VERSION,
        }
        beta = passed.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        if api_key:
            headers["x-api-key"] = api_key
        return headers
