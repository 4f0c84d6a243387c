"""Webhook signing secrets at rest: sealed exactly as the gateway seals provider keys.

AES-256-GCM under the installation's master key (or a fresh data key wrapped by its key
provider), with the subscription id as associated data under a prefix of its own, so
a sealed secret moved onto another subscription, or taken for a provider key, does
not open. The plain secret is shown once, when it is made, and read back only to sign.
"""

from __future__ import annotations

from flowloom.gateway.access.vault import ProviderKeyVault

__all__ = ["SecretVault"]


class SecretVault(ProviderKeyVault):
    """ProviderKeyVault with webhook-secret associated data."""

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"flowloom-webhook-secret:" + name.encode("utf-8")
