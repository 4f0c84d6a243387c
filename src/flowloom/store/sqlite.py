"""The embedded store: one SQLite file, WAL, synchronous=FULL, refuses edits.

Data model: see flowloom.store.interface. Each thread gets its own connection (SQLite
connections are not shared across threads); writes take SQLite's write lock with
BEGIN IMMEDIATE, so appenders in several processes serialise on the file itself and
read the durable size inside their transaction. A store opened `read_only` (what read
commands use) connects with ``mode=ro`` and ``query_only``: it cannot change the file,
not even its schema.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flowloom.errors import (
    ForeignDatabaseError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
)
from flowloom.store.interface import (
    CheckpointSigner,
    NodeId,
    PendingEntry,
    StoredBody,
    StoredCheckpoint,
    StoredEntry,
    TreeExtender,
)
from flowloom.store.migrate import load_migrations

__all__ = ["APPLICATION_ID", "SQLiteStore"]

APPLICATION_ID = 0x464C4F4D  # "FLOM": marks a file as a FlowLoom database
_BUSY_TIMEOUT_MS = 60_000


def _translate(exc: sqlite3.Error, path: str, doing: str) -> StoreError:
    text = str(exc)
    if "malformed" in text or "corrupt" in text:
        return StoreCorruptError(
            f"database {path} is damaged ({text}) while {doing}",
            hint="restore it from a backup or an exported bundle; run 'flowloom log verify'",
        )
    if "not a database" in text:
        return ForeignDatabaseError(
            f"{path} is not a FlowLoom database (not an SQLite file)",
            hint="point --database at a FlowLoom ledger or at a new path",
        )
    if "append-only" in text or "only erased" in text:
        return StoreError(f"refused: {text}")
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in text or "readonly" in text or "disk I/O" in text
    ):
        return StoreUnavailableError(f"cannot use database {path}: {text}")
    return StoreError(f"database error while {doing}: {text}")


def _create_private(path: Path) -> None:
    """Create an empty ledger file only its owner can read (0600), in directories made
    the same way (0700): SQLite gives its -wal and -shm files the database's mode."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteStore:
    """Store implementation over one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        if self.path != ":memory:":
            p = Path(self.path)
            if not p.exists():
                if not create or read_only:
                    raise StoreUnavailableError(f"no ledger at {self.path}")
                try:
                    _create_private(p)
                except OSError as exc:
                    raise StoreUnavailableError(f"cannot create {self.path}: {exc}") from exc
            elif p.is_dir():
                raise StoreUnavailableError(f"{self.path} is a directory, not a database file")
        self._migrate()

    # -- connections -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("store is closed")
        try:
            if self.read_only and self.path != ":memory:":
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False, timeout=60
                )
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA query_only=ON")
            else:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=60
                )
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                _enable_wal(conn)
                conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "opening") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- schema ------------------------------------------------------------------

    def _migrate(self) -> None:
        conn = self._conn()
        known = load_migrations(self.dialect)
        try:
            # The common case, an up-to-date ledger, needs no write lock.
            if conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
                row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
                if row[0] == len(known):
                    return
        except sqlite3.Error:
            pass  # fall through to the careful path, which reports errors properly
        if self.read_only:
            self._check_read_only(conn, len(known))
            return
        try:
            # Inside the write lock, so a second process opening a new file at the same
            # moment sees either nothing or the finished schema, never half of it.
            conn.execute("BEGIN IMMEDIATE")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(exc, self.path, "opening") from exc
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            conn.execute("ROLLBACK")
            raise ForeignDatabaseError(
                f"{self.path} is an SQLite database that FlowLoom did not create",
                hint="point --database at a FlowLoom ledger or at a new path",
            )
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
            )
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            if applied and max(applied) > len(known):
                conn.execute("ROLLBACK")
                raise StoreError(
                    f"{self.path} was written by a newer FlowLoom (schema {max(applied)})",
                    hint="upgrade FlowLoom",
                )
            for migration in known:
                if migration.version in applied:
                    continue
                for statement in _split_sql(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(exc, self.path, "applying migrations") from exc

    def _check_read_only(self, conn: sqlite3.Connection, version: int) -> None:
        """Opened read-only: the file must be an up-to-date FlowLoom ledger already."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            row = (
                conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
                if app_id == APPLICATION_ID
                else None
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "opening") from exc
        if row is None:
            raise ForeignDatabaseError(
                f"{self.path} is an SQLite database that FlowLoom did not create",
                hint="point --database at a FlowLoom ledger",
            )
        if row[0] is None or row[0] < version:
            raise StoreError(
                f"{self.path} has an older schema, and this command only reads",
                hint="run a command that writes (e.g. 'flowloom log checkpoint') to upgrade it",
            )
        if row[0] > version:
            raise StoreError(
                f"{self.path} was written by a newer FlowLoom (schema {row[0]})",
                hint="upgrade FlowLoom",
            )

    # -- reads -------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object], doing: str) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, doing) from exc

    def size(self, log: str) -> int:
        row = self._query(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries WHERE log = ?", (log,), "reading size"
        )
        return int(row[0][0])

    def logs(self) -> list[str]:
        rows = self._query("SELECT DISTINCT log FROM entries ORDER BY log", (), "listing logs")
        return [str(r[0]) for r in rows]

    def entries(
        self, log: str, start: int = 0, end: int | None = None, kind: str | None = None
    ) -> Iterator[StoredEntry]:
        make = functools.partial(tuple.__new__, StoredEntry)  # no per-row Python frames
        return map(make, self.rows(log, start, end, kind))

    def rows(
        self, log: str, start: int = 0, end: int | None = None, kind: str | None = None
    ) -> Iterator[tuple[int, bytes, str]]:
        stop = end if end is not None else 2**62
        # CAST: a row edited by hand may hold TEXT; verification must still see bytes.
        sql = (
            "SELECT idx, CAST(envelope AS BLOB), kind FROM entries"
            " WHERE log = ? AND idx >= ? AND idx < ?"
        )
        params: tuple[object, ...] = (log, start, stop)
        if kind is not None:
            sql += " AND kind = ?"
            params += (kind,)
        conn = self._conn()
        try:
            cursor = conn.execute(sql + " ORDER BY idx", params)
            while True:
                batch = cursor.fetchmany(8192)
                if not batch:
                    return
                yield from batch
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "reading entries") from exc

    def entry(self, log: str, index: int) -> StoredEntry | None:
        rows = self._query(
            "SELECT idx, CAST(envelope AS BLOB), kind FROM entries WHERE log = ? AND idx = ?",
            (log, index),
            "reading an entry",
        )
        return StoredEntry._make(rows[0]) if rows else None

    def nodes(self, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        return _lookup_nodes(self._conn(), self.path, log, ids)

    def level(
        self, log: str, level: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        stop = end if end is not None else 2**62
        conn = self._conn()
        try:
            cursor = conn.execute(
                "SELECT idx, hash FROM nodes WHERE log = ? AND level = ? AND idx >= ? AND idx < ?"
                " ORDER BY idx",
                (log, level, start, stop),
            )
            expected = start
            while True:
                rows = cursor.fetchmany(4096)
                if not rows:
                    return
                for idx, digest in rows:
                    if idx != expected:
                        return
                    expected += 1
                    yield digest
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "reading tree nodes") from exc

    def latest_checkpoint(self, log: str) -> StoredCheckpoint | None:
        return _latest_checkpoint(self._conn(), self.path, log)

    def checkpoints(self, log: str) -> list[StoredCheckpoint]:
        rows = self._query(
            "SELECT size, root, note FROM checkpoints WHERE log = ? ORDER BY size",
            (log,),
            "reading checkpoints",
        )
        return [StoredCheckpoint(int(s), bytes(r), str(n)) for s, r, n in rows]

    def body(self, digest: str) -> StoredBody | None:
        rows = self._query(
            "SELECT digest, salt, content, nonce, subject FROM bodies WHERE digest = ?",
            (digest,),
            "reading a body",
        )
        return _body_from_row(rows[0]) if rows else None

    def bodies(self, log: str) -> Iterator[StoredBody]:
        conn = self._conn()
        make = functools.partial(tuple.__new__, StoredBody)  # no per-row Python frames
        try:
            cursor = conn.execute(
                "SELECT digest, CAST(salt AS BLOB), CAST(content AS BLOB), nonce, subject"
                " FROM bodies NOT INDEXED WHERE log = ?",
                (log,),
            )
            while True:
                rows = cursor.fetchmany(4096)
                if not rows:
                    return
                yield from map(make, rows)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, "reading bodies") from exc

    def subject_key(self, log: str, subject: str) -> bytes | None:
        rows = self._query(
            "SELECT wrapped_key FROM subject_keys WHERE log = ? AND subject = ?",
            (log, subject),
            "reading a subject key",
        )
        return bytes(rows[0][0]) if rows else None

    # -- writes ------------------------------------------------------------------

    def _write(self, doing: str) -> _WriteTxn:
        return _WriteTxn(self._conn(), self.path, doing)

    def append(self, log: str, items: Sequence[PendingEntry], extend: TreeExtender) -> int:
        if not items:
            return self.size(log)
        with self._write("appending") as conn:
            size = conn.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries WHERE log = ?", (log,)
            ).fetchone()[0]
            plan = extend(
                size,
                lambda ids: _lookup_nodes(conn, self.path, log, ids),
                [item.leaf_hash for item in items],
            )
            conn.executemany(
                "INSERT INTO entries (log, idx, envelope, kind) VALUES (?, ?, ?, ?)",
                [(log, size + i, item.envelope, item.kind) for i, item in enumerate(items)],
            )
            if plan.nodes:
                conn.executemany(
                    "INSERT INTO nodes (log, level, idx, hash) VALUES (?, ?, ?, ?)",
                    [(log, lvl, idx, h) for lvl, idx, h in plan.nodes],
                )
            bodies = [item.body for item in items if item.body is not None]
            if bodies:
                conn.executemany(
                    "INSERT INTO bodies (digest, log, salt, content, nonce, subject)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(b.digest, log, b.salt, b.content, b.nonce, b.subject) for b in bodies],
                )
        return int(size)

    def add_checkpoint(self, log: str, sign: CheckpointSigner) -> StoredCheckpoint:
        with self._write("signing a checkpoint") as conn:
            size = conn.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries WHERE log = ?", (log,)
            ).fetchone()[0]
            latest = _latest_checkpoint(conn, self.path, log)
            checkpoint = sign(
                int(size), lambda ids: _lookup_nodes(conn, self.path, log, ids), latest
            )
            if latest is not None and checkpoint.size <= latest.size:
                return latest  # nothing new was signed
            conn.execute(
                "INSERT INTO checkpoints (log, size, root, note) VALUES (?, ?, ?, ?)",
                (log, checkpoint.size, checkpoint.root, checkpoint.note),
            )
        return checkpoint

    def body_digests(self, log: str, subject: str) -> list[str]:
        rows = self._query(
            "SELECT digest FROM bodies WHERE log = ? AND subject = ? ORDER BY digest",
            (log, subject),
            "reading bodies",
        )
        return [str(r[0]) for r in rows]

    def delete_bodies(self, log: str, subject: str) -> list[str]:
        with self._write("erasing bodies") as conn:
            digests = [
                str(r[0])
                for r in conn.execute(
                    "SELECT digest FROM bodies WHERE log = ? AND subject = ? ORDER BY digest",
                    (log, subject),
                )
            ]
            conn.execute("DELETE FROM bodies WHERE log = ? AND subject = ?", (log, subject))
            conn.execute("DELETE FROM subject_keys WHERE log = ? AND subject = ?", (log, subject))
        return digests

    def put_subject_key(self, log: str, subject: str, wrapped: bytes) -> bytes:
        with self._write("storing a subject key") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO subject_keys (log, subject, wrapped_key) VALUES (?, ?, ?)",
                (log, subject, wrapped),
            )
            row = conn.execute(
                "SELECT wrapped_key FROM subject_keys WHERE log = ? AND subject = ?",
                (log, subject),
            ).fetchone()
        return bytes(row[0])

    def subject_keys(self) -> list[tuple[str, str, bytes]]:
        rows = self._query(
            "SELECT log, subject, wrapped_key FROM subject_keys ORDER BY log, subject",
            (),
            "reading subject keys",
        )
        return [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def replace_subject_key(self, log: str, subject: str, old: bytes, new: bytes) -> bool:
        with self._write("re-wrapping a subject key") as conn:
            cursor = conn.execute(
                "UPDATE subject_keys SET wrapped_key = ? WHERE log = ? AND subject = ?"
                " AND wrapped_key = ?",
                (new, log, subject, old),
            )
            return cursor.rowcount == 1


class _WriteTxn:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error, errors translated."""

    def __init__(self, conn: sqlite3.Connection, path: str, doing: str) -> None:
        self.conn = conn
        self.path = path
        self.doing = doing

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path, self.doing) from exc
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                self._rollback()
                raise _translate(commit_exc, self.path, self.doing) from commit_exc
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, self.path, self.doing) from exc

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" at once, without the busy handler, when
    another connection is doing the same on a new file, so wait and retry."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _lookup_nodes(
    conn: sqlite3.Connection, path: str, log: str, ids: Sequence[NodeId]
) -> dict[NodeId, bytes]:
    found: dict[NodeId, bytes] = {}
    try:
        for level, idx in ids:
            row = conn.execute(
                "SELECT hash FROM nodes WHERE log = ? AND level = ? AND idx = ?",
                (log, level, idx),
            ).fetchone()
            if row is not None:
                found[(level, idx)] = bytes(row[0])
    except sqlite3.Error as exc:
        raise _translate(exc, path, "reading tree nodes") from exc
    return found


def _latest_checkpoint(conn: sqlite3.Connection, path: str, log: str) -> StoredCheckpoint | None:
    try:
        row = conn.execute(
            "SELECT size, root, note FROM checkpoints WHERE log = ? ORDER BY size DESC LIMIT 1",
            (log,),
        ).fetchone()
    except sqlite3.Error as exc:
        raise _translate(exc, path, "reading checkpoints") from exc
    if row is None:
        return None
    return StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]))


def _body_from_row(row: Sequence[Any]) -> StoredBody:
    digest, salt, content, nonce, subject = row
    return StoredBody(
        str(digest),
        bytes(salt),
        bytes(content),
        bytes(nonce) if nonce is not None else None,
        str(subject) if subject is not None else None,
    )


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements; trigger bodies keep their inner semicolons."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        joined = "\n".join(current)
        if stripped.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
