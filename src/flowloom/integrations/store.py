"""Integration settings and the outbound queue, in the server's database.

Settings are per project and code host. Their secrets (a token, a GitHub App's private
key, the webhook secret) are sealed by the same vault as the gateway's provider keys
(AES-256-GCM under the installation master key, the project and host as associated
data) and never leave the server except to the code host. The queue keeps each
outbound call until the host confirmed it: a host that is down, or a server restart,
loses nothing. A newer item with the same dedupe key (one check run per pull-request
head, one comment per pull request) supersedes one still pending.

Tables are prefixed ``integration_``; migrations are recorded in
``integration_migrations``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.errors import InputError
from flowloom.store.sqlmigrations import apply_migrations

__all__ = [
    "HOSTS",
    "SECRET_NAMES",
    "IntegrationConfig",
    "IntegrationStore",
    "OutboxItem",
    "Sealer",
    "stamp",
]

HOSTS = ("github", "gitlab", "bitbucket")
SECRET_NAMES: Mapping[str, tuple[str, ...]] = {
    "github": ("token", "private_key", "webhook_secret"),
    "gitlab": ("token", "webhook_secret"),
    "bitbucket": ("token",),
}
_MIGRATION_LOCK = 0x464C4F4D_494E5447  # an arbitrary constant naming "the integration schema"
_MAX_ATTEMPTS = 30


class Sealer(Protocol):
    """Seals and opens secrets at rest (flowloom.gateway.access.vault.ProviderKeyVault)."""

    def seal(self, name: str, secret: str) -> bytes: ...

    def open(self, name: str, blob: bytes) -> str: ...


def stamp(moment: datetime) -> str:
    """A sortable UTC timestamp, as every table here stores it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class IntegrationConfig:
    """One project's settings for one code host; `secrets` holds the opened values."""

    project: str
    kind: str
    settings: Mapping[str, Any]
    secrets: Mapping[str, str] = field(default_factory=dict)
    updated_at: str = ""

    def public(self) -> dict[str, Any]:
        """What may be shown: the settings, and which secrets are set (never their value)."""
        return {
            "project": self.project,
            "kind": self.kind,
            "settings": dict(self.settings),
            "secrets": {name: name in self.secrets for name in SECRET_NAMES[self.kind]},
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class OutboxItem:
    id: int
    project: str
    kind: str
    op: str
    dedupe: str
    body: Mapping[str, Any]
    state: str
    attempts: int
    next_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "op": self.op,
            "dedupe": self.dedupe,
            "state": self.state,
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
        }


_ITEM_COLUMNS = (
    "id, project, kind, op, dedupe, body, state, attempts, next_at, last_error, "
    "created_at, delivered_at"
)


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=int(row[0]),
        project=row[1],
        kind=row[2],
        op=row[3],
        dedupe=row[4],
        body=json.loads(row[5]),
        state=row[6],
        attempts=int(row[7]),
        next_at=row[8],
        last_error=row[9],
        created_at=row[10],
        delivered_at=row[11],
    )


