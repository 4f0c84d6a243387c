"""The gateway access tables' migrations, applied when Access opens a database.

The tables live in the same database as the ledger and the directory (same URL forms:
a plain path, sqlite:///path, postgresql://...; the engine is the directory's
make_engine, so SQLite gets WAL, busy timeout and BEGIN IMMEDIATE). They are prefixed
``gateway_``; numbered migrations, one folder per dialect, are recorded in their own
table ``gateway_access_migrations``. On PostgreSQL migrations run in one transaction
under an advisory lock, so gateway processes starting together apply each step once.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.store.migrate import Migration, load_migrations
from flowloom.store.sqlmigrations import apply_migrations

__all__ = ["AccessMigration", "load_access_migrations", "migrate"]

_MIGRATION_LOCK = 0x464C4F4D_47574100  # an arbitrary constant naming "the gateway schema"

AccessMigration = Migration
"""One schema step of the gateway access tables."""


def load_access_migrations(dialect: str) -> list[Migration]:
    """The migrations for `dialect` ("sqlite" or "postgres"), in order."""
    return load_migrations(dialect, "flowloom.gateway.access", "gateway migrations")


def migrate(engine: Engine) -> None:
    """Apply the gateway access migrations this database lacks, each exactly once."""
    try:
        apply_migrations(
            engine,
            package="flowloom.gateway.access",
            schema="gateway",
            table="gateway_access_migrations",
            lock=_MIGRATION_LOCK,
            foreign_hint="point --database at a FlowLoom database or at a new path",
            sqlite_applied_at="TEXT",
        )
    except DBAPIError as exc:
        raise translate(exc, "applying gateway access migrations") from exc
