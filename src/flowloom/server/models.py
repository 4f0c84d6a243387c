"""The API's request and response bodies, as pydantic models (they make the OpenAPI doc)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_INDEX",
    "ActorIn",
    "ApiKeyOut",
    "AppendAck",
    "AuditEntryOut",
    "AuditOut",
    "BatchAck",
    "BatchIn",
    "EntriesOut",
    "EntryOut",
    "EventIn",
    "GitIn",
    "GrantOut",
    "KeyCreateIn",
    "KeyRotateIn",
    "KeySecretOut",
    "LoginIn",
    "LoginOut",
    "MeOut",
    "MemberOut",
    "ProjectIn",
    "ProjectOut",
    "TeamIn",
    "TeamOut",
    "UserIn",
    "UserOut",
]

MAX_BATCH_EVENTS = 1000
MAX_INDEX = 2**62
"""Largest index or size a request may name (the stores use signed 64-bit integers)."""
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActorIn(_Strict):
    type: Literal["human", "agent", "service"]
    id: str = Field(min_length=1, max_length=500)
    name: str | None = Field(default=None, min_length=1, max_length=500)


class GitIn(_Strict):
    branch: str | None = Field(default=None, min_length=1, max_length=1000)
    head: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


class EventIn(_Strict):
    """One event to append. The server sets project and actor (see docs/api.md)."""

    kind: str = Field(min_length=1, max_length=200, examples=["agent.prompt"])
    ts: str | None = Field(
        default=None,
        description="Client time, RFC 3339 UTC with six fractional digits and Z; "
        "default: the server's time.",
        examples=["2026-11-22T02:40:00.123456Z"],
    )
    session: str | None = Field(default=None, min_length=1, max_length=1000)
    git: GitIn | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=4000)
    refs: dict[str, Any] | None = None
    actor: ActorIn | None = Field(
        default=None, description="Only service accounts may record for another actor."
    )
    body: str | None = Field(default=None, description="UTF-8 text body (redacted, then sealed).")
    body_b64: str | None = Field(default=None, description="Binary body, standard base64.")
    data_subject: str | None = Field(default=None, min_length=1, max_length=500)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Client idempotency key: a repeat returns the first index.",
    )
    ci_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=16 * 1024,
        description="For test.result and ci.result: the CI job's OIDC identity token. The "
        "server verifies it against its trusted issuers (ci_issuers) and records the "
        "run's identity from the verified claims (the token itself is not stored).",
    )
    signed_envelope: str | None = Field(
        default=None,
        min_length=2,
        max_length=64 * 1024,
        description="A person-signed event (decision.approve with refs.ssh_signature), "
        "stored as it was signed once the server verified the signature against the "
        "project's allowed signers and that the signer is the key's user; give only "
        "kind, event_id and this.",
    )


class BatchIn(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class AppendAck(BaseModel):
    index: int
    leaf_hash: str
    duplicate: bool = Field(
        default=False, description="True when event_id was seen before: nothing was appended."
    )


class BatchAck(BaseModel):
    indices: list[int]
    leaf_hashes: list[str]
    duplicates: list[bool]


class EntryOut(BaseModel):
    index: int
    kind: str
    envelope: dict[str, Any]
    leaf_hash: str


class EntryBodyOut(EntryOut):
    """An entry with its body, as `GET /entries?bodies=true` answers it: a reader of the
    whole log (a client's mirror) gets a page in one request instead of one per body."""

    body: str | None = Field(
        description="The plaintext body, base64; null when the entry has none or its body "
        "was erased or is not stored here (as GET /entries/{index}/body answers 404)."
    )
    salt: str | None = Field(
        description="The body's commitment salt, base64, so the reader can check "
        "sha256(salt || body) against the envelope's digest; null with the body."
    )


class EntriesOut(BaseModel):
    entries: list[EntryBodyOut | EntryOut]
    size: int
    next: int | None = Field(description="The start of the next page, or null at the end.")


class AuditEntryOut(EntryOut):
    verified: bool = Field(
        description="Written by this server's endpoint (its attestation verifies); only "
        "verified events are facts of the audit trail"
    )
    origin: str = Field(
        description="server (this server's endpoint wrote it), log, ssh, or none (unproven)"
    )
    unverified_reason: str | None = Field(
        default=None, description="Why an unverified event is not believed"
    )


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
    size: int
    next: int | None


class ProjectIn(_Strict):
    name: str = Field(pattern=PROJECT_PATTERN)


class ProjectOut(BaseModel):
    name: str
    created_at: datetime
    origin: str
    size: int | None = None
    vkey: str | None = None


class UserIn(_Strict):
    email: str | None = Field(default=None, min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=500)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    kind: Literal["user", "service"] = "user"


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str
    kind: str
    disabled: bool
    created_at: datetime
    deleted_at: datetime | None = Field(
        default=None,
        description="When the user was deleted: email and name are then erased, the id stays.",
    )


class GrantOut(BaseModel):
    project: str = Field(description='A project, or "*" for every project.')
    role: str
    team: str | None = Field(
        default=None, description="The team the role comes through; null for a direct grant."
    )


class MemberOut(BaseModel):
    user: UserOut
    roles: list[str]
    direct_roles: list[str]


class TeamIn(_Strict):
    name: str = Field(min_length=1, max_length=200)


class TeamOut(BaseModel):
    id: str
    name: str
    created_at: datetime


class KeyCreateIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] | None = Field(default=None, max_length=20)
    expires_at: datetime | None = None
    user_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Whose key; default: yours."
    )


class KeyRotateIn(_Strict):
    overlap_seconds: int = Field(
        default=3600, ge=0, le=30 * 86400, description="How long the old key keeps working."
    )


class ApiKeyOut(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None = None


class KeySecretOut(BaseModel):
    key: ApiKeyOut
    secret: str = Field(description="The API key; shown once, never stored.")


class LoginIn(_Strict):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class MeOut(BaseModel):
    user_id: str
    email: str | None
    name: str
    kind: str
    grants: dict[str, list[str]]
    scopes: list[str] | None
    via: str
    key_id: str | None


class LoginOut(BaseModel):
    csrf_token: str
    user: MeOut
