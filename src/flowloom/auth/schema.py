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

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from flowloom.errors import ForeignDatabaseError, InputError, StoreError, StoreUnavailableError
from flowloom.store.migrate import Migration, load_migrations
from flowloom.store.sqlmigrations import apply_migrations, dialect_of
from flowloom.store.urls import sqlite_path

__all__ = [
    "READ_ONLY",
    "DirectoryMigration",
    "dialect_of",
    "load_directory_migrations",
    "make_engine",
    "migrate",
]

_BUSY_TIMEOUT_MS = 60_000
_MIGRATION_LOCK = 0x464C4F4D_44495200  # an arbitrary constant naming "the directory schema"

DirectoryMigration = Migration
"""One schema step of the directory."""


def load_directory_migrations(dialect: str) -> list[Migration]:
    """The directory migrations for `dialect` ("sqlite" or "postgres"), in order."""
    return load_migrations(dialect, "flowloom.auth", "directory migrations")


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


READ_ONLY = "flowloom_read_only"
"""Execution option of a connection whose transactions only read (see Directory._read)."""


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front (no upgrade deadlocks); readers must not, or
    # every sign-in check would queue behind the ledger's commits for the file's lock.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for a ledger database URL: a path, sqlite:///path or postgresql://..."""
    try:
        path = sqlite_path(url)
    except ValueError as exc:
        raise InputError(
            str(exc), hint="use a file path, sqlite:///path or postgresql://user@host/db"
        ) from None
    if path is None:
        rest = url.split("://", 1)[1]
        return create_engine(
            "postgresql+psycopg://" + rest,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": 5, "application_name": "flowloom-directory"},
        )
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


def migrate(engine: Engine) -> None:
    """Apply the directory migrations this database lacks, each exactly once."""
    try:
        apply_migrations(
            engine,
            package="flowloom.auth",
            schema="directory",
            table="directory_migrations",
            lock=_MIGRATION_LOCK,
            foreign_hint="point --database at a FlowLoom ledger or at a new path",
        )
    except DBAPIError as exc:
        raise translate(exc, "applying directory migrations") from exc


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
