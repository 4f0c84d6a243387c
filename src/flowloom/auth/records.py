"""The directory's records: users, projects, teams, API keys, sessions, as read back.

Plain frozen dataclasses, no behaviour beyond small questions about themselves; the
Directory creates them from database rows. None of them carries a secret or a hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "ApiKey",
    "Grant",
    "Member",
    "OidcState",
    "Project",
    "SamlPending",
    "SamlSessionRef",
    "Session",
    "Team",
    "User",
    "UserKind",
]

UserKind = Literal["user", "service"]


@dataclass(frozen=True)
class User:
    """A person or a service account (kind "service") known to this server."""

    id: str
    email: str | None
    name: str
    kind: UserKind
    disabled: bool
    created_at: datetime
    has_password: bool = False
    oidc_issuer: str | None = None
    oidc_subject: str | None = None
    deleted_at: datetime | None = None
    """When the account was deleted: its personal data is gone, its id stays, so the
    ledger's past events still resolve to "a deleted user"."""


@dataclass(frozen=True)
class Project:
    """A project: one ledger log of the same name, isolated from the others."""

    name: str
    created_at: datetime


@dataclass(frozen=True)
class Team:
    """A named group of users; roles granted to it apply to every member."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Member:
    """A user's roles on one project: granted directly and through teams."""

    user: User
    roles: frozenset[str]
    direct_roles: frozenset[str]


@dataclass(frozen=True)
class Grant:
    """One role a user holds on a project ("*": every project), and where it comes from."""

    project: str
    role: str
    team: str | None = None
    """The team whose grant it is; None for a grant to the user directly."""


@dataclass(frozen=True)
class ApiKey:
    """An API key's public facts; the secret is shown once and never stored."""

    id: str
    user_id: str
    name: str
    prefix: str
    """The visible part of the key ("flk_<prefix>_..."), for telling keys apart."""
    scopes: frozenset[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None = None
    """The key this one replaced, if it came from a rotation."""

    def active(self, now: datetime) -> bool:
        """Whether the key would authenticate at `now` (its user aside)."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Session:
    """A browser session; the token lives only in the cookie, stored here as a hash."""

    id: str
    user_id: str
    via: str
    """How the user signed in: "password" or "oidc"."""
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    """The absolute end of the session, whatever the activity."""
    auth_time: datetime
    """When the user last proved who they are (the sign-in itself)."""
    reauthenticated_at: datetime | None
    """When the user last re-entered credentials within this session (e.g. to sign)."""
    signed_before: bool
    """Whether an electronic signature was already applied in this session."""
    ended_at: datetime | None = None


@dataclass(frozen=True)
class OidcState:
    """What the OIDC login remembered between the redirect and the callback."""

    state: str
    verifier: str
    nonce: str
    redirect: str
    created_at: datetime


@dataclass(frozen=True)
class SamlPending:
    """A SAML request in flight: its id (the answer's InResponseTo), why, and where to."""

    request_id: str
    kind: Literal["login", "reauth", "logout"]
    redirect: str
    created_at: datetime


@dataclass(frozen=True)
class SamlSessionRef:
    """The IdP session behind a FlowLoom session, named as the IdP names it (for logout)."""

    session_id: str
    idp: str
    name_id: str
    name_id_format: str | None
    name_qualifier: str | None
    sp_name_qualifier: str | None
    session_index: str | None
