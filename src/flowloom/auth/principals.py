"""Principal: who is acting, as established from an API key or a session.

A Principal is a snapshot taken when a request is authenticated: the user, the roles
granted to it (directly and through teams) per project, and the scopes of the key used.
The Authorizer decides from it; the ledger records `actor()` from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Principal", "PrincipalKind", "PrincipalVia"]

PrincipalKind = Literal["user", "service"]
PrincipalVia = Literal["key", "session", "cli", "scim"]
"""How the principal was established; "cli": named with `flowloom admin ... --as`;
"scim": an identity provider provisioning with a SCIM token (no roles of its own)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated user or service account, with its grants at that moment."""

    user_id: str
    email: str | None
    name: str
    """The printed name (21 CFR Part 11 signatures show it)."""
    kind: PrincipalKind
    grants: Mapping[str, frozenset[str]]
    """Project name, or "*" for every project → role names."""
    scopes: frozenset[str] | None
    """The API key's scopes; None means no restriction beyond the roles."""
    via: PrincipalVia
    key_id: str | None = None
    session_id: str | None = None

    def actor(self) -> dict[str, Any]:
        """The ledger's actor object for events this principal causes."""
        return {
            "type": "service" if self.kind == "service" else "human",
            "id": self.user_id,
            "name": self.name,
        }

    def roles_on(self, project: str) -> frozenset[str]:
        """Roles held on `project`, counting "*" grants."""
        return self.grants.get(project, frozenset()) | self.grants.get("*", frozenset())
