"""Provider adapters: where and how to send one upstream call, one small class per provider kind."""

from __future__ import annotations

from flowloom.gateway.providers.interface import (
    Format,
    Provider,
    ProviderConfig,
    ProviderKind,
    UpstreamCall,
)

__all__ = ["Format", "Provider", "ProviderConfig", "ProviderKind", "UpstreamCall", "make_provider"]


def make_provider(config: ProviderConfig) -> Provider:
    """The adapter for `config.kind`."""
    from flowloom.gateway.providers.registry import make_provider as make

    return make(config)
