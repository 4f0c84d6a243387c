"""Provisioning: SCIM 2.0 Users and Groups over the Directory's users and teams.

Data model (in the directory's database, migration 0004): scim_tokens(id, name, prefix
UNIQUE, token_hash SHA-256, created_at, revoked_at, last_used_at) — the bearer tokens an
identity provider provisions with, shown once; scim_users(user_id → directory_users,
user_name, user_name_key UNIQUE lower-case, external_id, attributes JSON, created_at,
updated_at) — the users an identity provider manages; scim_groups(team_id →
directory_teams, external_id, created_at, updated_at) — the teams it manages.

Every change goes through the Directory's lifecycle (create, update, disable, enable,
delete, team membership), so the rules and the ``auth.*`` ledger events are the ones an
administrator's change has, with the token as actor. ``active: false`` (and DELETE)
calls Directory.disable_user (or delete_user), which ends the user's sessions and
revokes their API keys in one transaction, then every injected `cut_off` hook (the
gateway's virtual keys), before the response is sent.

What a token may not do: act on an instance owner (owner on "*"), or change the members
of a team that holds a "*" role — an identity provider must not be able to make itself,
or anyone, an instance administrator. Users and teams that no identity provider created
or claimed stay invisible to SCIM; a POST whose email (Users) or name (Groups) matches
one claims it, recorded as ``auth.scim_linked``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from flowloom.auth.directory import Directory
from flowloom.auth.keystrings import KeyFormat, digests_match, hash_key
from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.auth.principals import Principal
from flowloom.auth.records import User
from flowloom.auth.schema import READ_ONLY
from flowloom.auth.scim.filter import parse_filter
from flowloom.auth.scim.patch import ScimPatchError, apply_patch
from flowloom.auth.scim.schemas import GROUP_SCHEMA, LIST_SCHEMA, MAX_RESULTS, USER_SCHEMA
from flowloom.auth.scim.sort import sort_resources
from flowloom.errors import (
    AuthError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = [
    "TOKEN_PREFIX",
    "CutOffHook",
    "PreconditionFailedError",
    "Provisioning",
    "ScimConflictError",
    "ScimToken",
    "etag_of",
]

_FORMAT = KeyFormat("flscim")
TOKEN_PREFIX = _FORMAT.lead
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_USER_KNOWN = MappingProxyType(
    {
        "username": "userName",
        "name": "name",
        "displayname": "displayName",
        "active": "active",
        "emails": "emails",
        "externalid": "externalId",
    }
)
_GROUP_KNOWN = MappingProxyType(
    {"displayname": "displayName", "members": "members", "externalid": "externalId"}
)
_READ_ONLY = frozenset({"id", "meta", "schemas", "groups"})
_MAX_TEXT = 1000

CutOffHook = Callable[[User, Principal | None, str], None]
"""cut_off(user as it was before, the token's principal, "disabled" | "deleted"):
revoke what the Directory does not hold (the gateway's virtual keys)."""


class PreconditionFailedError(ConflictError):
    """If-Match named a version that is no longer current (HTTP 412)."""


@dataclass(frozen=True)
class ScimToken:
    """A provisioning token's public facts; the secret is shown once."""

    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def _now_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TS)


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(str(value), _TS).replace(tzinfo=UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def etag_of(resource: Mapping[str, Any]) -> str:
    """A weak ETag of a resource's content (meta aside): it changes when anything does."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f'W/"{digest[:24]}"'


def _text(value: Any, what: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise ScimPatchError(f"{what} is required", scim_type="invalidValue")
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise ScimPatchError(f"{what} must be a string of at most {_MAX_TEXT} characters")
    return value.strip() or None


def _boolean(value: Any, what: str) -> bool:
    """JSON booleans, and the strings "True"/"False" Entra ID sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ScimPatchError(f"{what} must be true or false, not {value!r}")


def _get(source: Mapping[str, Any], name: str) -> Any:
    for key, value in source.items():
        if key.lower() == name:
            return value
    return None


def _clean_user(body: Mapping[str, Any]) -> dict[str, Any]:
    """The stored attributes of a User body, validated; unknown attributes dropped."""
    user_name = _text(_get(body, "username"), "userName", required=True)
    clean: dict[str, Any] = {"userName": user_name}
    external = _text(_get(body, "externalid"), "externalId")
    if external is not None:
        clean["externalId"] = external
    display = _text(_get(body, "displayname"), "displayName")
    if display is not None:
        clean["displayName"] = display
    name = _get(body, "name")
    if name is not None:
        if not isinstance(name, Mapping):
            raise ScimPatchError("name must be an object")
        parts = {}
        for key, label in (
            ("formatted", "formatted"),
            ("familyname", "familyName"),
            ("givenname", "givenName"),
        ):
            part = _text(_get(name, key), f"name.{label}")
            if part is not None:
                parts[label] = part
        if parts:
            clean["name"] = parts
    emails = _get(body, "emails")
    if emails is not None:
        if not isinstance(emails, list):
            raise ScimPatchError("emails must be a list")
        kept = []
        for item in emails:
            if not isinstance(item, Mapping):
                raise ScimPatchError("each email must be an object with a value")
            value = _text(_get(item, "value"), "emails.value")
            if value is None:
                continue
            email: dict[str, Any] = {"value": value}
            kind = _text(_get(item, "type"), "emails.type")
            if kind is not None:
                email["type"] = kind
            primary = _get(item, "primary")
            if primary is not None:
                email["primary"] = _boolean(primary, "emails.primary")
            kept.append(email)
        if sum(1 for e in kept if e.get("primary")) > 1:
            raise ScimPatchError("at most one email can be primary")
        if kept:
            clean["emails"] = kept
    active = _get(body, "active")
    if active is not None:
        clean["active"] = _boolean(active, "active")
    return clean


def _directory_email(attributes: Mapping[str, Any]) -> str | None:
    """The email the directory keeps: the primary one, else the first, else an
    email-shaped userName (Okta's default), else none."""
    emails = attributes.get("emails") or []
    for email in emails:
        if email.get("primary"):
            return str(email["value"]).lower()
    if emails:
        return str(emails[0]["value"]).lower()
    user_name = str(attributes["userName"])
    local, at, domain = user_name.partition("@")
    if at and local and domain and not any(c.isspace() for c in user_name):
        return user_name.lower()
    return None


def _printed_name(attributes: Mapping[str, Any]) -> str:
    name = attributes.get("name") or {}
    given = " ".join(p for p in (name.get("givenName"), name.get("familyName")) if p)
    return str(
        attributes.get("displayName") or name.get("formatted") or given or attributes["userName"]
    )[:200]


def _members(body: Mapping[str, Any]) -> list[str]:
    members = _get(body, "members")
    if members is None:
        return []
    if not isinstance(members, list):
        raise ScimPatchError("members must be a list")
    found = []
    for item in members:
        value = _get(item, "value") if isinstance(item, Mapping) else None
        if not isinstance(value, str) or not value:
            raise ScimPatchError("each member needs the user's id as value")
        found.append(value)
    return list(dict.fromkeys(found))


class Provisioning:
    """SCIM tokens, Users and Groups over a Directory."""

    def __init__(
        self,
        directory: Directory,
        *,
        cut_off: Sequence[CutOffHook] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._directory = directory
        self._engine = directory.engine
        self._cut_off = list(cut_off)
        self._clock = clock or (lambda: datetime.now(UTC))

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection whose transactions only read (on SQLite: no write lock)."""
        with self._engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            yield conn

    def add_cut_off(self, hook: CutOffHook) -> None:
        """Also call `hook` whenever a user is disabled or deleted through SCIM."""
        self._cut_off.append(hook)

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # -- tokens -------------------------------------------------------------------------

    def create_token(self, name: str, *, by: Principal | None = None) -> tuple[ScimToken, str]:
        """A new provisioning token: (its record, the secret — shown once, never again)."""
        clean = " ".join(name.split()) if isinstance(name, str) else ""
        if not clean or len(clean) > 200:
            raise InputError("a token name must be 1 to 200 characters", hint="e.g. okta")
        now = self._now()
        for _attempt in range(5):
            generated = _FORMAT.generate()
            token = ScimToken(
                id="scim_" + secrets.token_hex(8),
                name=clean,
                prefix=generated.prefix,
                created_at=now,
                revoked_at=None,
                last_used_at=None,
            )
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        text(
                            "INSERT INTO directory_scim_tokens (id, name, prefix, token_hash,"
                            " created_at) VALUES (:id, :n, :p, :h, :t)"
                        ),
                        {
                            "id": token.id,
                            "n": clean,
                            "p": token.prefix,
                            "h": generated.digest,
                            "t": _now_text(now),
                        },
                    )
            except IntegrityError:
                continue
            self._directory.record(
                "auth.scim_token_created",
                by=by,
                subject=token.id,
                refs={"token_id": token.id, "name": clean, "prefix": token.prefix},
            )
            return token, generated.secret
        raise ConflictError("could not allocate a unique token prefix", hint="try again")

    def list_tokens(self) -> list[ScimToken]:
        """Every provisioning token, revoked ones too, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, name, prefix, created_at, revoked_at, last_used_at"
                    " FROM directory_scim_tokens ORDER BY created_at, id"
                )
            ).all()
        return [
            ScimToken(r[0], r[1], r[2], _parse(r[3]) or self._now(), _parse(r[4]), _parse(r[5]))
            for r in rows
        ]

    def revoke_token(self, token_id: str, *, by: Principal | None = None) -> None:
        """Stop a provisioning token at once; NotFoundError if there is none."""
        with self._engine.begin() as conn:
            row = conn.execute(
                text("SELECT name, prefix, revoked_at FROM directory_scim_tokens WHERE id = :id"),
                {"id": token_id},
            ).first()
            if row is None:
                raise NotFoundError(f"no SCIM token {token_id!r}", hint="list them first")
            if row[2] is not None:
                return
            conn.execute(
                text("UPDATE directory_scim_tokens SET revoked_at = :t WHERE id = :id"),
                {"t": _now_text(self._now()), "id": token_id},
            )
        self._directory.record(
            "auth.scim_token_revoked",
            by=by,
            subject=token_id,
            refs={"token_id": token_id, "name": row[0], "prefix": row[1]},
        )

    def principal_for_token(self, secret: str) -> Principal:
        """The provisioning principal of `secret`: no roles, no scopes, via "scim".

        AuthError for anything else (an API key included): a provisioning token works
        only on /scim/v2, and nothing else works there.
        """
        refused = AuthError(
            "the SCIM token is not valid",
            hint="create one with 'flowloom admin scim-token create --name NAME'",
        )
        prefix = _FORMAT.parse(secret.strip()) if isinstance(secret, str) else None
        if prefix is None:
            raise refused
        with self._read() as conn:
            row = conn.execute(
                text(
                    "SELECT id, name, token_hash, revoked_at FROM directory_scim_tokens"
                    " WHERE prefix = :p"
                ),
                {"p": prefix},
            ).first()
        if row is None or row[3] is not None or not digests_match(hash_key(secret.strip()), row[2]):
            raise refused
        return Principal(
            user_id=str(row[0]),
            email=None,
            name=f"SCIM provisioning ({row[1]})",
            kind="service",
            grants=MappingProxyType({}),
            scopes=frozenset(),
            via="scim",
            key_id=str(row[0]),
        )

    # -- users --------------------------------------------------------------------------

    def _user_rows(
        self, conn: Connection, user_id: str | None, narrowed: tuple[str, str] | None = None
    ) -> list[Any]:
        where, value = " WHERE s.user_id = :id", user_id
        if user_id is None:
            where, value = "", None
            if narrowed is not None:
                column = _USER_COLUMNS[narrowed[0]]
                where, value = f" WHERE {column} = :id", narrowed[1]
        return list(
            conn.execute(
                text(
                    "SELECT s.user_id, s.attributes, s.created_at, s.updated_at, u.disabled"
                    " FROM directory_scim_users s JOIN directory_users u ON u.id = s.user_id"
                    f"{where} ORDER BY s.created_at, s.user_id"
                ),
                {"id": value},
            ).all()
        )

    def _groups_of(self, conn: Connection) -> dict[str, list[tuple[str, str]]]:
        rows = conn.execute(
            text(
                "SELECT m.user_id, t.id, t.name FROM directory_team_members m"
                " JOIN directory_teams t ON t.id = m.team_id"
                " JOIN directory_scim_groups g ON g.team_id = t.id ORDER BY t.name"
            )
        ).all()
        found: dict[str, list[tuple[str, str]]] = {}
        for user_id, team_id, name in rows:
            found.setdefault(str(user_id), []).append((str(team_id), str(name)))
        return found

    def _user_resource(
        self, row: Any, groups: Mapping[str, list[tuple[str, str]]], base: str
    ) -> dict[str, Any]:
        attributes = json.loads(row[1])
        resource: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": str(row[0])}
        for key in ("externalId", "userName", "name", "displayName", "emails"):
            if key in attributes:
                resource[key] = attributes[key]
        if row[4]:
            resource["active"] = False
        elif "active" in attributes:
            resource["active"] = True  # unassigned (never sent, or removed) reads as enabled
        member_of = groups.get(str(row[0]), [])
        if member_of:
            resource["groups"] = [
                {"value": team_id, "$ref": f"{base}/Groups/{team_id}", "display": name}
                for team_id, name in member_of
            ]
        resource["meta"] = {
            "resourceType": "User",
            "created": _rfc3339(_parse(row[2]) or self._now()),
            "lastModified": _rfc3339(_parse(row[3]) or self._now()),
            "location": f"{base}/Users/{row[0]}",
        }
        resource["meta"]["version"] = etag_of(resource)
        return resource

    def get_user(self, user_id: str, base: str) -> dict[str, Any]:
        """The SCIM User `user_id`; NotFoundError if no identity provider manages it."""
        return self._user_and_stamp(user_id, base)[0]

    def _user_and_stamp(self, user_id: str, base: str) -> tuple[dict[str, Any], str]:
        """The User and its row's updated_at, read together (the compare-and-set token)."""
        with self._read() as conn:
            rows = self._user_rows(conn, user_id)
            if not rows:
                raise NotFoundError(f"no SCIM user {user_id!r}")
            return self._user_resource(rows[0], self._groups_of(conn), base), str(rows[0][3])

    def _users(self, base: str, filter: str | None = None) -> list[dict[str, Any]]:
        """The Users; only the rows a simple `filter` (an eq on id, userName or externalId)
        can match are read, the filter itself is still applied after (`_page`)."""
        with self._read() as conn:
            groups = self._groups_of(conn)
            rows = self._user_rows(conn, None, _narrowed(filter, _USER_COLUMNS))
            return [self._user_resource(r, groups, base) for r in rows]

    def list_users(
        self,
        base: str,
        *,
        filter: str | None,
        start_index: int,
        count: int | None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> dict[str, Any]:
        """A ListResponse of the Users that match `filter`, sorted, one page of it."""
        return _page(self._users(base, filter), filter, start_index, count, sort_by, sort_order)

    def search(
        self,
        base: str,
        *,
        kinds: Sequence[str],
        filter: str | None,
        start_index: int,
        count: int | None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> dict[str, Any]:
        """A ListResponse over the resource types in `kinds` ("users", "groups")."""
        resources: list[dict[str, Any]] = []
        if "users" in kinds:
            resources += self._users(base, filter if len(kinds) == 1 else None)
        if "groups" in kinds:
            resources += self._groups(base, filter if len(kinds) == 1 else None)
        return _page(resources, filter, start_index, count, sort_by, sort_order)

    def create_user(self, body: Mapping[str, Any], base: str, *, by: Principal) -> dict[str, Any]:
        """Provision a user (or claim the unmanaged one with the same email)."""
        attributes = _clean_user(body)
        email = _directory_email(attributes)
        name = _printed_name(attributes)
        self._require_free_user_name(str(attributes["userName"]), None)
        user: User | None = None
        if email is not None:
            try:
                user = self._directory.user_by_email(email)
            except NotFoundError:
                user = None
        if user is not None:
            with self._read() as conn:
                managed = conn.execute(
                    text("SELECT 1 FROM directory_scim_users WHERE user_id = :id"),
                    {"id": user.id},
                ).first()
            if managed is not None or user.kind != "user":
                raise ScimConflictError(f"a user with email {email!r} already exists")
            self._target_allowed(user.id, by)
            linked = True
        else:
            user = self._directory.create_user(email, name, require_email=False, by=by)
            linked = False
        now = _now_text(self._now())
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO directory_scim_users (user_id, user_name, user_name_key,"
                        " external_id, attributes, created_at, updated_at)"
                        " VALUES (:id, :n, :k, :x, :a, :t, :t)"
                    ),
                    {
                        "id": user.id,
                        "n": attributes["userName"],
                        "k": str(attributes["userName"]).lower(),
                        "x": attributes.get("externalId"),
                        "a": json.dumps(attributes),
                        "t": now,
                    },
                )
        except IntegrityError:
            raise ScimConflictError(f"userName {attributes['userName']!r} is taken") from None
        if linked:
            self._directory.record(
                "auth.scim_linked",
                by=by,
                subject=user.id,
                refs={"user_id": user.id, "user_name": attributes["userName"]},
            )
            self._directory.update_profile(user.id, email=email, name=name, by=by)
        self._apply_active(user.id, bool(attributes.get("active", True)), by)
        return self.get_user(user.id, base)

    def _require_free_user_name(self, user_name: str, user_id: str | None) -> None:
        with self._read() as conn:
            row = conn.execute(
                text("SELECT user_id FROM directory_scim_users WHERE user_name_key = :k"),
                {"k": user_name.lower()},
            ).first()
        if row is not None and row[0] != user_id:
            raise ScimConflictError(f"userName {user_name!r} is taken")

    def _check_version(
        self, current: tuple[Mapping[str, Any], str], if_match: str | None, kind: str
    ) -> None:
        """Refuse (412) unless `if_match` names the current version; then claim that
        version with a compare-and-set on the row's updated_at, so of two writers that
        read the same version only one goes on (the other gets 412, nothing changed)."""
        if if_match is None or if_match.strip() == "*":
            return
        resource, stamp = current
        wanted = {tag.strip() for tag in if_match.split(",")}
        version = str(resource["meta"]["version"])
        if version not in wanted and version.removeprefix("W/") not in wanted:
            raise _changed()
        table, column = (
            ("directory_scim_users", "user_id")
            if kind == "user"
            else ("directory_scim_groups", "team_id")
        )
        now = self._now()
        seen = _parse(stamp)
        if seen is not None and now <= seen:
            now = seen + timedelta(microseconds=1)  # a new stamp, even on a coarse clock
        with self._engine.begin() as conn:
            claimed = conn.execute(
                text(
                    f"UPDATE {table} SET updated_at = :new"
                    f" WHERE {column} = :id AND updated_at = :seen"
                ),
                {"new": _now_text(now), "id": resource["id"], "seen": stamp},
            ).rowcount
        if claimed != 1:
            raise _changed()

    def replace_user(
        self,
        user_id: str,
        body: Mapping[str, Any],
        base: str,
        *,
        by: Principal,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """PUT: the user's attributes become `body`'s (missing ones are cleared)."""
        current, stamp = self._user_and_stamp(user_id, base)
        self._target_allowed(user_id, by)
        self._check_version((current, stamp), if_match, "user")
        return self._store_user(user_id, _clean_user(body), base, by)

    def patch_user(
        self,
        user_id: str,
        body: Mapping[str, Any],
        base: str,
        *,
        by: Principal,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """PATCH: the operations applied to the current attributes, then stored as a PUT."""
        current, stamp = self._user_and_stamp(user_id, base)
        self._target_allowed(user_id, by)
        self._check_version((current, stamp), if_match, "user")
        writable = {k: v for k, v in current.items() if k not in _READ_ONLY}
        patched = apply_patch(writable, body, known=_USER_KNOWN, multi=frozenset({"emails"}))
        return self._store_user(user_id, _clean_user(patched), base, by)

    def _target_allowed(self, user_id: str, by: Principal) -> None:
        """Refuse any change to an instance owner through SCIM (before anything changes)."""
        if "owner" in self._directory.grants_of(user_id).get(ALL_PROJECTS, frozenset()):
            raise PermissionDeniedError(
                "an instance owner cannot be changed through SCIM",
                hint="an instance owner changes them with 'flowloom admin user ...'",
            )

    def _store_user(
        self, user_id: str, attributes: dict[str, Any], base: str, by: Principal
    ) -> dict[str, Any]:
        active = bool(attributes.get("active", True))
        if not active:
            self._apply_active(user_id, False, by)  # deprovisioning first, whatever follows
        self._require_free_user_name(str(attributes["userName"]), user_id)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE directory_scim_users SET user_name = :n, user_name_key = :k,"
                        " external_id = :x, attributes = :a, updated_at = :t"
                        " WHERE user_id = :id"
                    ),
                    {
                        "id": user_id,
                        "n": attributes["userName"],
                        "k": str(attributes["userName"]).lower(),
                        "x": attributes.get("externalId"),
                        "a": json.dumps(attributes),
                        "t": _now_text(self._now()),
                    },
                )
        except IntegrityError:
            raise ScimConflictError(f"userName {attributes['userName']!r} is taken") from None
        try:
            self._directory.update_profile(
                user_id, email=_directory_email(attributes), name=_printed_name(attributes), by=by
            )
        except ConflictError as exc:
            raise ScimConflictError(exc.message) from None
        if active:
            self._apply_active(user_id, True, by)
        return self.get_user(user_id, base)

    def _apply_active(self, user_id: str, active: bool, by: Principal) -> None:
        before = self._directory.get_user(user_id)
        if active and before.disabled:
            self._directory.enable_user(user_id, by=by)
        elif not active:
            if not before.disabled:
                self._directory.disable_user(user_id, by=by)
            # Also when already disabled: a retry after a failed hook must finish the job.
            self.run_cut_off(before, by, "disabled")

    def run_cut_off(self, user: User, by: Principal | None, why: str) -> None:
        """Call every cut-off hook for `user` (as it was before), e.g. after an
        administrator disabled or deleted them outside SCIM. Idempotent."""
        for hook in self._cut_off:
            hook(user, by, why)

    def delete_user(
        self, user_id: str, base: str, *, by: Principal, if_match: str | None = None
    ) -> None:
        """DELETE: the user is deleted (personal data erased, sessions and keys ended)."""
        current, stamp = self._user_and_stamp(user_id, base)
        self._target_allowed(user_id, by)
        self._check_version((current, stamp), if_match, "user")
        before = self._directory.get_user(user_id)
        self._directory.delete_user(user_id, by=by)
        with self._engine.begin() as conn:
            conn.execute(
                text("DELETE FROM directory_scim_users WHERE user_id = :id"), {"id": user_id}
            )
        self.run_cut_off(before, by, "deleted")

    # -- groups -------------------------------------------------------------------------

    def _group_rows(
        self, conn: Connection, team_id: str | None, narrowed: tuple[str, str] | None = None
    ) -> list[Any]:
        where, value = " WHERE g.team_id = :id", team_id
        if team_id is None:
            where, value = "", None
            if narrowed is not None:
                column = _GROUP_COLUMNS[narrowed[0]]
                where, value = f" WHERE {column} = :id", narrowed[1]
        return list(
            conn.execute(
                text(
                    "SELECT t.id, t.name, g.external_id, g.created_at, g.updated_at"
                    " FROM directory_scim_groups g JOIN directory_teams t ON t.id = g.team_id"
                    f"{where} ORDER BY g.created_at, t.id"
                ),
                {"id": value},
            ).all()
        )

    def _members_of(self, conn: Connection) -> dict[str, list[tuple[str, str]]]:
        rows = conn.execute(
            text(
                "SELECT m.team_id, u.id, u.name FROM directory_team_members m"
                " JOIN directory_users u ON u.id = m.user_id ORDER BY u.name, u.id"
            )
        ).all()
        found: dict[str, list[tuple[str, str]]] = {}
        for team_id, user_id, name in rows:
            found.setdefault(str(team_id), []).append((str(user_id), str(name)))
        return found

    def _group_resource(
        self, row: Any, members: Mapping[str, list[tuple[str, str]]], base: str
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "id": str(row[0])}
        if row[2] is not None:
            resource["externalId"] = row[2]
        resource["displayName"] = row[1]
        resource["members"] = [
            {"value": user_id, "$ref": f"{base}/Users/{user_id}"}
            for user_id, _name in members.get(str(row[0]), [])
        ]
        resource["meta"] = {
            "resourceType": "Group",
            "created": _rfc3339(_parse(row[3]) or self._now()),
            "lastModified": _rfc3339(_parse(row[4]) or self._now()),
            "location": f"{base}/Groups/{row[0]}",
        }
        resource["meta"]["version"] = etag_of(resource)
        return resource

    def get_group(self, team_id: str, base: str) -> dict[str, Any]:
        """The SCIM Group `team_id`; NotFoundError if no identity provider manages it."""
        return self._group_and_stamp(team_id, base)[0]

    def _group_and_stamp(self, team_id: str, base: str) -> tuple[dict[str, Any], str]:
        """The Group and its row's updated_at, read together (the compare-and-set token)."""
        with self._read() as conn:
            rows = self._group_rows(conn, team_id)
            if not rows:
                raise NotFoundError(f"no SCIM group {team_id!r}")
            resource = self._group_resource(rows[0], self._members_of(conn), base)
            return resource, str(rows[0][4])

    def _groups(self, base: str, filter: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            members = self._members_of(conn)
            rows = self._group_rows(conn, None, _narrowed(filter, _GROUP_COLUMNS))
            return [self._group_resource(r, members, base) for r in rows]

    def list_groups(
        self,
        base: str,
        *,
        filter: str | None,
        start_index: int,
        count: int | None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> dict[str, Any]:
        """A ListResponse of the Groups that match `filter`, sorted, one page of it."""
        return _page(self._groups(base, filter), filter, start_index, count, sort_by, sort_order)

    def create_group(self, body: Mapping[str, Any], base: str, *, by: Principal) -> dict[str, Any]:
        """Provision a team (or claim the unmanaged team with the same name)."""
        name = _text(_get(body, "displayname"), "displayName", required=True)
        external = _text(_get(body, "externalid"), "externalId")
        members = _members(body)
        assert name is not None
        try:
            team = self._directory.get_team(name)
            linked = True
        except NotFoundError:
            team = None
            linked = False
        if team is not None:
            with self._read() as conn:
                managed = conn.execute(
                    text("SELECT 1 FROM directory_scim_groups WHERE team_id = :id"),
                    {"id": team.id},
                ).first()
            if managed is not None:
                raise ScimConflictError(f"group {name!r} already exists")
            self._guard_team(team.id)
        self._require_managed_users(members)
        if team is None:
            team = self._directory.create_team(name, by=by)
        now = _now_text(self._now())
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO directory_scim_groups (team_id, external_id, created_at,"
                    " updated_at) VALUES (:id, :x, :t, :t)"
                ),
                {"id": team.id, "x": external, "t": now},
            )
        if linked:
            self._directory.record(
                "auth.scim_linked", by=by, subject=team.id, refs={"team": team.name}
            )
        self._set_members(team.id, members, by)
        return self.get_group(team.id, base)

    def _guard_team(self, team_id: str) -> None:
        """Refuse SCIM changes to a team holding a "*" role: that is instance power."""
        grants = self._directory.team_grants(team=team_id)
        if any(g.project == ALL_PROJECTS for g in grants):
            raise PermissionDeniedError(
                "this team holds a role on every project: SCIM cannot change it",
                hint="an instance owner manages it with 'flowloom admin team ...'",
            )

    def _require_managed_users(self, user_ids: Iterable[str]) -> None:
        wanted = list(user_ids)
        if not wanted:
            return
        with self._read() as conn:
            known = {
                str(r[0])
                for r in conn.execute(text("SELECT user_id FROM directory_scim_users")).all()
            }
        unknown = [u for u in wanted if u not in known]
        if unknown:
            raise ScimPatchError(
                "unknown member(s): " + ", ".join(unknown[:5]),
                hint="members are ids of SCIM Users",
            )

    def _set_members(self, team_id: str, wanted: Sequence[str], by: Principal) -> None:
        current = {u.id for u in self._directory.team_members(team_id)}
        for user_id in wanted:
            if user_id not in current:
                self._directory.add_member(team_id, user_id, by=by)
        for user_id in sorted(current - set(wanted)):
            self._directory.remove_member(team_id, user_id, by=by)

    def replace_group(
        self,
        team_id: str,
        body: Mapping[str, Any],
        base: str,
        *,
        by: Principal,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """PUT: the group's name and members become `body`'s."""
        current, stamp = self._group_and_stamp(team_id, base)
        self._guard_team(team_id)
        self._check_version((current, stamp), if_match, "group")
        return self._store_group(team_id, body, base, by)

    def patch_group(
        self,
        team_id: str,
        body: Mapping[str, Any],
        base: str,
        *,
        by: Principal,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """PATCH: rename, add and remove members (Okta's and Entra's forms alike)."""
        current, stamp = self._group_and_stamp(team_id, base)
        self._guard_team(team_id)
        self._check_version((current, stamp), if_match, "group")
        writable = {k: v for k, v in current.items() if k not in _READ_ONLY}
        patched = apply_patch(writable, body, known=_GROUP_KNOWN, multi=frozenset({"members"}))
        return self._store_group(team_id, patched, base, by)

    def _store_group(
        self, team_id: str, body: Mapping[str, Any], base: str, by: Principal
    ) -> dict[str, Any]:
        self._guard_team(team_id)
        name = _text(_get(body, "displayname"), "displayName", required=True)
        external = _text(_get(body, "externalid"), "externalId")
        members = _members(body)
        current = {u.id for u in self._directory.team_members(team_id)}
        self._require_managed_users([m for m in members if m not in current])
        assert name is not None
        try:
            self._directory.rename_team(team_id, name, by=by)
        except ConflictError as exc:
            raise ScimConflictError(exc.message) from None
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE directory_scim_groups SET external_id = :x, updated_at = :t"
                    " WHERE team_id = :id"
                ),
                {"id": team_id, "x": external, "t": _now_text(self._now())},
            )
        self._set_members(team_id, members, by)
        return self.get_group(team_id, base)

    def delete_group(
        self, team_id: str, base: str, *, by: Principal, if_match: str | None = None
    ) -> None:
        """DELETE: the team goes, with its memberships and roles."""
        current, stamp = self._group_and_stamp(team_id, base)
        self._guard_team(team_id)
        self._check_version((current, stamp), if_match, "group")
        self._directory.delete_team(team_id, by=by)


def _changed() -> PreconditionFailedError:
    return PreconditionFailedError(
        "the resource changed since that version (If-Match)",
        hint="read it again and retry with its current ETag",
    )


class ScimConflictError(ConflictError):
    """A unique attribute (userName, an email, a group name) is taken: scimType uniqueness."""


_USER_COLUMNS: Mapping[str, str] = MappingProxyType(
    {"id": "s.user_id", "username": "s.user_name_key", "externalid": "s.external_id"}
)
_GROUP_COLUMNS: Mapping[str, str] = MappingProxyType({"id": "t.id", "externalid": "g.external_id"})
_SIMPLE_EQ = re.compile(
    r"\s*(?:urn:ietf:params:scim:schemas:core:2\.0:(?:User|Group):)?([A-Za-z]+)"
    r'\s+eq\s+("(?:[^"\\]|\\.)*")\s*',
    re.IGNORECASE,
)


def _narrowed(filter: str | None, columns: Mapping[str, str]) -> tuple[str, str] | None:
    """(attribute, value) when `filter` is one eq on an indexed column; else None (all
    rows are read and the filter applied in memory). userName compares lower-cased,
    as its unique key is stored."""
    if not filter:
        return None
    found = _SIMPLE_EQ.fullmatch(filter)
    if found is None or found.group(1).lower() not in columns:
        return None
    try:
        value = json.loads(found.group(2))
    except json.JSONDecodeError:
        return None
    if not isinstance(value, str):
        return None
    name = found.group(1).lower()
    return name, value.lower() if name == "username" else value


def _page(
    resources: list[dict[str, Any]],
    filter: str | None,
    start_index: int,
    count: int | None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> dict[str, Any]:
    if filter:
        parsed = parse_filter(filter)
        resources = [r for r in resources if parsed.matches(r)]
    resources = [dict(r) for r in sort_resources(resources, sort_by, sort_order)]
    start = max(start_index, 1)
    size = MAX_RESULTS if count is None else max(0, min(count, MAX_RESULTS))
    page = resources[start - 1 : start - 1 + size]
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": start,
        "itemsPerPage": len(page),
        "Resources": page,
    }
