"""The directory's database: an SQLAlchemy engine for a ledger URL, and its migrations.

The directory lives in the same database as the ledger (same URL forms as open_store:
a plain path, sqlite:///path, postgresql://...). Its tables are prefixed ``directory_``
and its numbered migrations, one folder per dialect, are recorded in their own table,
``directory_migrations``, so they never mix with the ledger's schema_migrations.

SQLite: WAL, a long busy timeout, foreign keys on, and every transaction starts with
BEGIN IMMEDIATE so read-modify-write sequences in several processes serialise on the
file lock. PostgreSQL: migrations run in one transaction under an advisory lock, so
server processes starting together apply each step once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from flowloom.errors import ForeignDatabaseError, InputError, StoreError, StoreUnavailableError

__all__ = [
    "DirectoryMigration",
    "dialect_of",
    "load_directory_migrations",
    "make_engine",
    "migrate",
]

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_APPLICATION_ID = 0x464C4F4D  # the ledger's mark ("FLOM"); a FlowLoom file either way
_BUSY_TIMEOUT_MS = 60_000
_MIGRATION_LOCK = 0x464C4F4D_44495200  # an arbitrary constant naming "the directory schema"


@dataclass(frozen=True)
class DirectoryMigration:
    """One schema step of the directory."""

    version: int
    name: str
    sql: str


def load_directory_migrations(dialect: str) -> list[DirectoryMigration]:
    """The directory migrations for `dialect` ("sqlite" or "postgres"), in order."""
    folder = resources.files("flowloom.auth").joinpath("migrations", dialect)
    found: list[DirectoryMigration] = []
    for item in folder.iterdir():
        match = _NAME_RE.match(item.name)
        if match:
            found.append(
                DirectoryMigration(int(match.group(1)), match.group(2), item.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} directory migrations are not numbered 1..n: {versions}")
    return found


def dialect_of(engine: Engine) -> str:
    """ "sqlite" or "postgres"."""
    return "postgres" if engine.dialect.name == "postgresql" else "sqlite"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event below decide how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() not in ("wal", "memory"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for a ledger database URL: a path, sqlite:///path or postgresql://..."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        rest = url.split("://", 1)[1]
        return create_engine(
            "postgresql+psycopg://" + rest,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": 5, "application_name": "flowloom-directory"},
        )
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") - 1 :] if url.startswith("sqlite:////") else url[10:]
    elif "://" in url:
        raise InputError(
            f"unsupported database URL scheme {url.split('://', 1)[0]!r}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        )
    else:
        path = url
    if path == ":memory:":
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        file = Path(path)
        if file.is_dir():
            raise StoreUnavailableError(f"{path} is a directory, not a database file")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create {file.parent}: {exc}") from exc
        engine = create_engine(
            "sqlite:///" + str(file.resolve()),
            connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000},
        )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _split(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";\n") if s.strip() and not _only_comments(s)]


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())


def migrate(engine: Engine) -> None:
    """Apply the directory migrations this database lacks, each exactly once."""
    dialect = dialect_of(engine)
    known = load_directory_migrations(dialect)
    try:
        with engine.begin() as conn:
            if dialect == "postgres":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                conn.execute(
                    text(
                        "CREATE TABLE IF NOT EXISTS directory_migrations ("
                        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                )
            else:
                _check_sqlite_owner(conn)
                conn.execute(
                    text(
                        "CREATE TABLE IF NOT EXISTS directory_migrations ("
                        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                        " applied_at TEXT NOT NULL"
                        " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
                    )
                )
            applied = {
                int(row[0])
                for row in conn.execute(text("SELECT version FROM directory_migrations"))
            }
            if applied and max(applied) > len(known):
                raise StoreError(
                    f"the directory schema is newer ({max(applied)}) than this FlowLoom knows",
                    hint="upgrade FlowLoom",
                )
            for migration in known:
                if migration.version in applied:
                    continue
                for statement in _split(migration.sql):
                    conn.exec_driver_sql(statement)
                conn.execute(
                    text("INSERT INTO directory_migrations (version, name) VALUES (:v, :n)"),
                    {"v": migration.version, "n": migration.name},
                )
    except DBAPIError as exc:
        raise translate(exc, "applying directory migrations") from exc


def _check_sqlite_owner(conn: Connection) -> None:
    """Refuse an SQLite file some other program made; mark a new file as FlowLoom's."""
    app_id = int(conn.exec_driver_sql("PRAGMA application_id").scalar() or 0)
    if app_id == _APPLICATION_ID:
        return
    tables = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
    if app_id != 0 or tables:
        raise ForeignDatabaseError(
            "the database is an SQLite file that FlowLoom did not create",
            hint="point --database at a FlowLoom ledger or at a new path",
        )
    conn.exec_driver_sql(f"PRAGMA application_id={_APPLICATION_ID}")


def translate(exc: DBAPIError, doing: str) -> StoreError:
    """A StoreError for a driver error: one line, without SQL, parameters or passwords."""
    original = exc.orig if exc.orig is not None else exc
    first = (
        str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    )
    if "not a database" in first:
        return ForeignDatabaseError(
            "the database file is not a FlowLoom database (not an SQLite file)",
            hint="point --database at a FlowLoom ledger or at a new path",
        )
    if exc.connection_invalidated or "connect" in first.lower() or "unable to open" in first:
        return StoreUnavailableError(
            f"cannot reach the directory database while {doing}: {type(original).__name__}",
            hint="check that the database is running and the URL is right",
        )
    return StoreError(f"directory database error while {doing}: {first[:200]}")
