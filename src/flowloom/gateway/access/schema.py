"""The gateway access tables' migrations, applied when Access opens a database.

The tables live in the same database as the ledger and the directory (same URL forms:
a plain path, sqlite:///path, postgresql://...; the engine is the directory's
make_engine, so SQLite gets WAL, busy timeout and BEGIN IMMEDIATE). They are prefixed
``gateway_``; numbered migrations, one folder per dialect, are recorded in their own
table ``gateway_access_migrations``. On PostgreSQL migrations run in one transaction
under an advisory lock, so gateway processes starting together apply each step once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import dialect_of, translate
from flowloom.errors import ForeignDatabaseError, StoreError

__all__ = ["AccessMigration", "load_access_migrations", "migrate"]

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_APPLICATION_ID = 0x464C4F4D  # FlowLoom's SQLite mark, shared with the ledger and directory
_MIGRATION_LOCK = 0x464C4F4D_47574100  # an arbitrary constant naming "the gateway schema"


@dataclass(frozen=True)
class AccessMigration:
    """One schema step of the gateway access tables."""

    version: int
    name: str
    sql: str


def load_access_migrations(dialect: str) -> list[AccessMigration]:
    """The migrations for `dialect` ("sqlite" or "postgres"), in order."""
    folder = resources.files("flowloom.gateway.access").joinpath("migrations", dialect)
    found: list[AccessMigration] = []
    for item in folder.iterdir():
        match = _NAME_RE.match(item.name)
        if match:
            found.append(
                AccessMigration(int(match.group(1)), match.group(2), item.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} gateway migrations are not numbered 1..n: {versions}")
    return found


def _statements(sql: str) -> list[str]:
    out = []
    for chunk in sql.split(";\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        statement = "\n".join(lines).strip()
        if statement:
            out.append(statement)
    return out


def _check_sqlite_owner(conn: Connection) -> None:
    """Refuse an SQLite file some other program made; mark a new file as FlowLoom's."""
    app_id = int(conn.exec_driver_sql("PRAGMA application_id").scalar() or 0)
    if app_id == _APPLICATION_ID:
        return
    tables = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
    if app_id != 0 or tables:
        raise ForeignDatabaseError(
            "the database is an SQLite file that FlowLoom did not create",
            hint="point --database at a FlowLoom database or at a new path",
        )
    conn.exec_driver_sql(f"PRAGMA application_id={_APPLICATION_ID}")


def migrate(engine: Engine) -> None:
    """Apply the gateway access migrations this database lacks, each exactly once."""
    dialect = dialect_of(engine)
    known = load_access_migrations(dialect)
    stamp = "TIMESTAMPTZ NOT NULL DEFAULT now()" if dialect == "postgres" else "TEXT"
    try:
        with engine.begin() as conn:
            if dialect == "postgres":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            else:
                _check_sqlite_owner(conn)
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS gateway_access_migrations ("
                    f" version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at {stamp})"
                )
            )
            applied = {
                int(row[0])
                for row in conn.execute(text("SELECT version FROM gateway_access_migrations"))
            }
            if applied and max(applied) > len(known):
                raise StoreError(
                    f"the gateway schema is newer ({max(applied)}) than this FlowLoom knows",
                    hint="upgrade FlowLoom",
                )
            for migration in known:
                if migration.version in applied:
                    continue
                for statement in _statements(migration.sql):
                    conn.exec_driver_sql(statement)
                conn.execute(
                    text("INSERT INTO gateway_access_migrations (version, name) VALUES (:v, :n)"),
                    {"v": migration.version, "n": migration.name},
                )
    except DBAPIError as exc:
        raise translate(exc, "applying gateway access migrations") from exc
