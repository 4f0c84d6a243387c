"""One indexed read per request: is this cached virtual key revoked since it was cached?

The gateway keeps verified keys in memory; a key revoked by another process (the CLI, a
server deprovisioning a user, another gateway) must be refused from the next request,
so each cached hit asks the shared database for the key's ``revoked_at`` by primary
key. Through the ORM layer that costs a connection checkout, a transaction and a
compiled statement per request (hundreds of microseconds); this asks on one held DBAPI
connection in autocommit, a few microseconds on SQLite, one round trip on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flowloom.errors import StoreUnavailableError

__all__ = ["RevocationProbe"]


class RevocationProbe:
    """Reads a key's revocation on a connection of its own (serialised by a lock)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT revoked_at FROM gateway_vkeys WHERE id = {mark}"
        self._lock = threading.Lock()
        self._raw: Any = None

    def revoked(self, key_id: str) -> bool:
        """True when the key is revoked or gone; StoreUnavailableError when the database
        cannot answer (the request is refused, never let through)."""
        with self._lock:
            try:
                if self._raw is None:
                    self._raw = self._engine.raw_connection()
                    if self._engine.dialect.name == "postgresql":
                        self._raw.driver_connection.autocommit = True  # no idle transaction
                cursor = self._raw.cursor()
                try:
                    cursor.execute(self._sql, (key_id,))
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            except Exception as exc:  # the driver's own errors, whichever driver
                self._drop()
                raise StoreUnavailableError(
                    f"cannot check a virtual key's revocation: {type(exc).__name__}"
                ) from None
        return row is None or row[0] is not None

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(DBAPIError, OSError):
                raw.invalidate()

    def close(self) -> None:
        with self._lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()
