"""The authority-bearing kinds a forgery test tries: every catalogued one, and members of
the open `auth.*`, `key.*` and `integration.*` families that readers act on."""

from __future__ import annotations

from flowloom.ledger.attest import AUTHORITY_KINDS

FORGED_KINDS = (
    *sorted(AUTHORITY_KINDS),
    "auth.role_granted",
    "auth.login",
    "auth.key_revoked",
    "auth.user_disabled",
    "key.generated",
    "key.rotated",
    "integration.github_review",
    "integration.github_merge",
)
