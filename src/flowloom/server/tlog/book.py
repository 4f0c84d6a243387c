"""The tile API's book: which projects publish their log, and the cosignatures collected.

Two tables beside the ledger, in the same database, with their own migration chain
(``tlog_migrations``): ``tlog_settings`` (a project's log is served to anyone when
``public``; absent means not public) and ``tlog_cosignatures`` (a witness's cosignature
line on one checkpoint, by size and root, kept so the checkpoint endpoint can append
them without reading the log). Both facts are also in the ledger: the setting change as
an ``auth.project.settings`` event, each cosignature as a ``checkpoint.anchor`` event;
these tables are the quick index the readers need on every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.store.sqlmigrations import apply_migrations

__all__ = ["StoredCosignature", "TlogBook"]

_MIGRATION_LOCK = 0x464C4F4D_544C4F47  # an arbitrary constant naming "the tlog schema"


@dataclass(frozen=True)
class StoredCosignature:
    """One witness's cosignature line on the checkpoint of (size, root)."""

    witness: str
    line: str
    signed_at: int


class TlogBook:
    """Publicity settings and collected cosignatures, in the directory's database.

    It borrows the engine (the Directory's); whoever made the engine disposes of it.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        try:
            apply_migrations(
                engine,
                package="flowloom.server.tlog",
                schema="tile API",
                table="tlog_migrations",
                lock=_MIGRATION_LOCK,
                foreign_hint="point --database at a FlowLoom database or at a new path",
                sqlite_applied_at="TEXT",
            )
        except DBAPIError as exc:
            raise translate(exc, "applying the tile API migrations") from exc

    @contextmanager
    def _tx(self, doing: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    def is_public(self, project: str) -> bool:
        """Whether anyone, signed in or not, may read ``project``'s tiles and checkpoint."""
        with self._tx("reading the tile API setting") as conn:
            row = conn.execute(
                text("SELECT public FROM tlog_settings WHERE project = :p"), {"p": project}
            ).first()
        return bool(row[0]) if row is not None else False

    def set_public(self, project: str, public: bool) -> bool:
        """Set the setting; returns the value it had before."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._tx("changing the tile API setting") as conn:
            row = conn.execute(
                text("SELECT public FROM tlog_settings WHERE project = :p"), {"p": project}
            ).first()
            conn.execute(
                text(
                    "INSERT INTO tlog_settings (project, public, updated_at) VALUES (:p, :v, :t)"
                    " ON CONFLICT (project) DO UPDATE"
                    " SET public = excluded.public, updated_at = excluded.updated_at"
                ),
                {"p": project, "v": public, "t": now},
            )
        return bool(row[0]) if row is not None else False

    def add_cosignature(
        self, project: str, size: int, root: bytes, witness: str, line: str, signed_at: int
    ) -> None:
        """Keep a verified cosignature (a newer one by the same witness replaces it)."""
        with self._tx("storing a witness cosignature") as conn:
            conn.execute(
                text(
                    "INSERT INTO tlog_cosignatures (project, size, root, witness, line, signed_at)"
                    " VALUES (:p, :s, :r, :w, :l, :t) ON CONFLICT (project, size, root, witness)"
                    " DO UPDATE SET line = excluded.line, signed_at = excluded.signed_at"
                ),
                {"p": project, "s": size, "r": root.hex(), "w": witness, "l": line, "t": signed_at},
            )

    def cosignatures(self, project: str, size: int, root: bytes) -> list[StoredCosignature]:
        """The cosignatures collected on the checkpoint of (``size``, ``root``), by witness."""
        with self._tx("reading witness cosignatures") as conn:
            rows = conn.execute(
                text(
                    "SELECT witness, line, signed_at FROM tlog_cosignatures"
                    " WHERE project = :p AND size = :s AND root = :r ORDER BY witness"
                ),
                {"p": project, "s": size, "r": root.hex()},
            ).all()
        return [StoredCosignature(str(w), str(line), int(t)) for w, line, t in rows]

    def latest_size(self, project: str, witness: str) -> int:
        """The largest tree size ``witness`` has cosigned for ``project`` here (0: none)."""
        with self._tx("reading witness cosignatures") as conn:
            value = conn.execute(
                text("SELECT max(size) FROM tlog_cosignatures WHERE project = :p AND witness = :w"),
                {"p": project, "w": witness},
            ).scalar()
        return int(value or 0)
