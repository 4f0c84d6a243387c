"""Browser sessions: the cookie token, its stored hash, its CSRF token, its time limits.

The token is random and lives only in the cookie; the database keeps its SHA-256. The
CSRF token is derived from the session token with HMAC, so it needs no storage, cannot
be guessed without the cookie, and the server can hand it out again at any time.
A session ends after `idle_timeout` without use or `lifetime` after sign-in, whichever
comes first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["SessionPolicy", "csrf_for", "csrf_matches", "hash_token", "new_token"]

_CSRF_LABEL = b"flowloom-csrf-v1"


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions last."""

    idle_timeout: timedelta = timedelta(minutes=30)
    """Sign-out after this long without a request (21 CFR 11.300 style inactivity limit)."""
    lifetime: timedelta = timedelta(hours=12)
    """The absolute limit, however active the session."""
    touch_interval: timedelta = timedelta(seconds=30)
    """Record activity at most this often, so reads do not all become writes."""
    key_lifetime: timedelta = timedelta(days=90)
    """The longest an API key made in a session may live: a stolen session cookie must
    not turn into a credential that never expires."""

    def __post_init__(self) -> None:
        if self.idle_timeout <= timedelta(0) or self.lifetime <= timedelta(0):
            raise ValueError("session timeouts must be positive")
        if self.key_lifetime <= timedelta(0):
            raise ValueError("the key lifetime of a session must be positive")


def new_token() -> str:
    """A fresh session token for the cookie (256 random bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_for(token: str) -> str:
    """The CSRF token that goes with session `token`."""
    mac = hmac.new(token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def csrf_matches(token: str, csrf_token: str) -> bool:
    """Constant-time check of a submitted CSRF token."""
    return hmac.compare_digest(csrf_for(token).encode(), csrf_token.encode("utf-8", "replace"))
