"""API keys: the "flk_<prefix>_<secret>" format, generating keys and checking them.

The format, hashing and the constant-time check are `flowloom.auth.keystrings`'s,
shared with the gateway's virtual keys; these are its ``flk`` names.
"""

from __future__ import annotations

from flowloom.auth.keystrings import GeneratedKey, KeyFormat, digests_match, hash_key

__all__ = ["KEY_PREFIX", "GeneratedKey", "generate_key", "hash_key", "key_matches", "parse_key"]

_FORMAT = KeyFormat("flk")
KEY_PREFIX = _FORMAT.lead


def generate_key() -> GeneratedKey:
    """A fresh random key."""
    return _FORMAT.generate()


def parse_key(secret: str) -> str | None:
    """The prefix of a well-formed key, or None when `secret` is not one of ours."""
    return _FORMAT.parse(secret.strip()) if isinstance(secret, str) else None


def key_matches(secret: str, stored_digest: str) -> bool:
    """Constant-time check of `secret` against a stored digest."""
    return digests_match(hash_key(secret.strip()), stored_digest)
