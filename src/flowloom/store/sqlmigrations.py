"""Numbered migrations applied through SQLAlchemy, for the tables kept beside the ledger.

The directory and the gateway access tables live in the ledger's database, each with
its own migrations folder (see `flowloom.store.migrate`), its own table of applied
versions and, on PostgreSQL, its own advisory-lock constant: all steps run in one
transaction under that lock, so processes starting together apply each step once. On
SQLite the engine begins transactions with BEGIN IMMEDIATE (see
`flowloom.auth.schema.make_engine`), and a file some other program made is refused.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from flowloom.errors import ForeignDatabaseError, StoreError
from flowloom.store.migrate import load_migrations

__all__ = ["APPLICATION_ID", "apply_migrations", "check_sqlite_owner", "dialect_of"]

APPLICATION_ID = 0x464C4F4D  # the ledger's SQLite mark ("FLOM"); a FlowLoom file either way
_SQLITE_APPLIED_AT = "TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
_POSTGRES_APPLIED_AT = "TIMESTAMPTZ NOT NULL DEFAULT now()"


def dialect_of(engine: Engine) -> str:
    """ "sqlite" or "postgres"."""
    return "postgres" if engine.dialect.name == "postgresql" else "sqlite"


def check_sqlite_owner(conn: Connection, *, hint: str) -> None:
    """Refuse an SQLite file some other program made; mark a new file as FlowLoom's."""
    app_id = int(conn.exec_driver_sql("PRAGMA application_id").scalar() or 0)
    if app_id == APPLICATION_ID:
        return
    tables = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
    if app_id != 0 or tables:
        raise ForeignDatabaseError(
            "the database is an SQLite file that FlowLoom did not create", hint=hint
        )
    conn.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")


def _statements(sql: str) -> list[str]:
    """The statements of a migration (split at ";" ending a line), comment lines dropped."""
    out = []
    for chunk in sql.split(";\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        statement = "\n".join(lines).strip()
        if statement:
            out.append(statement)
    return out


def apply_migrations(
    engine: Engine,
    *,
    package: str,
    schema: str,
    table: str,
    lock: int,
    foreign_hint: str,
    sqlite_applied_at: str = _SQLITE_APPLIED_AT,
) -> None:
    """Apply the migrations of `package` this database lacks, each exactly once.

    `schema` names the component in messages ("directory", "gateway"); `table` records
    the applied versions; `lock` is the component's PostgreSQL advisory-lock key;
    `foreign_hint` is the hint of the error refusing a foreign SQLite file. Driver
    errors propagate as SQLAlchemy's DBAPIError, for the caller to translate.
    """
    dialect = dialect_of(engine)
    known = load_migrations(dialect, package, f"{schema} migrations")
    with engine.begin() as conn:
        if dialect == "postgres":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
            applied_at = _POSTGRES_APPLIED_AT
        else:
            check_sqlite_owner(conn, hint=foreign_hint)
            applied_at = sqlite_applied_at
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                f" version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at {applied_at})"
            )
        )
        applied = {int(row[0]) for row in conn.execute(text(f"SELECT version FROM {table}"))}
        if applied and max(applied) > len(known):
            raise StoreError(
                f"the {schema} schema is newer ({max(applied)}) than this FlowLoom knows",
                hint="upgrade FlowLoom",
            )
        for migration in known:
            if migration.version in applied:
                continue
            for statement in _statements(migration.sql):
                conn.exec_driver_sql(statement)
            conn.execute(
                text(f"INSERT INTO {table} (version, name) VALUES (:v, :n)"),
                {"v": migration.version, "n": migration.name},
            )
