"""The webhook tables' migrations, applied when the webhook store opens a database.

The tables live in the server database beside the directory, prefixed ``webhook_``;
their numbered migrations (one folder per dialect) are recorded in their own table
``webhook_migrations`` and, on PostgreSQL, applied under their own advisory lock, so
the numbering never collides with another component's.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.store.sqlmigrations import apply_migrations

__all__ = ["migrate"]

_MIGRATION_LOCK = 0x464C4F4D_57484B00  # an arbitrary constant naming "the webhook schema"


def migrate(engine: Engine) -> None:
    """Apply the webhook migrations this database lacks, each exactly once."""
    try:
        apply_migrations(
            engine,
            package="flowloom.webhooks",
            schema="webhook",
            table="webhook_migrations",
            lock=_MIGRATION_LOCK,
            foreign_hint="point the server at a FlowLoom database",
        )
    except DBAPIError as exc:
        raise translate(exc, "applying webhook migrations") from exc
