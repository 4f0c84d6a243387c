"""Virtual key strings: the "flv_<prefix>_<secret>" format, generating and checking keys.

The full key is shown once. The database keeps the 8-character prefix (to find the row,
and to tell keys apart in listings) and the SHA-256 of the whole key. The secret part
has 256 bits of entropy, so a fast hash is enough; a candidate is checked against the
stored digest with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

__all__ = ["VKEY_PREFIX", "GeneratedVirtualKey", "generate", "hash_secret", "matches", "parse"]

VKEY_PREFIX = "flv_"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"^flv_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class GeneratedVirtualKey:
    """A new key: the secret to show once, and what the database keeps."""

    secret: str
    prefix: str
    digest: str


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of the whole key string."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate() -> GeneratedVirtualKey:
    """A fresh random virtual key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    secret = f"{VKEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedVirtualKey(secret=secret, prefix=prefix, digest=hash_secret(secret))


def parse(secret: str) -> str | None:
    """The prefix of a well-formed virtual key, or None when `secret` is not one."""
    match = _KEY_RE.match(secret) if isinstance(secret, str) else None
    return match.group(1) if match else None


def matches(digest: str, stored_digest: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(digest, stored_digest)
