"""Key strings "<mark>_<prefix>_<secret>": generating them, parsing them, checking them.

One format serves every kind of key FlowLoom issues; the mark tells them apart (``flk``
for the directory's API keys, ``flv`` for the gateway's virtual keys). The full key is
shown once. The database keeps the 8-character prefix (to find the row and to tell keys
apart in listings) and the SHA-256 of the whole key; a candidate is checked with a
constant-time comparison of digests. The secret part has 256 bits of entropy, so a fast
hash is enough (no password-style stretching is needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

__all__ = ["GeneratedKey", "KeyFormat", "digests_match", "hash_key"]

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class GeneratedKey:
    """A new key: the secret to show once, and what the database keeps."""

    secret: str
    prefix: str
    digest: str


def hash_key(secret: str) -> str:
    """Hex SHA-256 of the whole key string."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def digests_match(digest: str, stored_digest: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(digest, stored_digest)


class KeyFormat:
    """The key strings of one mark: ``<mark>_<8 of a-z0-9>_<43 of base64url>``."""

    __slots__ = ("_re", "lead")

    def __init__(self, mark: str) -> None:
        self.lead = f"{mark}_"  # what every key of this format starts with ("flk_")
        self._re = re.compile(rf"^{re.escape(mark)}_([a-z0-9]{{8}})_([A-Za-z0-9_-]{{43}})$")

    def generate(self) -> GeneratedKey:
        """A fresh random key."""
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
        secret = f"{self.lead}{prefix}_{secrets.token_urlsafe(32)}"
        return GeneratedKey(secret=secret, prefix=prefix, digest=hash_key(secret))

    def parse(self, secret: str) -> str | None:
        """The prefix of a well-formed key (as given, not stripped), or None."""
        match = self._re.match(secret) if isinstance(secret, str) else None
        return match.group(1) if match else None
