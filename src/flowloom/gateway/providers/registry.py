"""The adapter class for each provider kind."""

from __future__ import annotations

from flowloom.errors import ConfigError
from flowloom.gateway.providers.interface import Provider, ProviderConfig

__all__ = ["make_provider"]


def make_provider(config: ProviderConfig) -> Provider:
    """The adapter for `config.kind`; ConfigError for an unknown kind."""
    if config.kind == "anthropic":
        from flowloom.gateway.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config)
    if config.kind == "openai":
        from flowloom.gateway.providers.openai import OpenAIProvider

        return OpenAIProvider(config)
    if config.kind == "openai_compatible":
        from flowloom.gateway.providers.openai import OpenAICompatibleProvider

        return OpenAICompatibleProvider(config)
    if config.kind == "azure":
        from flowloom.gateway.providers.azure import AzureProvider

        return AzureProvider(config)
    if config.kind == "gemini":
        from flowloom.gateway.providers.gemini import GeminiProvider

        return GeminiProvider(config)
    raise ConfigError(
        f"provider {config.name!r} has unknown kind {config.kind!r}",
        hint="use anthropic, openai, azure, gemini or openai_compatible",
    )
