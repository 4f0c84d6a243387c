"""Inbound webhook authentication, per each code host's documented scheme.

GitHub signs the raw request body with HMAC-SHA256 under the webhook secret and sends
``X-Hub-Signature-256: sha256=<hex>``. GitLab sends the secret itself in
``X-Gitlab-Token``. Both are compared in constant time so the comparison leaks nothing
about the secret; the body must be verified as received, before any parsing.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["github_signature", "verify_github", "verify_gitlab"]

_PREFIX = "sha256="


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for `body` under `secret`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_github(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is GitHub's signature of `body` under `secret`."""
    if not secret or not header or not header.startswith(_PREFIX):
        return False
    expected = github_signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_gitlab(secret: str, header: str | None) -> bool:
    """True when GitLab's ``X-Gitlab-Token`` is the configured secret."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret.encode("utf-8"), header.encode("utf-8", "replace"))
