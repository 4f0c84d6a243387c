"""The idempotency book: which client event ids were appended to a project, at what index.

Data model (one table beside the ledger, in the same database, created on open):

- server_idempotency(project, event_id, idx, leaf_hash, claimed_at): a client's
  ``event_id`` for ``project``. While its append is in progress ``idx`` is NULL (a
  claim, taken before appending); once the append has committed it holds the index and
  leaf hash. Primary key (project, event_id), so one claim wins under any concurrency.
- server_migrations(version, name, applied_at): the schema versions applied.

Protocol: claim the ids, append, settle the claims with the indices (or release them if
the append failed). A repeat of a settled id returns the first index; a repeat while the
first append is still in progress gets AppendInProgressError (503 with Retry-After). A claim left
unsettled for `STALE_AFTER_S` (its server died between the append and the settling) is
taken over by the next attempt, which appends again: at least once, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from flowloom.errors import StoreError, StoreUnavailableError

__all__ = ["STALE_AFTER_S", "AppendInProgressError", "Claim", "IdempotencyBook"]

SCHEMA_VERSION = 1
STALE_AFTER_S = 120.0
"""How long an unsettled claim blocks repeats before another attempt may take it over."""
_MIGRATION_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended('flowloom-server-migrations', 0))"
)
_CHUNK = 500
_metadata = sa.MetaData()
_book = sa.Table(
    "server_idempotency",
    _metadata,
    sa.Column("project", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("idx", sa.BigInteger, nullable=True),
    sa.Column("leaf_hash", sa.String(64), nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
_versions = sa.Table(
    "server_migrations",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming ids: those already appended, and those now ours."""

    done: dict[str, tuple[int, str]]
    """event_id → (index, leaf hash hex) of an earlier append."""
    claimed: frozenset[str]
    """Ids this attempt must append, then settle (or release)."""


class IdempotencyBook:
    """Remembers client event ids per project, in the ledger's database.

    It borrows its engine (the Directory's: same database, same connection settings);
    whoever made the engine disposes of it.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        try:
            self._migrate()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(
                "cannot prepare the server's idempotency table",
                hint="check that the database is reachable and writable",
            ) from exc

    def _migrate(self) -> None:
        with self._engine.begin() as conn:
            if self._dialect == "postgresql":
                # Several server processes may start at once: one creates, others wait.
                conn.execute(sa.text(_MIGRATION_LOCK_SQL))
            _metadata.create_all(conn, checkfirst=True)
            done = conn.execute(sa.select(_versions.c.version)).scalars().all()
            if SCHEMA_VERSION not in done:
                conn.execute(
                    _versions.insert().values(
                        version=SCHEMA_VERSION, name="idempotency", applied_at=datetime.now(UTC)
                    )
                )

    def _insert(self) -> sa.Insert:
        if self._dialect == "postgresql":
            return pg_dialect.insert(_book).on_conflict_do_nothing()
        return sqlite_dialect.insert(_book).on_conflict_do_nothing()

    def claim(self, project: str, event_ids: Iterable[str]) -> Claim:
        """Claim `event_ids` for appending; AppendInProgressError if another append holds one."""
        ids = sorted(set(event_ids))
        if not ids:
            return Claim({}, frozenset())
        now = time.time()
        try:
            with self._engine.begin() as conn:
                existing = self._read(conn, project, ids)
                done = {e: (i, h) for e, (i, h, _) in existing.items() if i is not None and h}
                pending = {e: t for e, (i, _, t) in existing.items() if i is None}
                busy = sorted(e for e, t in pending.items() if now - t < STALE_AFTER_S)
                if busy:
                    raise _in_progress(busy)
                fresh = [e for e in ids if e not in existing]
                claimed: set[str] = set()
                for start in range(0, len(fresh), _CHUNK):
                    rows = [
                        {"project": project, "event_id": e, "claimed_at": now}
                        for e in fresh[start : start + _CHUNK]
                    ]
                    got = conn.execute(self._insert().values(rows).returning(_book.c.event_id))
                    claimed.update(str(e) for e in got.scalars())
                lost = sorted(set(fresh) - claimed)
                if lost:
                    raise _in_progress(lost)
                for event_id, claimed_at in pending.items():  # stale: take them over
                    taken = conn.execute(
                        sa.update(_book)
                        .where(_book.c.project == project, _book.c.event_id == event_id)
                        .where(_book.c.idx.is_(None), _book.c.claimed_at == claimed_at)
                        .values(claimed_at=now)
                    )
                    if taken.rowcount != 1:
                        raise _in_progress([event_id])
                    claimed.add(event_id)
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("cannot use the idempotency table") from exc
        return Claim(done, frozenset(claimed))

    def settle(self, project: str, acks: Sequence[tuple[str, int, str]]) -> None:
        """Record (event_id, index, leaf hash hex) for claims whose append committed."""
        if not acks:
            return
        statement = (
            sa.update(_book)
            .where(_book.c.project == sa.bindparam("p"), _book.c.event_id == sa.bindparam("e"))
            .values(idx=sa.bindparam("i"), leaf_hash=sa.bindparam("h"))
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    statement, [{"p": project, "e": e, "i": i, "h": h} for e, i, h in acks]
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("cannot write the idempotency table") from exc

    def release(self, project: str, event_ids: Iterable[str]) -> None:
        """Drop unsettled claims after a failed append, so a retry may append at once."""
        ids = sorted(set(event_ids))
        if not ids:
            return
        try:
            with self._engine.begin() as conn:
                for start in range(0, len(ids), _CHUNK):
                    conn.execute(
                        sa.delete(_book)
                        .where(_book.c.project == project, _book.c.idx.is_(None))
                        .where(_book.c.event_id.in_(ids[start : start + _CHUNK]))
                    )
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("cannot write the idempotency table") from exc

    def _read(
        self, conn: Connection, project: str, ids: list[str]
    ) -> dict[str, tuple[int | None, str | None, float]]:
        found: dict[str, tuple[int | None, str | None, float]] = {}
        for start in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                sa.select(_book.c.event_id, _book.c.idx, _book.c.leaf_hash, _book.c.claimed_at)
                .where(_book.c.project == project)
                .where(_book.c.event_id.in_(ids[start : start + _CHUNK]))
            )
            for event_id, idx, leaf, claimed_at in rows:
                found[str(event_id)] = (
                    None if idx is None else int(idx),
                    None if leaf is None else str(leaf),
                    float(claimed_at),
                )
        return found

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the database answers."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("the database does not answer") from exc


class AppendInProgressError(StoreError):
    """Another request is appending these event ids: retry soon (HTTP 503, Retry-After).

    Not a conflict (409), which clients take as final: a client whose first attempt
    timed out must retry, not give the event up.
    """


def _in_progress(ids: list[str]) -> AppendInProgressError:
    shown = ", ".join(repr(e) for e in ids[:3]) + (" ..." if len(ids) > 3 else "")
    return AppendInProgressError(
        f"an append with event_id {shown} is in progress",
        hint="retry in a few seconds: a repeat then returns the first index",
    )
