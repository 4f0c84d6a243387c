"""API keys: the "flk_<prefix>_<secret>" format, generating keys and checking them.

The full key is shown once. The database keeps the 8-character prefix (to find the row
and to tell keys apart in listings) and the SHA-256 of the whole key; a key is checked
with a constant-time comparison of digests. The secret part has 256 bits of entropy,
so a fast hash is enough (no password-style stretching is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

__all__ = ["KEY_PREFIX", "GeneratedKey", "generate_key", "hash_key", "key_matches", "parse_key"]

KEY_PREFIX = "flk_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"^flk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class GeneratedKey:
    """A new key: the secret to show once, and what the database keeps."""

    secret: str
    prefix: str
    digest: str


def hash_key(secret: str) -> str:
    """Hex SHA-256 of the whole key string."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_key() -> GeneratedKey:
    """A fresh random key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(secret=secret, prefix=prefix, digest=hash_key(secret))


def parse_key(secret: str) -> str | None:
    """The prefix of a well-formed key, or None when `secret` is not one of ours."""
    match = _KEY_RE.match(secret.strip()) if isinstance(secret, str) else None
    return match.group(1) if match else None


def key_matches(secret: str, stored_digest: str) -> bool:
    """Constant-time check of `secret` against a stored digest."""
    return hmac.compare_digest(hash_key(secret.strip()), stored_digest)
