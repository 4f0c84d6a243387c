"""Directory: the server's identity state — projects, users, teams, grants, keys, sessions.

Data model (tables prefixed ``directory_``, in the same database as the ledger; schema in
flowloom/auth/migrations/<dialect>/, versions in ``directory_migrations``):

- projects(name, created_at): one per ledger log; "flowloom-instance" is reserved for
  instance-wide security events.
- users(id, email UNIQUE, name, kind user|service, password_hash argon2id, disabled,
  oidc_issuer+oidc_subject UNIQUE, created_at, deleted_at). Service accounts are users of
  kind "service", usually without email or password; they authenticate with API keys. A
  deleted user keeps its row and id, without personal data, so the ledger's past events
  still resolve to "a deleted user".
- teams(id, name UNIQUE), team_members(team_id, user_id).
- grants(user_id, project|"*", role) and team_grants(team_id, project|"*", role): one
  row per role; the primary keys make granting idempotent under concurrency.
- api_keys(id, user_id, name, prefix UNIQUE, key_hash SHA-256, scopes JSON list or NULL,
  created_at, expires_at, revoked_at, last_used_at, rotated_from).
- sessions(id, user_id, token_hash UNIQUE, via, created_at, last_seen_at, expires_at,
  auth_time, reauthenticated_at, signed_before, ended_at).
- login_failures(account, client, at): sign-in attempts the throttle counts, shared by all
  processes; each is reserved before its password is evaluated and removed on success
  (`client` is the throttle's address key, flowloom.auth.throttle.client_key).
- oidc_states(state_hash, verifier, nonce, redirect, created_at): single-use, 10 minutes.
- saml_requests(state_hash, request_id, kind login|reauth|logout, redirect, created_at):
  single-use, 10 minutes; saml_assertions(assertion_hash, idp, expires_at): each assertion
  id accepted once, remembered until the assertion expires (replay protection);
  saml_sessions(session_id, idp, name_id..., session_index): for single logout.

No secret is stored: API keys and session tokens as SHA-256, passwords as argon2id, the
CSRF token not at all (it is derived from the session token). Every change is a single
statement or one transaction (BEGIN IMMEDIATE on SQLite, row locks on PostgreSQL), so
several server processes can share the database. Every security-relevant action is
reported to the injected `audit` callback as an ``auth.*`` event whose meta
(actor/subject/refs) is ready for Ledger.record and never holds a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from flowloom.auth.apikeys import generate_key, key_matches, parse_key
from flowloom.auth.passwords import Passwords
from flowloom.auth.permissions import (
    ALL_PROJECTS,
    INSTANCE_PROJECT,
    validate_role,
    validate_scopes,
)
from flowloom.auth.principals import Principal, PrincipalVia
from flowloom.auth.records import (
    ApiKey,
    Grant,
    Member,
    OidcState,
    Project,
    SamlPending,
    SamlSessionRef,
    Session,
    Team,
    User,
    UserKind,
)
from flowloom.auth.schema import READ_ONLY, dialect_of, make_engine, migrate, translate
from flowloom.auth.sessions import SessionPolicy, csrf_for, csrf_matches, hash_token, new_token
from flowloom.auth.throttle import LoginThrottledError, ThrottlePolicy, client_key
from flowloom.config import _PROJECT_RE
from flowloom.errors import (
    AuthError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = [
    "DELETED_USER_NAME",
    "INSTANCE_PROJECT",
    "OIDC_STATE_TTL",
    "ApiKey",
    "AuditHook",
    "Clock",
    "Directory",
    "Grant",
    "LoginThrottledError",
    "Member",
    "OidcState",
    "Project",
    "Session",
    "Team",
    "User",
]

AuditHook = Callable[[str, str | None, Mapping[str, Any]], None]
"""audit(kind, project or None for instance-wide, meta) — meta fits Ledger.record(meta=)."""
Clock = Callable[[], datetime]

OIDC_STATE_TTL = timedelta(minutes=10)
DELETED_USER_NAME = "deleted user"
"""The name a deleted user's row keeps (the real one is erased with the email)."""
SYSTEM_ACTOR: Mapping[str, Any] = MappingProxyType({"type": "service", "id": "flowloom"})
_ANONYMOUS: Mapping[str, Any] = MappingProxyType({"type": "human", "id": "anonymous"})
_USER_KINDS: tuple[UserKind, ...] = ("user", "service")
_VIA_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_THROTTLE_LOCK = 0x464C5448  # advisory-lock namespace of the sign-in throttle ("FLTH")
_LATEST_EXPIRY = datetime(3000, 1, 1, tzinfo=UTC)
"""Key expiries stay far from the calendar's end, so rotation's arithmetic cannot overflow."""
_SIGNIN_HINT = "sign in again"
_USER_COLUMNS = (
    "id, email, name, kind, disabled, created_at, password_hash IS NOT NULL AS has_password,"
    " oidc_issuer, oidc_subject, deleted_at"
)
_KEY_COLUMNS = (
    "id, user_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at,"
    " rotated_from"
)
_SESSION_COLUMNS = (
    "id, user_id, via, created_at, last_seen_at, expires_at, auth_time, reauthenticated_at,"
    " signed_before, ended_at"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def _normal_email(email: str) -> str:
    clean = email.strip().lower() if isinstance(email, str) else ""
    local, at, domain = clean.partition("@")
    if not at or not local or not domain or any(c.isspace() for c in clean) or len(clean) > 320:
        raise InputError(f"{email!r} is not an email address", hint="give name@example.org")
    return clean


def _clean_name(name: str, what: str) -> str:
    clean = " ".join(name.split()) if isinstance(name, str) else ""
    if not clean or len(clean) > 200:
        raise InputError(f"{what} must be 1 to 200 characters of text")
    return clean


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _mintable(
    by: Principal | None, owner_id: str, owner_kind: str, scopes: frozenset[str] | None
) -> frozenset[str] | None:
    """The scopes a new secret for `owner_id` may carry when `by` makes it.

    A secret goes only to the person it belongs to (a service account's may be made for
    it), and a key never reaches beyond the key that made it: without scopes of its own
    it takes the maker's. `by` None is the administrator's bootstrap path.
    """
    if by is None:
        return scopes
    if by.user_id != owner_id and owner_kind != "service":
        raise PermissionDeniedError(
            "only its owner can create or rotate a person's API key",
            hint="ask them to create it; an administrator may list and revoke it",
        )
    if by.scopes is None:
        return scopes
    if scopes is None:
        return by.scopes
    beyond = scopes - by.scopes
    if beyond:
        raise PermissionDeniedError(
            "a key cannot have scopes the key creating it lacks: " + ", ".join(sorted(beyond)),
            hint="create it with a key that has those scopes",
        )
    return scopes


def _no_user(user_id: str) -> NotFoundError:
    return NotFoundError(f"no user {user_id!r}", hint="list users to find the id")


def _no_key(key_id: str) -> NotFoundError:
    return NotFoundError(f"no API key {key_id!r}", hint="list keys to find the id")


class Directory:
    """Users, projects, teams, role grants, API keys and sessions in one database."""

    def __init__(
        self,
        database: str | Engine,
        *,
        audit: AuditHook | None = None,
        clock: Clock | None = None,
        throttle: ThrottlePolicy | None = None,
        sessions: SessionPolicy | None = None,
        default_actor: Mapping[str, Any] | None = None,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        """Open (and migrate) the directory in `database`: a URL or an SQLAlchemy engine.

        `audit` receives every security event; `clock` returns the current aware UTC
        time (tests move it); `default_actor` is the ledger actor for changes made
        without a principal (the CLI passes the operating-system user).
        """
        self._owns_engine = not isinstance(database, Engine)
        self._engine = make_engine(database) if isinstance(database, str) else database
        self._dialect = dialect_of(self._engine)
        self._audit_hook = audit
        self._clock = clock or _utcnow
        self._throttle = throttle or ThrottlePolicy()
        self._sessions = sessions or SessionPolicy()
        self._default_actor = dict(default_actor or SYSTEM_ACTOR)
        self._passwords = Passwords(password_hasher)
        try:
            migrate(self._engine)
        except BaseException:
            if self._owns_engine:
                self._engine.dispose()
            raise

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def throttle_policy(self) -> ThrottlePolicy:
        return self._throttle

    @property
    def session_policy(self) -> SessionPolicy:
        return self._sessions

    def close(self) -> None:
        """Release the connections (only those of an engine this Directory made)."""
        if self._owns_engine:
            self._engine.dispose()

    # -- plumbing ---------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the directory clock must return an aware datetime")
        return now.astimezone(UTC)

    def _t(self, moment: datetime | None) -> Any:
        """A timestamp as the dialect stores it."""
        if moment is None:
            return None
        moment = moment.astimezone(UTC)
        return moment if self._dialect == "postgres" else moment.strftime(_TS_FORMAT)

    @staticmethod
    def _dt(value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

    def _dt_opt(self, value: Any) -> datetime | None:
        return None if value is None else self._dt(value)

    @contextlib.contextmanager
    def _tx(self, doing: str) -> Iterator[Connection]:
        """One transaction; driver errors become StoreError (IntegrityError passes)."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        """One transaction that only reads: on SQLite it takes no write lock."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    def _one(self, doing: str, sql: str, params: Mapping[str, Any], absent: NotFoundError) -> Any:
        """The first row `sql` selects, in a transaction of its own; `absent` if none."""
        with self._read(doing) as conn:
            row = conn.execute(text(sql), params).first()
        if row is None:
            raise absent
        return row

    def _all(self, doing: str, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """Every row `sql` selects, in a transaction of its own."""
        with self._read(doing) as conn:
            return conn.execute(text(sql), params).all()

    def _insert(
        self, doing: str, sql: str, params: Mapping[str, Any], taken: str, hint: str
    ) -> None:
        """One INSERT; ConflictError(`taken`, `hint`) when a unique constraint refuses it."""
        try:
            with self._tx(doing) as conn:
                conn.execute(text(sql), params)
        except IntegrityError:
            raise ConflictError(taken, hint=hint) from None

    def _lock(self) -> str:
        """Row-lock suffix for SELECTs that precede an update (SQLite locks the file)."""
        return " FOR UPDATE" if self._dialect == "postgres" else ""

    def _actor(self, by: Principal | None) -> dict[str, Any]:
        return by.actor() if by is not None else dict(self._default_actor)

    def _audit(
        self,
        kind: str,
        project: str | None,
        *,
        by: Principal | None,
        subject: str | None,
        refs: Mapping[str, Any],
        actor: Mapping[str, Any] | None = None,
    ) -> None:
        if self._audit_hook is None:
            return
        meta: dict[str, Any] = {"actor": dict(actor) if actor else self._actor(by)}
        if subject is not None:
            meta["subject"] = subject
        clean = {k: v for k, v in refs.items() if v is not None}
        if by is not None:
            clean["auth_via"] = by.via
            if by.key_id:
                clean["key_id"] = by.key_id
            if by.via == "cli":
                # Named with `flowloom admin ... --as`, not authenticated: the command line
                # is the actor, and the owner it named is kept as a claim.
                meta["actor"] = dict(self._default_actor)
                clean["claimed_by"] = by.actor()
        if clean:
            meta["refs"] = clean
        self._audit_hook(kind, project, meta)

    def record(
        self,
        kind: str,
        *,
        by: Principal | None,
        subject: str | None,
        refs: Mapping[str, Any],
    ) -> None:
        """Report an instance-wide security event of a module built on the directory
        (provisioning), with the same actor rules as the directory's own events."""
        self._audit(kind, None, by=by, subject=subject, refs=refs)

    def _audit_role(
        self,
        kind: str,
        project: str,
        role: str,
        *,
        by: Principal | None,
        subject: str,
        grantee: Mapping[str, Any],
    ) -> None:
        """A role granted or revoked, audited in the project's ledger ("*": instance-wide)."""
        self._audit(
            kind,
            None if project == ALL_PROJECTS else project,
            by=by,
            subject=subject,
            refs={**grantee, "project": project, "role": role},
        )

    # -- projects ---------------------------------------------------------------------

    def create_project(self, name: str, *, by: Principal | None = None) -> Project:
        """Register a project (its ledger log has the same name); ConflictError if taken."""
        if not isinstance(name, str) or not _PROJECT_RE.match(name):
            raise InputError(
                f"{name!r} is not a valid project name",
                hint="use letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        if name == INSTANCE_PROJECT:
            raise InputError(
                f"{INSTANCE_PROJECT!r} is reserved for instance-wide audit events",
                hint="choose another project name",
            )
        now = self._now()
        self._insert(
            "creating a project",
            "INSERT INTO directory_projects (name, created_at) VALUES (:n, :t)",
            {"n": name, "t": self._t(now)},
            f"project {name!r} already exists",
            "choose another name",
        )
        self._audit("auth.project_created", None, by=by, subject=name, refs={"project": name})
        return Project(name=name, created_at=now)

    def get_project(self, name: str) -> Project:
        """The project `name`; NotFoundError if there is none."""
        row = self._one(
            "reading a project",
            "SELECT name, created_at FROM directory_projects WHERE name = :n",
            {"n": name},
            NotFoundError(f"no project {name!r}", hint="list projects, or create it first"),
        )
        return Project(name=row[0], created_at=self._dt(row[1]))

    def list_projects(self) -> list[Project]:
        """Every project, by name."""
        rows = self._all(
            "listing projects", "SELECT name, created_at FROM directory_projects ORDER BY name"
        )
        return [Project(name=r[0], created_at=self._dt(r[1])) for r in rows]

    def _require_target(self, conn: Connection, project: str) -> None:
        if project == ALL_PROJECTS:
            return
        found = conn.execute(
            text("SELECT 1 FROM directory_projects WHERE name = :n"), {"n": project}
        ).first()
        if found is None:
            raise NotFoundError(f"no project {project!r}", hint='create it first, or grant on "*"')

    # -- users ------------------------------------------------------------------------

    def _user(self, row: Any) -> User:
        return User(
            id=row[0],
            email=row[1],
            name=row[2],
            kind=row[3],
            disabled=bool(row[4]),
            created_at=self._dt(row[5]),
            has_password=bool(row[6]),
            oidc_issuer=row[7],
            oidc_subject=row[8],
            deleted_at=self._dt_opt(row[9]),
        )

    def create_user(
        self,
        email: str | None,
        name: str,
        *,
        password: str | None = None,
        kind: str = "user",
        require_email: bool = True,
        by: Principal | None = None,
    ) -> User:
        """Add a person (kind "user") or a service account (kind "service").

        `require_email` False lets a provisioned person exist without one (a SCIM user
        whose identity provider sends none): they sign in through single sign-on only.
        """
        if kind not in _USER_KINDS:
            raise InputError(f"unknown user kind {kind!r}", hint="use 'user' or 'service'")
        clean_email = _normal_email(email) if email is not None else None
        if clean_email is None and kind == "user" and require_email:
            raise InputError("a user needs an email address", hint="give --email")
        clean_name = _clean_name(name, "a user's name")
        hashed = self._passwords.hash(password) if password is not None else None
        user_id = _new_id("usr")
        now = self._now()
        self._insert(
            "creating a user",
            "INSERT INTO directory_users"
            " (id, email, name, kind, password_hash, disabled, created_at)"
            " VALUES (:id, :email, :name, :kind, :pw, :off, :t)",
            {
                "id": user_id,
                "email": clean_email,
                "name": clean_name,
                "kind": kind,
                "pw": hashed,
                "off": False,
                "t": self._t(now),
            },
            f"a user with email {clean_email!r} already exists",
            "use that account, or another email address",
        )
        self._audit(
            "auth.user_created",
            None,
            by=by,
            subject=user_id,
            refs={"user_id": user_id, "email": clean_email, "name": clean_name, "kind": kind},
        )
        return User(
            id=user_id,
            email=clean_email,
            name=clean_name,
            kind=kind,
            disabled=False,
            created_at=now,
            has_password=hashed is not None,
        )

    def get_user(self, user_id: str) -> User:
        """The user `user_id`; NotFoundError if there is none."""
        sql = f"SELECT {_USER_COLUMNS} FROM directory_users WHERE id = :id"
        return self._user(self._one("reading a user", sql, {"id": user_id}, _no_user(user_id)))

    def user_by_email(self, email: str) -> User:
        """The user with `email` (case-insensitive); NotFoundError if there is none."""
        clean = _normal_email(email)
        sql = f"SELECT {_USER_COLUMNS} FROM directory_users WHERE email = :e"
        absent = NotFoundError(f"no user with email {clean!r}", hint="create the user first")
        return self._user(self._one("reading a user", sql, {"e": clean}, absent))

    def list_users(self) -> list[User]:
        """Every user and service account, oldest first."""
        rows = self._all(
            "listing users", f"SELECT {_USER_COLUMNS} FROM directory_users ORDER BY created_at, id"
        )
        return [self._user(r) for r in rows]

    def set_password(self, user_id: str, password: str, *, by: Principal | None = None) -> None:
        """Set or replace a user's password (at least 12 characters)."""
        hashed = self._passwords.hash(password)
        with self._tx("setting a password") as conn:
            done = conn.execute(
                text("UPDATE directory_users SET password_hash = :pw WHERE id = :id"),
                {"pw": hashed, "id": user_id},
            ).rowcount
        if not done:
            raise _no_user(user_id)
        self._audit("auth.password_set", None, by=by, subject=user_id, refs={"user_id": user_id})

    def update_profile(
        self, user_id: str, *, email: str | None, name: str, by: Principal | None = None
    ) -> User:
        """Set a live user's email (None: none) and printed name, as their identity
        provider now states them; ConflictError if the email belongs to someone else."""
        clean_email = _normal_email(email) if email is not None else None
        clean_name = _clean_name(name, "a user's name")
        before = self.get_user(user_id)
        if before.deleted_at is not None:
            raise ConflictError(f"user {user_id!r} was deleted", hint="create a new account")
        if (before.email, before.name) == (clean_email, clean_name):
            return before
        try:
            with self._tx("updating a user") as conn:
                conn.execute(
                    text("UPDATE directory_users SET email = :e, name = :n WHERE id = :id"),
                    {"e": clean_email, "n": clean_name, "id": user_id},
                )
        except IntegrityError:
            raise ConflictError(
                f"a user with email {clean_email!r} already exists",
                hint="each email address belongs to one account",
            ) from None
        self._audit(
            "auth.user_updated",
            None,
            by=by,
            subject=user_id,
            refs={"user_id": user_id, "email": clean_email, "name": clean_name},
        )
        return self.get_user(user_id)

    # -- user lifecycle: disable, enable, delete -----------------------------------------

    def _owners(self, conn: Connection, *, lock: bool) -> list[str]:
        """Enabled users holding "owner" on "*", directly or through a team.

        With `lock`, their rows are locked (PostgreSQL) so that two changes that could
        each remove an owner run one after the other, and the second sees the first.
        """
        rows = conn.execute(
            text(
                "SELECT id FROM directory_users WHERE disabled = :off AND id IN"
                " (SELECT user_id FROM directory_grants WHERE project = :all AND role = 'owner'"
                " UNION SELECT m.user_id FROM directory_team_grants g"
                " JOIN directory_team_members m ON m.team_id = g.team_id"
                " WHERE g.project = :all AND g.role = 'owner') ORDER BY id"
                + (self._lock() if lock else "")
            ),
            {"off": False, "all": ALL_PROJECTS},
        ).all()
        return [str(r[0]) for r in rows]

    def _keep_an_owner(self, conn: Connection, before: Sequence[str]) -> None:
        """Refuse (rolling the transaction back) a change that left no instance owner."""
        if before and not self._owners(conn, lock=False):
            raise ConflictError(
                'that would leave the instance without an owner (owner on "*")',
                hint='make another user owner on "*" first',
            )

    def _target(self, conn: Connection, user_id: str, by: Principal | None, doing: str) -> User:
        """The user `by` wants to `doing` (locked), once the rules allow it: nobody acts on
        their own account, and only an instance owner acts on an instance owner."""
        row = conn.execute(
            text(f"SELECT {_USER_COLUMNS} FROM directory_users WHERE id = :id{self._lock()}"),
            {"id": user_id},
        ).first()
        if row is None:
            raise _no_user(user_id)
        user = self._user(row)
        if by is None:
            return user
        if by.user_id == user.id:
            raise PermissionDeniedError(
                f"you cannot {doing} your own account", hint="ask another administrator"
            )
        owner = "owner"
        if owner in self._grants(conn, user.id).get(ALL_PROJECTS, frozenset()) and (
            owner not in by.grants.get(ALL_PROJECTS, frozenset())
        ):
            raise PermissionDeniedError(
                f"{user.name} is an instance owner: only an instance owner can {doing} them",
                hint="ask an instance owner",
            )
        return user

    def _cut_off(
        self, conn: Connection, user_id: str, now: datetime
    ) -> tuple[list[str], list[ApiKey]]:
        """End every session and revoke every API key of `user_id`: (session ids, keys)."""
        sessions = conn.execute(
            text(
                "UPDATE directory_sessions SET ended_at = :t"
                " WHERE user_id = :id AND ended_at IS NULL RETURNING id"
            ),
            {"t": self._t(now), "id": user_id},
        ).all()
        keys = conn.execute(
            text(
                "UPDATE directory_api_keys SET revoked_at = :t"
                f" WHERE user_id = :id AND revoked_at IS NULL RETURNING {_KEY_COLUMNS}"
            ),
            {"t": self._t(now), "id": user_id},
        ).all()
        revoked = sorted((self._key(r) for r in keys), key=lambda k: (k.created_at, k.id))
        return sorted(str(r[0]) for r in sessions), revoked

    def _audit_keys_revoked(self, keys: Sequence[ApiKey], by: Principal | None, why: str) -> None:
        """One auth.key_revoked per key, as when revoked one by one, so whoever follows a
        key (the access checks) sees it end."""
        for key in keys:
            refs = {**self._key_refs(key), "reason": why}
            self._audit("auth.key_revoked", None, by=by, subject=key.id, refs=refs)

    def disable_user(self, user_id: str, *, by: Principal | None = None) -> User:
        """Stop a user from authenticating at all: their sessions end and their API keys
        are revoked, at once (audited as auth.user_disabled, then auth.key_revoked per
        key). Enabling them again restores sign-in, not the keys.

        Refused for one's own account, for an instance owner unless `by` is one, and for
        the last instance owner. Disabling a disabled user changes nothing.
        """
        now = self._now()
        with self._tx("disabling a user") as conn:
            owners = self._owners(conn, lock=True)
            user = self._target(conn, user_id, by, "disable")
            conn.execute(
                text("UPDATE directory_users SET disabled = :on WHERE id = :id"),
                {"on": True, "id": user_id},
            )
            sessions, keys = self._cut_off(conn, user_id, now)
            self._keep_an_owner(conn, owners)
        if not user.disabled or sessions or keys:
            self._audit(
                "auth.user_disabled",
                None,
                by=by,
                subject=user_id,
                refs={"user_id": user_id, "sessions_ended": sessions or None},
            )
        self._audit_keys_revoked(keys, by, "user disabled")
        return self.get_user(user_id)

    def enable_user(self, user_id: str, *, by: Principal | None = None) -> User:
        """Let a disabled user sign in again. Their revoked API keys stay revoked (they
        make new ones); a deleted user cannot be enabled. Idempotent."""
        with self._tx("enabling a user") as conn:
            user = self._target(conn, user_id, by, "enable")
            if user.deleted_at is not None:
                raise ConflictError(
                    f"user {user_id!r} was deleted and cannot be enabled again",
                    hint="create a new account",
                )
            conn.execute(
                text("UPDATE directory_users SET disabled = :off WHERE id = :id"),
                {"off": False, "id": user_id},
            )
        if user.disabled:
            self._audit(
                "auth.user_enabled", None, by=by, subject=user_id, refs={"user_id": user_id}
            )
        return self.get_user(user_id)

    def delete_user(self, user_id: str, *, by: Principal | None = None) -> User:
        """Erase a user's personal data from the directory, keeping the row and its id.

        Email, name, password hash and single sign-on link are removed (the name becomes
        DELETED_USER_NAME), the account is disabled, sessions end, keys are revoked, its
        roles and team memberships are removed. The ledger is append-only and is not
        edited: its past events keep naming the id, which now reads as a deleted user.
        The same rules as for disabling apply. Deleting a deleted user changes nothing.
        """
        now = self._now()
        with self._tx("deleting a user") as conn:
            owners = self._owners(conn, lock=True)
            user = self._target(conn, user_id, by, "delete")
            if user.deleted_at is not None:
                return user
            conn.execute(
                text(
                    "UPDATE directory_users SET email = NULL, name = :name,"
                    " password_hash = NULL, oidc_issuer = NULL, oidc_subject = NULL,"
                    " disabled = :on, deleted_at = :t WHERE id = :id"
                ),
                {"name": DELETED_USER_NAME, "on": True, "t": self._t(now), "id": user_id},
            )
            sessions, keys = self._cut_off(conn, user_id, now)
            roles = conn.execute(
                text("DELETE FROM directory_grants WHERE user_id = :id RETURNING project, role"),
                {"id": user_id},
            ).all()
            teams = conn.execute(
                text(
                    "SELECT t.name FROM directory_team_members m"
                    " JOIN directory_teams t ON t.id = m.team_id WHERE m.user_id = :id"
                ),
                {"id": user_id},
            ).all()
            conn.execute(
                text("DELETE FROM directory_team_members WHERE user_id = :id"), {"id": user_id}
            )
            if user.email is not None:
                conn.execute(
                    text("DELETE FROM directory_login_failures WHERE account = :e"),
                    {"e": user.email},
                )
            self._keep_an_owner(conn, owners)
        # Each project's own audit trail shows the role ending, as for any revocation.
        for project, role in sorted((str(r[0]), str(r[1])) for r in roles):
            self._audit_role(
                "auth.role_revoked",
                project,
                role,
                by=by,
                subject=user_id,
                grantee={"user_id": user_id, "reason": "user deleted"},
            )
        self._audit(
            "auth.user_deleted",
            None,
            by=by,
            subject=user_id,
            refs={
                "user_id": user_id,
                "sessions_ended": sessions or None,
                "teams_left": sorted(str(r[0]) for r in teams) or None,
            },
        )
        self._audit_keys_revoked(keys, by, "user deleted")
        return self.get_user(user_id)

    def upsert_oidc_user(self, issuer: str, subject: str, email: str | None, name: str) -> User:
        """The user for an OIDC identity, created or linked (by email) on first sign-in.

        The identity provider is trusted to have verified the email address (the OIDC
        module passes it only then); an existing account with that email is linked once.
        """
        return self.upsert_federated_user(issuer, subject, email, name, method="oidc")

    def upsert_federated_user(
        self, issuer: str, subject: str, email: str | None, name: str, *, method: str
    ) -> User:
        """The user for an identity-provider identity (OIDC issuer or SAML IdP entity id,
        and its subject), created or linked by email on first sign-in; audited as
        auth.user_created or auth.<method>_linked."""
        if method not in ("oidc", "saml"):
            raise InputError(f"unknown sign-in method {method!r}")
        if not issuer or not subject:
            raise InputError("an identity from a provider needs an issuer and a subject")
        clean_email = _normal_email(email) if email else None
        clean_name = _clean_name(name or clean_email or subject, "a user's name")
        created = linked = False
        for _attempt in range(3):
            try:
                with self._tx("signing in with OIDC") as conn:
                    row = conn.execute(
                        text(
                            f"SELECT {_USER_COLUMNS} FROM directory_users"
                            " WHERE oidc_issuer = :i AND oidc_subject = :s"
                        ),
                        {"i": issuer, "s": subject},
                    ).first()
                    if row is None and clean_email is not None:
                        row = conn.execute(
                            text(
                                f"SELECT {_USER_COLUMNS} FROM directory_users WHERE email = :e"
                                f"{self._lock()}"
                            ),
                            {"e": clean_email},
                        ).first()
                        if row is not None and row[7] is not None:
                            raise AuthError(
                                "this email address is linked to another sign-in identity",
                                hint="sign in with the identity you used before",
                            )
                        if row is not None:
                            conn.execute(
                                text(
                                    "UPDATE directory_users SET oidc_issuer = :i,"
                                    " oidc_subject = :s WHERE id = :id"
                                ),
                                {"i": issuer, "s": subject, "id": row[0]},
                            )
                            linked = True
                    if row is None:
                        user_id = _new_id("usr")
                        conn.execute(
                            text(
                                "INSERT INTO directory_users (id, email, name, kind, disabled,"
                                " oidc_issuer, oidc_subject, created_at)"
                                " VALUES (:id, :e, :n, 'user', :off, :i, :s, :t)"
                            ),
                            {
                                "id": user_id,
                                "e": clean_email,
                                "n": clean_name,
                                "off": False,
                                "i": issuer,
                                "s": subject,
                                "t": self._t(self._now()),
                            },
                        )
                        created = True
                    else:
                        user_id = row[0]
                    user_row = conn.execute(
                        text(f"SELECT {_USER_COLUMNS} FROM directory_users WHERE id = :id"),
                        {"id": user_id},
                    ).one()
                break
            except IntegrityError:
                continue  # another process created the same identity: read it back
        else:
            raise ConflictError(
                "could not create the account for this sign-in",
                hint="the email address may belong to another account; ask an administrator",
            )
        user = self._user(user_row)
        refs = {"user_id": user.id, "issuer": issuer, "email": user.email}
        if method != "oidc":
            refs["method"] = method
        if created:
            self._audit("auth.user_created", None, by=None, subject=user.id, refs=refs)
        elif linked:
            self._audit(f"auth.{method}_linked", None, by=None, subject=user.id, refs=refs)
        return user

    # -- grants -----------------------------------------------------------------------

    def grant(self, user_id: str, project: str, role: str, *, by: Principal | None = None) -> None:
        """Give `user_id` the `role` on `project` ("*": every project). Idempotent."""
        validate_role(role)
        with self._tx("granting a role") as conn:
            self._require_target(conn, project)
            self._require_live(conn, user_id)
            added = conn.execute(
                text(
                    "INSERT INTO directory_grants (user_id, project, role, created_at)"
                    " VALUES (:u, :p, :r, :t) ON CONFLICT DO NOTHING"
                ),
                {"u": user_id, "p": project, "r": role, "t": self._t(self._now())},
            ).rowcount
        if added:
            self._audit_role(
                "auth.role_granted",
                project,
                role,
                by=by,
                subject=user_id,
                grantee={"user_id": user_id},
            )

    def _require_live(self, conn: Connection, user_id: str) -> None:
        """NotFoundError for an unknown user, ConflictError for a deleted one."""
        row = conn.execute(
            text("SELECT deleted_at FROM directory_users WHERE id = :id"), {"id": user_id}
        ).first()
        if row is None:
            raise _no_user(user_id)
        if row[0] is not None:
            raise ConflictError(f"user {user_id!r} was deleted", hint="grant to someone else")

    def _owners_if(self, conn: Connection, project: str, role: str) -> list[str]:
        """The instance owners, locked, when revoking `role` on `project` may remove one."""
        if project == ALL_PROJECTS and role == "owner":
            return self._owners(conn, lock=True)
        return []

    def revoke(self, user_id: str, project: str, role: str, *, by: Principal | None = None) -> None:
        """Take `role` on `project` away from `user_id`; NotFoundError if not granted,
        ConflictError if it would leave the instance without an owner."""
        validate_role(role)
        with self._tx("revoking a role") as conn:
            owners = self._owners_if(conn, project, role)
            removed = conn.execute(
                text(
                    "DELETE FROM directory_grants WHERE user_id = :u AND project = :p AND role = :r"
                ),
                {"u": user_id, "p": project, "r": role},
            ).rowcount
            self._keep_an_owner(conn, owners)
        if not removed:
            raise NotFoundError(
                f"user {user_id!r} has no role {role!r} on {project!r}",
                hint="list the project's members to see the grants",
            )
        self._audit_role(
            "auth.role_revoked", project, role, by=by, subject=user_id, grantee={"user_id": user_id}
        )

    def _grants(self, conn: Connection, user_id: str) -> dict[str, frozenset[str]]:
        rows = conn.execute(
            text(
                "SELECT project, role FROM directory_grants WHERE user_id = :u"
                " UNION SELECT g.project, g.role FROM directory_team_grants g"
                " JOIN directory_team_members m ON m.team_id = g.team_id WHERE m.user_id = :u"
            ),
            {"u": user_id},
        ).all()
        merged: dict[str, set[str]] = {}
        for project, role in rows:
            merged.setdefault(project, set()).add(role)
        return {project: frozenset(roles) for project, roles in merged.items()}

    def grants_of(self, user_id: str) -> dict[str, frozenset[str]]:
        """Project (or "*") → roles of `user_id`, direct and through teams merged."""
        with self._read("reading grants") as conn:
            return self._grants(conn, user_id)

    def effective_grants(self, user_id: str) -> list[Grant]:
        """Every role `user_id` holds, each with where it comes from (the user, or a team),
        by project and role; NotFoundError for an unknown user."""
        with self._read("reading grants") as conn:
            if (
                conn.execute(
                    text("SELECT 1 FROM directory_users WHERE id = :id"), {"id": user_id}
                ).first()
                is None
            ):
                raise _no_user(user_id)
            rows = conn.execute(
                text(
                    "SELECT project, role, NULL FROM directory_grants WHERE user_id = :u"
                    " UNION SELECT g.project, g.role, t.name FROM directory_team_grants g"
                    " JOIN directory_team_members m ON m.team_id = g.team_id"
                    " JOIN directory_teams t ON t.id = g.team_id WHERE m.user_id = :u"
                ),
                {"u": user_id},
            ).all()
        found = [Grant(project=r[0], role=r[1], team=r[2]) for r in rows]
        return sorted(found, key=lambda g: (g.project, g.role, g.team or ""))

    def members(self, project: str) -> list[Member]:
        """Users with a role on `project` (directly or through a team), by name."""
        with self._tx("listing members") as conn:
            self._require_target(conn, project)
            rows = conn.execute(
                text(
                    "SELECT user_id, role, 1 FROM directory_grants WHERE project = :p"
                    " UNION SELECT m.user_id, g.role, 0 FROM directory_team_grants g"
                    " JOIN directory_team_members m ON m.team_id = g.team_id"
                    " WHERE g.project = :p"
                ),
                {"p": project},
            ).all()
            roles: dict[str, set[str]] = {}
            direct: dict[str, set[str]] = {}
            for user_id, role, is_direct in rows:
                roles.setdefault(user_id, set()).add(role)
                if is_direct:
                    direct.setdefault(user_id, set()).add(role)
            users = [
                self._user(r)
                for r in conn.execute(
                    text(
                        f"SELECT {_USER_COLUMNS} FROM directory_users WHERE id IN"
                        " (SELECT user_id FROM directory_grants WHERE project = :p"
                        " UNION SELECT m.user_id FROM directory_team_grants g"
                        " JOIN directory_team_members m ON m.team_id = g.team_id"
                        " WHERE g.project = :p) ORDER BY name, id"
                    ),
                    {"p": project},
                ).all()
            ]
        return [
            Member(
                user=u,
                roles=frozenset(roles[u.id]),
                direct_roles=frozenset(direct.get(u.id, set())),
            )
            for u in users
        ]

    # -- teams ------------------------------------------------------------------------

    def create_team(self, name: str, *, by: Principal | None = None) -> Team:
        """A new team; ConflictError if the name is taken."""
        clean = _clean_name(name, "a team name")
        team = Team(id=_new_id("team"), name=clean, created_at=self._now())
        self._insert(
            "creating a team",
            "INSERT INTO directory_teams (id, name, created_at) VALUES (:id, :n, :t)",
            {"id": team.id, "n": clean, "t": self._t(team.created_at)},
            f"team {clean!r} already exists",
            "choose another name",
        )
        self._audit("auth.team_created", None, by=by, subject=team.id, refs={"team": clean})
        return team

    def get_team(self, name: str) -> Team:
        """The team called `name` (or with id `name`); NotFoundError if none."""
        row = self._one(
            "reading a team",
            "SELECT id, name, created_at FROM directory_teams WHERE name = :n OR id = :n",
            {"n": name},
            NotFoundError(f"no team {name!r}", hint="create the team first"),
        )
        return Team(id=row[0], name=row[1], created_at=self._dt(row[2]))

    def list_teams(self) -> list[Team]:
        """Every team, by name."""
        rows = self._all(
            "listing teams", "SELECT id, name, created_at FROM directory_teams ORDER BY name"
        )
        return [Team(id=r[0], name=r[1], created_at=self._dt(r[2])) for r in rows]

    def team_members(self, team: str) -> list[User]:
        """The users in `team` (name or id), by name; NotFoundError if no such team."""
        found = self.get_team(team)
        rows = self._all(
            "listing team members",
            f"SELECT {_USER_COLUMNS} FROM directory_users WHERE id IN"
            " (SELECT user_id FROM directory_team_members WHERE team_id = :t) ORDER BY name, id",
            {"t": found.id},
        )
        return [self._user(r) for r in rows]

    def team_grants(self, *, team: str | None = None, project: str | None = None) -> list[Grant]:
        """Roles granted to teams — to `team` (name or id) and/or on `project` when given —
        by project, team and role."""
        where = []
        params: dict[str, Any] = {}
        if team is not None:
            where.append("g.team_id = :t")
            params["t"] = self.get_team(team).id
        if project is not None:
            where.append("g.project = :p")
            params["p"] = project
        rows = self._all(
            "listing team roles",
            "SELECT g.project, g.role, t.name FROM directory_team_grants g"
            " JOIN directory_teams t ON t.id = g.team_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY g.project, t.name, g.role",
            params,
        )
        return [Grant(project=r[0], role=r[1], team=r[2]) for r in rows]

    def add_member(self, team: str, user_id: str, *, by: Principal | None = None) -> None:
        """Put `user_id` in `team` (name or id). Idempotent."""
        found = self.get_team(team)
        try:
            with self._tx("adding a team member") as conn:
                self._require_live(conn, user_id)
                added = conn.execute(
                    text(
                        "INSERT INTO directory_team_members (team_id, user_id)"
                        " VALUES (:t, :u) ON CONFLICT DO NOTHING"
                    ),
                    {"t": found.id, "u": user_id},
                ).rowcount
        except IntegrityError:
            raise _no_user(user_id) from None
        if added:
            self._audit(
                "auth.team_member_added",
                None,
                by=by,
                subject=user_id,
                refs={"team": found.name, "user_id": user_id},
            )

    def remove_member(self, team: str, user_id: str, *, by: Principal | None = None) -> bool:
        """Take `user_id` out of `team`; False if they were not in it. ConflictError if
        that would leave the instance without an owner."""
        found = self.get_team(team)
        with self._tx("removing a team member") as conn:
            owners = self._owners(conn, lock=True)
            removed = conn.execute(
                text("DELETE FROM directory_team_members WHERE team_id = :t AND user_id = :u"),
                {"t": found.id, "u": user_id},
            ).rowcount
            self._keep_an_owner(conn, owners)
        if removed:
            self._audit(
                "auth.team_member_removed",
                None,
                by=by,
                subject=user_id,
                refs={"team": found.name, "user_id": user_id},
            )
        return bool(removed)

    def rename_team(self, team: str, name: str, *, by: Principal | None = None) -> Team:
        """Give `team` a new name (its id, members and roles stay); ConflictError if taken."""
        found = self.get_team(team)
        clean = _clean_name(name, "a team name")
        if clean == found.name:
            return found
        try:
            with self._tx("renaming a team") as conn:
                conn.execute(
                    text("UPDATE directory_teams SET name = :n WHERE id = :id"),
                    {"n": clean, "id": found.id},
                )
        except IntegrityError:
            raise ConflictError(
                f"team {clean!r} already exists", hint="choose another name"
            ) from None
        self._audit(
            "auth.team_renamed",
            None,
            by=by,
            subject=found.id,
            refs={"team": clean, "old_name": found.name},
        )
        return Team(id=found.id, name=clean, created_at=found.created_at)

    def delete_team(self, team: str, *, by: Principal | None = None) -> None:
        """Remove `team`, its memberships and its roles (each audited as revoked);
        ConflictError if that would leave the instance without an owner."""
        found = self.get_team(team)
        with self._tx("deleting a team") as conn:
            owners = self._owners(conn, lock=True)
            roles = conn.execute(
                text(
                    "DELETE FROM directory_team_grants WHERE team_id = :t RETURNING project, role"
                ),
                {"t": found.id},
            ).all()
            conn.execute(
                text("DELETE FROM directory_team_members WHERE team_id = :t"), {"t": found.id}
            )
            conn.execute(text("DELETE FROM directory_teams WHERE id = :t"), {"t": found.id})
            self._keep_an_owner(conn, owners)
        for project, role in sorted((str(r[0]), str(r[1])) for r in roles):
            self._audit_role(
                "auth.role_revoked",
                project,
                role,
                by=by,
                subject=found.id,
                grantee={"team": found.name, "reason": "team deleted"},
            )
        self._audit("auth.team_deleted", None, by=by, subject=found.id, refs={"team": found.name})

    def grant_team(
        self, team: str, project: str, role: str, *, by: Principal | None = None
    ) -> None:
        """Give every member of `team` the `role` on `project`. Idempotent."""
        validate_role(role)
        found = self.get_team(team)
        with self._tx("granting a team role") as conn:
            self._require_target(conn, project)
            added = conn.execute(
                text(
                    "INSERT INTO directory_team_grants (team_id, project, role, created_at)"
                    " VALUES (:tm, :p, :r, :t) ON CONFLICT DO NOTHING"
                ),
                {"tm": found.id, "p": project, "r": role, "t": self._t(self._now())},
            ).rowcount
        if added:
            self._audit_role(
                "auth.role_granted",
                project,
                role,
                by=by,
                subject=found.id,
                grantee={"team": found.name},
            )

    def revoke_team(
        self, team: str, project: str, role: str, *, by: Principal | None = None
    ) -> None:
        """Take a team's `role` on `project` away; NotFoundError if it was not granted,
        ConflictError if it would leave the instance without an owner."""
        validate_role(role)
        found = self.get_team(team)
        with self._tx("revoking a team role") as conn:
            owners = self._owners_if(conn, project, role)
            removed = conn.execute(
                text(
                    "DELETE FROM directory_team_grants"
                    " WHERE team_id = :tm AND project = :p AND role = :r"
                ),
                {"tm": found.id, "p": project, "r": role},
            ).rowcount
            self._keep_an_owner(conn, owners)
        if not removed:
            raise NotFoundError(f"team {found.name!r} has no role {role!r} on {project!r}")
        self._audit_role(
            "auth.role_revoked",
            project,
            role,
            by=by,
            subject=found.id,
            grantee={"team": found.name},
        )

    # -- API keys ---------------------------------------------------------------------

    def _key(self, row: Any) -> ApiKey:
        scopes = None if row[4] is None else frozenset(json.loads(row[4]))
        return ApiKey(
            id=row[0],
            user_id=row[1],
            name=row[2],
            prefix=row[3],
            scopes=scopes,
            created_at=self._dt(row[5]),
            expires_at=self._dt_opt(row[6]),
            revoked_at=self._dt_opt(row[7]),
            last_used_at=self._dt_opt(row[8]),
            rotated_from=row[9],
        )

    def _insert_key(
        self,
        conn: Connection,
        user_id: str,
        name: str,
        scopes: frozenset[str] | None,
        expires_at: datetime | None,
        rotated_from: str | None,
        now: datetime,
    ) -> tuple[ApiKey, str]:
        # A prefix clash (1 in 36^8 per pair) is retried inside the same transaction
        # through a savepoint, so the unique constraint is the only arbiter.
        for _attempt in range(5):
            generated = generate_key()
            key = ApiKey(
                id=_new_id("key"),
                user_id=user_id,
                name=name,
                prefix=generated.prefix,
                scopes=scopes,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
                last_used_at=None,
                rotated_from=rotated_from,
            )
            try:
                with conn.begin_nested():
                    conn.execute(
                        text(
                            "INSERT INTO directory_api_keys (id, user_id, name, prefix,"
                            " key_hash, scopes, created_at, expires_at, rotated_from)"
                            " VALUES (:id, :u, :n, :p, :h, :s, :t, :x, :r)"
                        ),
                        {
                            "id": key.id,
                            "u": user_id,
                            "n": name,
                            "p": key.prefix,
                            "h": generated.digest,
                            "s": None if scopes is None else json.dumps(sorted(scopes)),
                            "t": self._t(now),
                            "x": self._t(expires_at),
                            "r": rotated_from,
                        },
                    )
            except IntegrityError:
                continue
            return key, generated.secret
        raise ConflictError("could not allocate a unique API key prefix", hint="try again")

    def create_key(
        self,
        user_id: str,
        *,
        name: str,
        scopes: Iterable[str] | None = None,
        expires_at: datetime | None = None,
        by: Principal | None = None,
    ) -> tuple[ApiKey, str]:
        """A new API key for `user_id`: (its record, the secret — shown once, never again)."""
        clean_name = _clean_name(name, "a key name")
        clean_scopes = validate_scopes(None if scopes is None else list(scopes))
        now = self._now()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InputError("a key's expiry must carry a time zone")
            if expires_at <= now:
                raise InputError("a key's expiry must be in the future")
            if expires_at >= _LATEST_EXPIRY:
                raise InputError(
                    f"a key's expiry must be before {_LATEST_EXPIRY.date()}",
                    hint="leave the expiry out for a key that does not expire",
                )
        with self._tx("creating an API key") as conn:
            user = conn.execute(
                text("SELECT disabled, kind FROM directory_users WHERE id = :id"), {"id": user_id}
            ).first()
            if user is None:
                raise _no_user(user_id)
            if user[0]:
                raise InputError(f"user {user_id!r} is disabled", hint="enable the user first")
            clean_scopes = _mintable(by, user_id, user[1], clean_scopes)
            expires_at = self._mintable_expiry(conn, by, expires_at, now)
            key, secret = self._insert_key(
                conn, user_id, clean_name, clean_scopes, expires_at, None, now
            )
        self._audit(
            "auth.key_created",
            None,
            by=by,
            subject=key.id,
            refs=self._key_refs(key),
        )
        return key, secret

    def _expiry_limit(
        self, conn: Connection, by: Principal | None, now: datetime
    ) -> tuple[datetime, str] | None:
        """The latest expiry a key made by `by` may have, and why; None: no limit.

        A key never outlives the key that made it; a key made in a session lives at most
        the session policy's key_lifetime. `by` None is the administrator's path.
        """
        if by is None:
            return None
        if by.via == "key" and by.key_id:
            row = conn.execute(
                text("SELECT expires_at FROM directory_api_keys WHERE id = :id"),
                {"id": by.key_id},
            ).first()
            until = None if row is None else self._dt_opt(row[0])
            return None if until is None else (until, "the key creating it")
        if by.via == "session":
            days = self._sessions.key_lifetime.days
            return now + self._sessions.key_lifetime, f"the {days}-day limit of a sign-in session"
        return None

    def _mintable_expiry(
        self, conn: Connection, by: Principal | None, wanted: datetime | None, now: datetime
    ) -> datetime | None:
        """The expiry of a new key `by` makes: `wanted`, or the maker's limit when none is
        asked; PermissionDeniedError when `wanted` is later than the limit."""
        limit = self._expiry_limit(conn, by, now)
        if limit is None:
            return wanted
        until, why = limit
        if wanted is None:
            return until
        if wanted > until:
            raise PermissionDeniedError(
                f"a key cannot outlive {why}: it must expire by {_iso(until)}",
                hint="ask for an earlier expiry, or leave it out to get the latest allowed",
            )
        return wanted

    def _key_refs(self, key: ApiKey) -> dict[str, Any]:
        refs: dict[str, Any] = {
            "key_id": key.id,
            "user_id": key.user_id,
            "name": key.name,
            "prefix": key.prefix,
        }
        if key.scopes is not None:
            refs["scopes"] = sorted(key.scopes)
        if key.expires_at is not None:
            refs["expires_at"] = _iso(key.expires_at)
        return refs

    def rotate_key(
        self, key_id: str, *, overlap: timedelta, by: Principal | None = None
    ) -> tuple[ApiKey, str]:
        """A replacement key with the same owner, name and scopes; the old one keeps
        working until now + `overlap` (sooner if it expired sooner), so deployments can
        switch over without downtime."""
        if overlap < timedelta(0):
            raise InputError("the overlap of a key rotation cannot be negative")
        now = self._now()
        with self._tx("rotating an API key") as conn:
            row = conn.execute(
                text(f"SELECT {_KEY_COLUMNS} FROM directory_api_keys WHERE id = :id{self._lock()}"),
                {"id": key_id},
            ).first()
            if row is None:
                raise _no_key(key_id)
            old = self._key(row)
            kind = conn.execute(
                text("SELECT kind FROM directory_users WHERE id = :id"), {"id": old.user_id}
            ).scalar_one()
            if _mintable(by, old.user_id, kind, old.scopes) != old.scopes:
                raise PermissionDeniedError(
                    f"API key {key_id!r} reaches beyond the key you are using",
                    hint="rotate it with a key that has at least its scopes",
                )
            if not old.active(now):
                raise InputError(
                    f"API key {key_id!r} is revoked or expired and cannot be rotated",
                    hint="create a new key instead",
                )
            new_expiry = None
            if old.expires_at is not None:
                new_expiry = now + (old.expires_at - old.created_at)
            limit = self._expiry_limit(conn, by, now)
            if limit is not None and (new_expiry is None or new_expiry > limit[0]):
                new_expiry = limit[0]  # the replacement never outlives its maker either
            old_until = now + overlap
            if old.expires_at is not None and old.expires_at < old_until:
                old_until = old.expires_at
            conn.execute(
                text("UPDATE directory_api_keys SET expires_at = :x WHERE id = :id"),
                {"x": self._t(old_until), "id": key_id},
            )
            key, secret = self._insert_key(
                conn, old.user_id, old.name, old.scopes, new_expiry, old.id, now
            )
        refs = self._key_refs(key)
        refs["old_key_id"] = old.id
        refs["old_key_expires_at"] = _iso(old_until)
        self._audit("auth.key_rotated", None, by=by, subject=key.id, refs=refs)
        return key, secret

    def revoke_key(self, key_id: str, *, by: Principal | None = None) -> None:
        """Stop a key from working, at once. Revoking a revoked key changes nothing."""
        with self._tx("revoking an API key") as conn:
            row = conn.execute(
                text(f"SELECT {_KEY_COLUMNS} FROM directory_api_keys WHERE id = :id"),
                {"id": key_id},
            ).first()
            if row is None:
                raise _no_key(key_id)
            changed = conn.execute(
                text(
                    "UPDATE directory_api_keys SET revoked_at = :t"
                    " WHERE id = :id AND revoked_at IS NULL"
                ),
                {"t": self._t(self._now()), "id": key_id},
            ).rowcount
        if changed:
            self._audit(
                "auth.key_revoked", None, by=by, subject=key_id, refs=self._key_refs(self._key(row))
            )

    def get_key(self, key_id: str) -> ApiKey:
        """The key `key_id` (never its secret); NotFoundError if none."""
        sql = f"SELECT {_KEY_COLUMNS} FROM directory_api_keys WHERE id = :id"
        return self._key(self._one("reading an API key", sql, {"id": key_id}, _no_key(key_id)))

    def list_keys(self, user_id: str) -> list[ApiKey]:
        """Every key of `user_id`, active or not, oldest first."""
        rows = self._all(
            "listing API keys",
            f"SELECT {_KEY_COLUMNS} FROM directory_api_keys WHERE user_id = :u"
            " ORDER BY created_at, id",
            {"u": user_id},
        )
        return [self._key(r) for r in rows]

    def principal_for_key(self, secret: str) -> Principal:
        """Who presents API key `secret`; AuthError if it is unknown, expired, revoked or
        its user is disabled (the message does not say which)."""
        refused = AuthError("the API key is not valid", hint="check the key, or create a new one")
        prefix = parse_key(secret) if isinstance(secret, str) else None
        if prefix is None:
            raise refused
        now = self._now()
        with self._read("checking an API key") as conn:
            row = conn.execute(
                text(
                    "SELECT k.id, k.key_hash, k.scopes, k.expires_at, k.revoked_at,"
                    " u.id, u.email, u.name, u.kind, u.disabled, k.last_used_at"
                    " FROM directory_api_keys k JOIN directory_users u ON u.id = k.user_id"
                    " WHERE k.prefix = :p"
                ),
                {"p": prefix},
            ).first()
            if row is None or not key_matches(secret, row[1]):
                raise refused
            expires_at = self._dt_opt(row[3])
            if row[4] is not None or (expires_at is not None and now >= expires_at) or row[9]:
                raise refused
            grants = self._grants(conn, row[5])
        last_used = self._dt_opt(row[10])
        # Touch at most every touch_interval: a write (and fsync) on every request would
        # compete with the ledger's appends for the database.
        if last_used is None or now - last_used >= self._sessions.touch_interval:
            with self._tx("noting an API key's use") as conn:
                conn.execute(
                    text("UPDATE directory_api_keys SET last_used_at = :t WHERE id = :id"),
                    {"t": self._t(now), "id": row[0]},
                )
        return Principal(
            user_id=row[5],
            email=row[6],
            name=row[7],
            kind=row[8],
            grants=MappingProxyType(grants),
            scopes=None if row[2] is None else frozenset(json.loads(row[2])),
            via="key",
            key_id=row[0],
        )

    def principal_for_user(
        self, user_id: str, *, session_id: str | None = None, via: PrincipalVia = "session"
    ) -> Principal:
        """A principal for `user_id` with its current grants (for tools that act on behalf
        of a known user; `via` says how it was named); AuthError if the user is disabled."""
        user = self.get_user(user_id)
        if user.disabled:
            raise AuthError("this account is disabled", hint="ask an administrator")
        return Principal(
            user_id=user.id,
            email=user.email,
            name=user.name,
            kind=user.kind,
            grants=MappingProxyType(self.grants_of(user.id)),
            scopes=None,
            via=via,
            session_id=session_id,
        )

    # -- passwords and throttling -------------------------------------------------------

    def _attempt_times(
        self, conn: Connection, account: str, client: str, now: datetime
    ) -> tuple[list[datetime], list[datetime]]:
        """(this account's from `client`, anyone's from `client`) attempt times that count."""
        rows = conn.execute(
            text("SELECT account, at FROM directory_login_failures WHERE client = :c AND at > :s"),
            {"c": client, "s": self._t(now - self._throttle.lookback)},
        ).all()
        times = [(r[0], self._dt(r[1])) for r in rows]
        return [t for a, t in times if a == account], [t for _, t in times]

    def locked_until(self, email: str, *, client: str) -> datetime | None:
        """When sign-in for `email` from `client` is possible again, or None if it is now."""
        account = email.strip().lower() if isinstance(email, str) else ""
        now = self._now()
        with self._read("checking sign-in throttling") as conn:
            pair, anyone = self._attempt_times(conn, account, client_key(client), now)
        return self._throttle.wait_until(pair, anyone, now)

    def _reserve_attempt(self, account: str, client: str) -> int:
        """Count a sign-in attempt before its password is evaluated; LoginThrottledError
        when the throttle says to wait.

        The check and the count are one transaction under a lock per address (BEGIN
        IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so parallel attempts see
        each other's rows and at most the free number of them reaches the password hash.
        The row stays as a failure unless the attempt succeeds; the id names it.
        """
        key = client_key(client)
        with self._tx("checking sign-in throttling") as conn:
            if self._dialect == "postgres":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), hashtext(:k))"),
                    {"ns": _THROTTLE_LOCK, "k": key},
                )
            now = self._now()  # under the lock: no attempt counted after it is older
            pair, anyone = self._attempt_times(conn, account, key, now)
            until = self._throttle.wait_until(pair, anyone, now)
            if until is None:
                # Attempts too old to matter: keep the table small.
                conn.execute(
                    text("DELETE FROM directory_login_failures WHERE at <= :old"),
                    {"old": self._t(now - self._throttle.lookback)},
                )
                reserved = conn.execute(
                    text(
                        "INSERT INTO directory_login_failures (account, client, at)"
                        " VALUES (:a, :c, :t) RETURNING id"
                    ),
                    {"a": account, "c": key, "t": self._t(now)},
                ).scalar_one()
                return int(reserved)
        seconds = max(1, math.ceil((until - now).total_seconds()))
        self._login_failed(account, client, "throttled", retry_after=until)
        raise LoginThrottledError(
            "too many failed sign-in attempts",
            hint=f"try again after {_iso(until)} (in {seconds} s)",
            until=until,
            retry_after=seconds,
        )

    def check_password(self, email: str, password: str, *, client: str) -> Principal:
        """Who signs in with `email` and `password` from address `client`.

        Raises LoginThrottledError (an AuthError) while the throttle says to wait, before
        any password is evaluated; AuthError for a wrong email or password (without
        saying which) or a disabled account. Every failure is audited as
        auth.login_failed, without the password; a success clears this account's
        failures from this address and upgrades an outdated hash.
        """
        account = email.strip().lower() if isinstance(email, str) else ""
        client = str(client or "unknown")[:200]
        attempt = self._reserve_attempt(account, client)
        with self._read("reading a user") as conn:
            row = conn.execute(
                text("SELECT id, password_hash, disabled FROM directory_users WHERE email = :e"),
                {"e": account},
            ).first()
        stored = None if row is None else row[1]
        ok = self._passwords.verify(stored, password) if isinstance(password, str) else False
        if not ok or row is None or row[2]:
            reason = "bad_credentials" if not ok or row is None else "disabled"
            self._login_failed(account, client, reason, user_id=None if row is None else row[0])
            raise AuthError(
                "wrong email or password, or the account is disabled",
                hint="check them and try again; ask an administrator to reset a password",
            )
        user_id = str(row[0])
        with self._tx("recording a sign-in") as conn:
            if stored is not None and self._passwords.needs_rehash(stored):
                conn.execute(
                    text(
                        "UPDATE directory_users SET password_hash = :pw"
                        " WHERE id = :id AND password_hash = :old"
                    ),
                    {"pw": self._passwords.hash(password), "id": user_id, "old": stored},
                )
            # This attempt and the failures before it; attempts still in flight stay.
            conn.execute(
                text(
                    "DELETE FROM directory_login_failures"
                    " WHERE account = :a AND client = :c AND id <= :id"
                ),
                {"a": account, "c": client_key(client), "id": attempt},
            )
        return self.principal_for_user(user_id)

    def _login_failed(
        self,
        account: str,
        client: str,
        reason: str,
        *,
        user_id: str | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        self._audit(
            "auth.login_failed",
            None,
            by=None,
            actor=_ANONYMOUS,
            subject=account or None,
            refs={
                "email": account or None,
                "user_id": user_id,
                "client": client,
                "reason": reason,
                "retry_after": None if retry_after is None else _iso(retry_after),
            },
        )

    # -- sessions ---------------------------------------------------------------------

    def _session(self, row: Any) -> Session:
        return Session(
            id=row[0],
            user_id=row[1],
            via=row[2],
            created_at=self._dt(row[3]),
            last_seen_at=self._dt(row[4]),
            expires_at=self._dt(row[5]),
            auth_time=self._dt(row[6]),
            reauthenticated_at=self._dt_opt(row[7]),
            signed_before=bool(row[8]),
            ended_at=self._dt_opt(row[9]),
        )

    def create_session(self, user_id: str, *, via: str) -> tuple[Session, str, str]:
        """A new session after a successful sign-in: (record, cookie token, CSRF token).

        Audited as auth.login. The token and CSRF token are returned once; only the
        token's hash is kept.
        """
        if not isinstance(via, str) or not _VIA_RE.match(via):
            raise InputError(f"unknown sign-in method {via!r}", hint="use 'password' or 'oidc'")
        user = self.get_user(user_id)
        if user.disabled:
            raise AuthError("this account is disabled", hint="ask an administrator")
        now = self._now()
        token = new_token()
        session = Session(
            id=_new_id("ses"),
            user_id=user_id,
            via=via,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._sessions.lifetime,
            auth_time=now,
            reauthenticated_at=None,
            signed_before=False,
        )
        with self._tx("creating a session") as conn:
            conn.execute(
                text(
                    "INSERT INTO directory_sessions (id, user_id, token_hash, via, created_at,"
                    " last_seen_at, expires_at, auth_time, signed_before)"
                    " VALUES (:id, :u, :h, :via, :t, :t, :x, :t, :f)"
                ),
                {
                    "id": session.id,
                    "u": user_id,
                    "h": hash_token(token),
                    "via": via,
                    "t": self._t(now),
                    "x": self._t(session.expires_at),
                    "f": False,
                },
            )
        self._audit(
            "auth.login",
            None,
            by=None,
            actor={
                "type": "human" if user.kind == "user" else "service",
                "id": user.id,
                "name": user.name,
            },
            subject=user.id,
            refs={"user_id": user.id, "session_id": session.id, "method": via},
        )
        return session, token, csrf_for(token)

    def _live_session(self, conn: Connection, token: str, now: datetime) -> Session:
        row = conn.execute(
            text(f"SELECT {_SESSION_COLUMNS} FROM directory_sessions WHERE token_hash = :h"),
            {"h": hash_token(token)},
        ).first()
        if row is None:
            raise AuthError("not signed in", hint=_SIGNIN_HINT)
        session = self._session(row)
        if session.ended_at is not None:
            raise AuthError("this session has ended", hint=_SIGNIN_HINT)
        if now >= session.expires_at:
            raise AuthError("this session has expired", hint=_SIGNIN_HINT)
        if now >= session.last_seen_at + self._sessions.idle_timeout:
            raise AuthError("this session timed out after inactivity", hint=_SIGNIN_HINT)
        return session

    def session_for_token(self, token: str) -> Session:
        """The live session for cookie `token`; AuthError if unknown, ended or expired."""
        if not isinstance(token, str) or not token:
            raise AuthError("not signed in", hint=_SIGNIN_HINT)
        with self._read("reading a session") as conn:
            return self._live_session(conn, token, self._now())

    def principal_for_session(self, token: str) -> Principal:
        """Who holds session cookie `token`; counts as activity for the idle timeout."""
        if not isinstance(token, str) or not token:
            raise AuthError("not signed in", hint=_SIGNIN_HINT)
        now = self._now()
        with self._read("checking a session") as conn:
            session = self._live_session(conn, token, now)
            user = conn.execute(
                text("SELECT email, name, kind, disabled FROM directory_users WHERE id = :id"),
                {"id": session.user_id},
            ).one()
            if user[3]:
                raise AuthError("this account is disabled", hint="ask an administrator")
            grants = self._grants(conn, session.user_id)
        # As for API keys: the check only reads, and the activity touch is its own short
        # write at most every touch_interval, so page views do not queue for the write
        # lock behind the ledger's commits.
        if now - session.last_seen_at >= self._sessions.touch_interval:
            with self._tx("noting a session's activity") as conn:
                conn.execute(
                    text(
                        "UPDATE directory_sessions SET last_seen_at = :t"
                        " WHERE id = :id AND ended_at IS NULL"
                    ),
                    {"t": self._t(now), "id": session.id},
                )
        return Principal(
            user_id=session.user_id,
            email=user[0],
            name=user[1],
            kind=user[2],
            grants=MappingProxyType(grants),
            scopes=None,
            via="session",
            session_id=session.id,
        )

    def get_session(self, session_id: str) -> Session:
        """The session `session_id`, live or not; NotFoundError if none."""
        sql = f"SELECT {_SESSION_COLUMNS} FROM directory_sessions WHERE id = :id"
        absent = NotFoundError(f"no session {session_id!r}")
        return self._session(self._one("reading a session", sql, {"id": session_id}, absent))

    def csrf_token(self, token: str) -> str:
        """The CSRF token of the live session `token` (for pages rendered after sign-in)."""
        self.session_for_token(token)
        return csrf_for(token)

    def verify_csrf(self, token: str, csrf_token: str) -> bool:
        """Whether `csrf_token` belongs to session `token` (constant-time)."""
        if not isinstance(token, str) or not isinstance(csrf_token, str) or not token:
            return False
        return csrf_matches(token, csrf_token)

    def end_session(self, token: str, *, method: str | None = None) -> None:
        """Sign out: the session stops working at once. Audited as auth.logout
        (with `method`, e.g. "saml" for single logout, in its refs)."""
        if not isinstance(token, str) or not token:
            return
        now = self._now()
        with self._tx("ending a session") as conn:
            row = conn.execute(
                text(
                    "UPDATE directory_sessions SET ended_at = :t"
                    " WHERE token_hash = :h AND ended_at IS NULL RETURNING id, user_id"
                ),
                {"t": self._t(now), "h": hash_token(token)},
            ).first()
        if row is not None:
            self._audit(
                "auth.logout",
                None,
                by=None,
                actor={"type": "human", "id": row[1]},
                subject=row[1],
                refs={
                    "user_id": row[1],
                    "session_id": row[0],
                    **({"method": method} if method else {}),
                },
            )

    def _touch_session(self, session_id: str, assignment: str, params: dict[str, Any]) -> None:
        with self._tx("updating a session") as conn:
            done = conn.execute(
                text(f"UPDATE directory_sessions SET {assignment} WHERE id = :id"),
                {**params, "id": session_id},
            ).rowcount
        if not done:
            raise NotFoundError(f"no session {session_id!r}")

    def mark_reauthenticated(self, session_id: str) -> None:
        """Record that the user just re-entered credentials in this session."""
        now = self._t(self._now())
        self._touch_session(session_id, "reauthenticated_at = :t, last_seen_at = :t", {"t": now})

    def mark_signed(self, session_id: str) -> None:
        """Record that an electronic signature was applied in this session."""
        self._touch_session(session_id, "signed_before = :on", {"on": True})

    # -- OIDC login state ---------------------------------------------------------------

    def put_oidc_state(self, state: str, verifier: str, nonce: str, redirect: str) -> None:
        """Remember an OIDC login between redirect and callback (single use, 10 min)."""
        now = self._now()
        try:
            with self._tx("saving OIDC state") as conn:
                conn.execute(
                    text("DELETE FROM directory_oidc_states WHERE created_at < :old"),
                    {"old": self._t(now - OIDC_STATE_TTL)},
                )
                conn.execute(
                    text(
                        "INSERT INTO directory_oidc_states"
                        " (state_hash, verifier, nonce, redirect, created_at)"
                        " VALUES (:h, :v, :n, :r, :t)"
                    ),
                    {
                        "h": hashlib.sha256(state.encode()).hexdigest(),
                        "v": verifier,
                        "n": nonce,
                        "r": redirect,
                        "t": self._t(now),
                    },
                )
        except IntegrityError:
            raise ConflictError(
                "this sign-in state was already used", hint="start the sign-in again"
            ) from None

    def take_oidc_state(self, state: str) -> OidcState:
        """The OIDC login remembered for `state`, removed so it cannot be replayed;
        AuthError when unknown, used or older than 10 minutes."""
        now = self._now()
        with self._tx("reading OIDC state") as conn:
            row = conn.execute(
                text(
                    "DELETE FROM directory_oidc_states WHERE state_hash = :h"
                    " RETURNING verifier, nonce, redirect, created_at"
                ),
                {"h": hashlib.sha256(str(state).encode()).hexdigest()},
            ).first()
        if row is None or now - self._dt(row[3]) > OIDC_STATE_TTL:
            raise AuthError(
                "the sign-in attempt is unknown or expired", hint="start the sign-in again"
            )
        return OidcState(
            state=state, verifier=row[0], nonce=row[1], redirect=row[2], created_at=self._dt(row[3])
        )

    # -- SAML requests, assertions and IdP sessions --------------------------------------

    def put_saml_request(self, state: str, request_id: str, kind: str, redirect: str) -> None:
        """Remember a SAML request by its RelayState (single use, 10 min)."""
        if kind not in ("login", "reauth", "logout"):
            raise InputError(f"unknown SAML request kind {kind!r}")
        now = self._now()
        try:
            with self._tx("saving a SAML request") as conn:
                conn.execute(
                    text("DELETE FROM directory_saml_requests WHERE created_at < :old"),
                    {"old": self._t(now - OIDC_STATE_TTL)},
                )
                conn.execute(
                    text(
                        "INSERT INTO directory_saml_requests"
                        " (state_hash, request_id, kind, redirect, created_at)"
                        " VALUES (:h, :r, :k, :d, :t)"
                    ),
                    {
                        "h": hashlib.sha256(state.encode()).hexdigest(),
                        "r": request_id,
                        "k": kind,
                        "d": redirect,
                        "t": self._t(now),
                    },
                )
        except IntegrityError:
            raise ConflictError("this SAML relay state was already used") from None

    def take_saml_request(self, state: str) -> SamlPending:
        """The SAML request remembered for RelayState `state`, removed so it cannot be
        answered twice; AuthError when unknown, used or older than 10 minutes."""
        now = self._now()
        with self._tx("reading a SAML request") as conn:
            row = conn.execute(
                text(
                    "DELETE FROM directory_saml_requests WHERE state_hash = :h"
                    " RETURNING request_id, kind, redirect, created_at"
                ),
                {"h": hashlib.sha256(str(state).encode()).hexdigest()},
            ).first()
        if row is None or now - self._dt(row[3]) > OIDC_STATE_TTL:
            raise AuthError(
                "the sign-in attempt is unknown or expired", hint="start the sign-in again"
            )
        return SamlPending(
            request_id=row[0], kind=row[1], redirect=row[2], created_at=self._dt(row[3])
        )

    def remember_saml_assertion(self, idp: str, assertion_id: str, expires_at: datetime) -> bool:
        """Note that an assertion was accepted; False when its id was seen before (a
        replay). Ids are kept until their assertion expires, then forgotten."""
        now = self._now()
        digest = hashlib.sha256(f"{idp}\n{assertion_id}".encode()).hexdigest()
        try:
            with self._tx("remembering a SAML assertion") as conn:
                conn.execute(
                    text("DELETE FROM directory_saml_assertions WHERE expires_at < :now"),
                    {"now": self._t(now)},
                )
                conn.execute(
                    text(
                        "INSERT INTO directory_saml_assertions (assertion_hash, idp, expires_at)"
                        " VALUES (:h, :i, :x)"
                    ),
                    {"h": digest, "i": idp, "x": self._t(max(expires_at, now))},
                )
        except IntegrityError:
            return False
        return True

    def bind_saml_session(self, ref: SamlSessionRef) -> None:
        """Remember which IdP session (NameID, SessionIndex) a FlowLoom session came from."""
        with self._tx("binding a SAML session") as conn:
            conn.execute(
                text(
                    "INSERT INTO directory_saml_sessions (session_id, idp, name_id,"
                    " name_id_format, name_qualifier, sp_name_qualifier, session_index)"
                    " VALUES (:s, :i, :n, :f, :q, :sq, :x)"
                ),
                {
                    "s": ref.session_id,
                    "i": ref.idp,
                    "n": ref.name_id,
                    "f": ref.name_id_format,
                    "q": ref.name_qualifier,
                    "sq": ref.sp_name_qualifier,
                    "x": ref.session_index,
                },
            )

    def saml_session(self, session_id: str) -> SamlSessionRef | None:
        """The IdP session behind FlowLoom session `session_id`, if it came from SAML."""
        with self._read("reading a SAML session") as conn:
            row = conn.execute(
                text(
                    "SELECT session_id, idp, name_id, name_id_format, name_qualifier,"
                    " sp_name_qualifier, session_index FROM directory_saml_sessions"
                    " WHERE session_id = :s"
                ),
                {"s": session_id},
            ).first()
        return None if row is None else SamlSessionRef(*row)

    def end_saml_sessions(
        self, idp: str, name_id: str, session_indexes: Sequence[str] = ()
    ) -> list[str]:
        """End the live sessions of IdP subject `name_id` (only those of the given
        SessionIndexes, if any): IdP-initiated single logout. Each is audited as
        auth.logout; the ids ended are returned."""
        now = self._now()
        with self._tx("ending SAML sessions") as conn:
            rows = conn.execute(
                text(
                    "SELECT s.id, s.user_id, m.session_index FROM directory_sessions s"
                    " JOIN directory_saml_sessions m ON m.session_id = s.id"
                    " WHERE m.idp = :i AND m.name_id = :n AND s.ended_at IS NULL"
                ),
                {"i": idp, "n": name_id},
            ).all()
            chosen = [r for r in rows if not session_indexes or r[2] in session_indexes]
            for row in chosen:
                conn.execute(
                    text("UPDATE directory_sessions SET ended_at = :t WHERE id = :id"),
                    {"t": self._t(now), "id": row[0]},
                )
        for row in chosen:
            self._audit(
                "auth.logout",
                None,
                by=None,
                actor={"type": "human", "id": row[1]},
                subject=row[1],
                refs={
                    "user_id": row[1],
                    "session_id": row[0],
                    "method": "saml",
                    "initiated_by": "idp",
                },
            )
        return [str(r[0]) for r in chosen]