class IntegrationStore:
    """Settings and queue over one SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = sealer
        try:
            apply_migrations(
                engine,
                package="flowloom.integrations",
                schema="integrations",
                table="integration_migrations",
                lock=_MIGRATION_LOCK,
                foreign_hint="point --database at a FlowLoom database or at a new path",
                sqlite_applied_at="TEXT",
            )
        except DBAPIError as exc:
            raise translate(exc, "applying integration migrations") from exc

    @staticmethod
    def _aad(project: str, kind: str) -> str:
        return f"integration:{kind}:{project}"

    # -- settings ---------------------------------------------------------------------

    def get(self, project: str, kind: str) -> IntegrationConfig | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT settings, sealed, updated_at FROM integration_configs "
                    "WHERE project = :p AND kind = :k"
                ),
                {"p": project, "k": kind},
            ).first()
        if row is None:
            return None
        secrets: dict[str, str] = {}
        if row[1] is not None:
            secrets = json.loads(self._sealer.open(self._aad(project, kind), bytes(row[1])))
        return IntegrationConfig(project, kind, json.loads(row[0]), secrets, row[2])

    def all(self, kind: str) -> list[IntegrationConfig]:
        """Every project's settings for `kind` (the webhook receivers look the sender up)."""
        with self._engine.connect() as conn:
            projects = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT project FROM integration_configs WHERE kind = :k ORDER BY project"
                    ),
                    {"k": kind},
                )
            ]
        found = [self.get(p, kind) for p in projects]
        return [c for c in found if c is not None]

    def of_project(self, project: str) -> list[IntegrationConfig]:
        return [c for c in (self.get(project, k) for k in HOSTS) if c is not None]

    def put(
        self,
        project: str,
        kind: str,
        settings: Mapping[str, Any],
        secrets: Mapping[str, str | None],
        *,
        now: datetime,
    ) -> tuple[IntegrationConfig, list[str]]:
        """Set `settings` (replacing them) and the named `secrets` (None removes one;
        unnamed ones are kept). Returns the new settings and the secret names changed."""
        if kind not in HOSTS:
            raise InputError(f"unknown integration {kind!r}", hint="use " + ", ".join(HOSTS))
        unknown = sorted(set(secrets) - set(SECRET_NAMES[kind]))
        if unknown:
            raise InputError(
                f"{kind} has no secret {', '.join(unknown)}",
                hint="its secrets are " + ", ".join(SECRET_NAMES[kind]),
            )
        existing = self.get(project, kind)
        merged = dict(existing.secrets) if existing else {}
        changed: list[str] = []
        for name, value in secrets.items():
            if value is None:
                if merged.pop(name, None) is not None:
                    changed.append(name)
            elif merged.get(name) != value:
                merged[name] = value
                changed.append(name)
        sealed = (
            self._sealer.seal(self._aad(project, kind), json.dumps(merged, sort_keys=True))
            if merged
            else None
        )
        params = {
            "p": project,
            "k": kind,
            "s": json.dumps(dict(settings), sort_keys=True),
            "x": sealed,
            "u": stamp(now),
        }
        with self._engine.begin() as conn:
            conn.execute(
                text("DELETE FROM integration_configs WHERE project = :p AND kind = :k"),
                {"p": project, "k": kind},
            )
            conn.execute(
                text(
                    "INSERT INTO integration_configs (project, kind, settings, sealed, updated_at)"
                    " VALUES (:p, :k, :s, :x, :u)"
                ),
                params,
            )
        return IntegrationConfig(project, kind, dict(settings), merged, stamp(now)), sorted(changed)

    def remove(self, project: str, kind: str) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                text("DELETE FROM integration_configs WHERE project = :p AND kind = :k"),
                {"p": project, "k": kind},
            )
        return bool(result.rowcount)

    def first_time(self, kind: str, delivery: str, *, now: datetime) -> bool:
        """Note a webhook delivery id; False when it was noted before (a replay)."""
        with self._engine.begin() as conn:
            seen = conn.execute(
                text("SELECT 1 FROM integration_seen WHERE kind = :k AND delivery = :d"),
                {"k": kind, "d": delivery},
            ).first()
            if seen is not None:
                return False
            conn.execute(
                text(
                    "INSERT INTO integration_seen (kind, delivery, received_at) "
                    "VALUES (:k, :d, :n) ON CONFLICT DO NOTHING"
                ),
                {"k": kind, "d": delivery, "n": stamp(now)},
            )
        return True

    def forget(self, kind: str, delivery: str) -> None:
        """Un-note a delivery whose recording failed, so GitHub's redelivery (same id)
        is taken."""
        with self._engine.begin() as conn:
            conn.execute(
                text("DELETE FROM integration_seen WHERE kind = :k AND delivery = :d"),
                {"k": kind, "d": delivery},
            )

    # -- the queue --------------------------------------------------------------------

    def enqueue(
        self,
        project: str,
        kind: str,
        op: str,
        dedupe: str,
        body: Mapping[str, Any],
        *,
        now: datetime,
    ) -> int:
        """Queue one call; an item still pending under the same dedupe key is superseded."""
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE integration_outbox SET state = 'superseded' WHERE project = :p "
                    "AND kind = :k AND dedupe = :d AND state = 'pending'"
                ),
                {"p": project, "k": kind, "d": dedupe},
            )
            row = conn.execute(
                text(
                    "INSERT INTO integration_outbox (project, kind, op, dedupe, body, state, "
                    "attempts, next_at, created_at) VALUES (:p, :k, :o, :d, :b, 'pending', 0, "
                    ":n, :n) RETURNING id"
                ),
                {
                    "p": project,
                    "k": kind,
                    "o": op,
                    "d": dedupe,
                    "b": json.dumps(dict(body), sort_keys=True),
                    "n": stamp(now),
                },
            ).first()
        assert row is not None
        return int(row[0])

    def due(self, now: datetime, *, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose time has come, oldest first."""
        return [i for i in self.pending(limit=limit) if i.next_at <= stamp(now)]

    def pending(self, *, limit: int = 500) -> list[OutboxItem]:
        """Every pending item, due or waiting (a backoff, another worker's claim), oldest
        first: a waiting item holds back the later items of its project and host."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_ITEM_COLUMNS} FROM integration_outbox WHERE state = 'pending' "
                    "ORDER BY id LIMIT :l"
                ),
                {"l": limit},
            ).all()
        return [_item(r) for r in rows]

    def next_due(self) -> str | None:
        """When the earliest pending item is due (None: nothing pending)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                text("SELECT MIN(next_at) FROM integration_outbox WHERE state = 'pending'")
            ).first()
        return None if row is None else row[0]

    def items(self, project: str, *, limit: int = 50) -> list[OutboxItem]:
        """The project's latest items, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_ITEM_COLUMNS} FROM integration_outbox WHERE project = :p "
                    "ORDER BY id DESC LIMIT :l"
                ),
                {"p": project, "l": limit},
            ).all()
        return [_item(r) for r in rows]

    def claim(self, item: OutboxItem, until: datetime) -> bool:
        """Take `item` for one attempt until `until`, unless another worker (another
        server process) took it first. A worker that dies holding it leaves it to be
        tried again once the claim lapses: delivery is at least once, and every call is
        an upsert or a status that a repeat leaves as it was."""
        with self._engine.begin() as conn:
            result = conn.execute(
                text(
                    "UPDATE integration_outbox SET next_at = :u WHERE id = :i "
                    "AND state = 'pending' AND next_at = :n"
                ),
                {"i": item.id, "u": stamp(until), "n": item.next_at},
            )
        return bool(result.rowcount)

    def delivered(self, item_id: int, result: Mapping[str, Any], *, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE integration_outbox SET state = 'delivered', attempts = attempts + 1,"
                    " result = :r, delivered_at = :n, last_error = NULL WHERE id = :i"
                ),
                {"i": item_id, "r": json.dumps(dict(result), sort_keys=True), "n": stamp(now)},
            )

    def failed(self, item: OutboxItem, error: str, *, retry_at: datetime | None) -> str:
        """Record a failed attempt: retried at `retry_at`, or dead (None, or too many)."""
        dead = retry_at is None or item.attempts + 1 >= _MAX_ATTEMPTS
        state = "dead" if dead else "pending"
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE integration_outbox SET state = :s, attempts = attempts + 1, "
                    "last_error = :e, next_at = :n WHERE id = :i"
                ),
                {
                    "i": item.id,
                    "s": state,
                    "e": error[:1000],
                    "n": stamp(retry_at) if retry_at else item.next_at,
                },
            )
        return state
