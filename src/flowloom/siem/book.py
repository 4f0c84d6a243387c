"""The SIEM tables: destinations (secrets sealed) and per-log delivery cursors.

Data model (in the ledger's database, prefixed ``siem_``, migrations recorded in
``siem_migrations``):

- siem_destinations(project, name, kind, format, target, options, sealed): one
  destination; `sealed` is its token/API key encrypted like the gateway's provider keys.
- siem_cursors(project, name, log, next_index, delivered, last_error): the first ledger
  index of `log` not yet acknowledged by the destination. It only moves forward, and
  only after the receiver took the batch: a restart resumes there (at least once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.store.sqlmigrations import apply_migrations

__all__ = ["Cursor", "Destination", "SiemBook"]

_MIGRATION_LOCK = 0x464C4F4D_5349454D  # "FLOM" "SIEM"


@dataclass(frozen=True)
class Destination:
    """One configured receiver (its secret stays sealed: see SiemBook.sealed)."""

    project: str
    name: str
    kind: str
    format: str
    target: str
    options: Mapping[str, Any] = field(default_factory=dict)
    has_secret: bool = False
    updated_at: str = ""

    def public(self) -> dict[str, Any]:
        """What the API and CLI show: never the secret, only whether one is set."""
        return {
            "project": self.project,
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "target": self.target,
            "options": {k: v for k, v in self.options.items() if k != "ca_pem"}
            | ({"ca_pem": "(set)"} if self.options.get("ca_pem") else {}),
            "secret": "set" if self.has_secret else "none",
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Cursor:
    log: str
    next_index: int
    delivered: int
    last_error: str | None
    updated_at: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SiemBook:
    """Reads and writes the SIEM tables; migrations applied on open."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        try:
            apply_migrations(
                engine,
                package="flowloom.siem",
                schema="siem",
                table="siem_migrations",
                lock=_MIGRATION_LOCK,
                foreign_hint="point --database at a FlowLoom database or at a new path",
                sqlite_applied_at="TEXT",
            )
        except DBAPIError as exc:
            raise translate(exc, "applying SIEM migrations") from exc

    @contextmanager
    def _tx(self, doing: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    @staticmethod
    def _destination(row: Any) -> Destination:
        return Destination(
            project=row.project,
            name=row.name,
            kind=row.kind,
            format=row.format,
            target=row.target,
            options=json.loads(row.options),
            has_secret=row.sealed is not None,
            updated_at=row.updated_at,
        )

    def put(self, dest: Destination, sealed: bytes | None, *, keep_secret: bool) -> None:
        """Insert or replace `dest`; with keep_secret the stored secret stays as it is."""
        now = _now()
        params = {
            "p": dest.project,
            "n": dest.name,
            "k": dest.kind,
            "f": dest.format,
            "t": dest.target,
            "o": json.dumps(dict(dest.options), sort_keys=True),
            "s": sealed,
            "now": now,
        }
        secret = "" if keep_secret else ", sealed = excluded.sealed"
        with self._tx("storing a SIEM destination") as conn:
            conn.execute(
                text(
                    "INSERT INTO siem_destinations (project, name, kind, format, target,"
                    " options, sealed, created_at, updated_at)"
                    " VALUES (:p, :n, :k, :f, :t, :o, :s, :now, :now)"
                    " ON CONFLICT (project, name) DO UPDATE SET kind = excluded.kind,"
                    " format = excluded.format, target = excluded.target,"
                    f" options = excluded.options{secret}, updated_at = excluded.updated_at"
                ),
                params,
            )

    def get(self, project: str, name: str) -> Destination | None:
        with self._tx("reading a SIEM destination") as conn:
            row = conn.execute(
                text("SELECT * FROM siem_destinations WHERE project = :p AND name = :n"),
                {"p": project, "n": name},
            ).first()
        return self._destination(row) if row is not None else None

    def sealed(self, project: str, name: str) -> bytes | None:
        with self._tx("reading a SIEM secret") as conn:
            value = conn.execute(
                text("SELECT sealed FROM siem_destinations WHERE project = :p AND name = :n"),
                {"p": project, "n": name},
            ).scalar()
        return bytes(value) if value is not None else None

    def list(self, project: str | None = None) -> list[Destination]:
        where, params = ("WHERE project = :p", {"p": project}) if project else ("", {})
        with self._tx("listing SIEM destinations") as conn:
            rows = conn.execute(
                text(f"SELECT * FROM siem_destinations {where} ORDER BY project, name"), params
            ).all()
        return [self._destination(r) for r in rows]

    def delete(self, project: str, name: str) -> bool:
        with self._tx("removing a SIEM destination") as conn:
            conn.execute(
                text("DELETE FROM siem_cursors WHERE project = :p AND name = :n"),
                {"p": project, "n": name},
            )
            gone = conn.execute(
                text("DELETE FROM siem_destinations WHERE project = :p AND name = :n"),
                {"p": project, "n": name},
            ).rowcount
        return bool(gone)

    def cursors(self, project: str, name: str) -> dict[str, Cursor]:
        with self._tx("reading SIEM cursors") as conn:
            rows = conn.execute(
                text(
                    "SELECT log, next_index, delivered, last_error, updated_at FROM siem_cursors"
                    " WHERE project = :p AND name = :n ORDER BY log"
                ),
                {"p": project, "n": name},
            ).all()
        return {
            r.log: Cursor(r.log, int(r.next_index), int(r.delivered), r.last_error, r.updated_at)
            for r in rows
        }

    def advance(self, project: str, name: str, log: str, next_index: int, delivered: int) -> None:
        """Move the cursor forward to `next_index` (never back), adding `delivered`."""
        params = {"p": project, "n": name, "l": log, "i": next_index, "d": delivered}
        with self._tx("advancing a SIEM cursor") as conn:
            conn.execute(
                text(
                    "INSERT INTO siem_cursors (project, name, log, next_index, delivered,"
                    " last_error, updated_at) VALUES (:p, :n, :l, :i, :d, NULL, :now)"
                    " ON CONFLICT (project, name, log) DO UPDATE SET"
                    " next_index = excluded.next_index,"
                    " delivered = siem_cursors.delivered + excluded.delivered,"
                    " last_error = NULL, updated_at = excluded.updated_at"
                    " WHERE siem_cursors.next_index < excluded.next_index"
                ),
                params | {"now": _now()},
            )

    def failed(self, project: str, name: str, log: str, error: str) -> None:
        """Note the last delivery error (the cursor stays where it was)."""
        with self._tx("noting a SIEM delivery error") as conn:
            conn.execute(
                text(
                    "INSERT INTO siem_cursors (project, name, log, next_index, delivered,"
                    " last_error, updated_at) VALUES (:p, :n, :l, 0, 0, :e, :now)"
                    " ON CONFLICT (project, name, log) DO UPDATE SET last_error = :e,"
                    " updated_at = :now"
                ),
                {"p": project, "n": name, "l": log, "e": error[:500], "now": _now()},
            )
