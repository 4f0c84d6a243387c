"""The team store: PostgreSQL through psycopg 3 and a psycopg_pool connection pool.

Data model (see flowloom.store.interface for the contract), one set of tables per
schema, many logs in it, one log per project:

- entries(log, idx, envelope, kind): canonical event envelopes in log order.
  Append-only: triggers refuse UPDATE, DELETE and TRUNCATE.
- nodes(log, level, idx, hash): every perfect Merkle subtree hash, leaves (level 0)
  included. Append-only.
- checkpoints(log, size, root, note, created_at): every signed checkpoint, in size
  order. Append-only.
- bodies(digest, log, salt, content, nonce, subject): event bodies keyed by their
  salted commitment. Rows may be deleted (erasure), never updated.
- subject_keys(log, subject, wrapped_key): per-data-subject body keys; deleting a row
  erases that subject's bodies.
- schema_migrations(version, name, applied_at): the migrations applied, one row each.

Concurrency: every append and checkpoint is one READ COMMITTED transaction that first
takes ``pg_advisory_xact_lock(hashtextextended(log, 0))``, then reads the durable size,
so any number of threads and server processes get contiguous indices for a log.
Migrations run when a store opens, under a session advisory lock. A store opened
`read_only` (what read commands use) runs none and sets
``default_transaction_read_only`` on its connections, so the server refuses any write.

Connections use the tables of the first schema on their ``search_path`` (set it with
``?options=-csearch_path%3Dmyschema`` in the URL to keep a ledger in its own schema).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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

__all__ = ["PostgresStore"]

Connection = psycopg.Connection[TupleRow]

CONNECT_TIMEOUT_S = 5
"""libpq connect_timeout used unless the URL sets one."""
POOL_TIMEOUT_S = 30.0
"""The longest an operation waits for a free pooled connection."""
MIGRATION_LOCK_TIMEOUT = "60s"

_PAGE = 4096
_END = 2**62
_TABLES = ("entries", "nodes", "checkpoints", "bodies", "subject_keys")
_UNAVAILABLE_HINT = (
    "check that the server is running and the URL's host, port, database, user and password"
)
_SIZE_SQL = "SELECT COALESCE(MAX(idx) + 1, 0) FROM entries WHERE log = %s"
_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


class PostgresStore:
    """Store implementation over a PostgreSQL database (one schema)."""

    dialect = "postgres"

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 8, read_only: bool = False
    ) -> None:
        self.url = url
        self.read_only = read_only
        self._held = threading.local()
        """The URL as given: it may hold a password, so it never goes into a message."""
        try:
            params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.Error as exc:
            # The parser's message may quote the URL; say nothing about its content.
            raise StoreUnavailableError(
                "cannot use the PostgreSQL URL: it is malformed",
                hint="expected postgresql://user[:password]@host[:port]/database",
            ) from exc
        self._password = str(params.get("password") or "")
        self.where = _describe(params)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "flowloom")
        self._conninfo = make_conninfo("", **params)
        if read_only:
            self._check_schema()
        else:
            self._migrate()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=max(max_size, min_size),
            kwargs={"autocommit": True},
            configure=_configure_read_only if read_only else _configure,
            check=ConnectionPool.check_connection,
            open=False,
            timeout=POOL_TIMEOUT_S,
            name="flowloom",
        )
        try:
            self._pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailableError(
                f"cannot reach PostgreSQL at {self.where}: no connection within"
                f" {POOL_TIMEOUT_S:g} s",
                hint=_UNAVAILABLE_HINT,
            ) from exc

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # -- errors and connections --------------------------------------------------

    def _clean(self, text: str) -> str:
        """One line, without the password."""
        if self._password:
            text = text.replace(self._password, "***")
        return " ".join(text.split())

    def _translate(self, exc: psycopg.Error, doing: str) -> StoreError:
        return _translate(exc, self.where, doing, self._clean)

    def _connect(self) -> Connection:
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach PostgreSQL at {self.where}: {self._clean(_connect_reason(exc))}",
                hint=_UNAVAILABLE_HINT,
            ) from exc

    @contextlib.contextmanager
    def _connection(self, doing: str) -> Iterator[Connection]:
        held: Connection | None = getattr(self._held, "conn", None)
        if held is not None:
            # A read from inside this thread's write transaction (the checkpoint signer
            # reads the log's key events): through that connection, not a second one,
            # which a pool full of transactions waiting for this log's lock could not give.
            try:
                yield held
            except psycopg.Error as exc:
                raise self._translate(exc, doing) from exc
            return
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolClosed as exc:
            raise StoreError("store is closed") from exc
        except PoolTimeout as exc:
            raise StoreUnavailableError(
                f"no PostgreSQL connection to {self.where} within {POOL_TIMEOUT_S:g} s"
                f" while {doing}",
                hint=_UNAVAILABLE_HINT,
            ) from exc
        except psycopg.Error as exc:
            raise self._translate(exc, doing) from exc

    @contextlib.contextmanager
    def _write(self, log: str, doing: str) -> Iterator[Connection]:
        """One transaction holding the log's write lock; rolled back on any error."""
        with self._connection(doing) as conn, conn.transaction():
            conn.execute(_LOCK_SQL, (log,))
            self._held.conn = conn
            try:
                yield conn
            finally:
                self._held.conn = None

    def _query(self, sql: str, params: Sequence[object], doing: str) -> list[TupleRow]:
        with self._connection(doing) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self._pool.close()

    # -- schema ------------------------------------------------------------------

    def _migrate(self) -> None:
        known = load_migrations(self.dialect)
        conn = self._connect()
        try:
            conn.execute(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
            conn.execute(
                "SELECT pg_advisory_lock(hashtextextended("
                "'flowloom:migrate:' || COALESCE(current_schema(), ''), 0))"
            )
            with conn.transaction():
                self._check_foreign(conn)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                applied = {
                    int(row[0])
                    for row in conn.execute("SELECT version FROM schema_migrations").fetchall()
                }
                if applied and max(applied) > len(known):
                    raise StoreError(
                        f"PostgreSQL database {self.where} was written by a newer FlowLoom"
                        f" (schema {max(applied)})",
                        hint="upgrade FlowLoom",
                    )
                for migration in known:
                    if migration.version in applied:
                        continue
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
        except psycopg.Error as exc:
            raise self._translate(exc, "applying migrations") from exc
        finally:
            conn.close()  # also releases the session advisory lock

    def _check_schema(self) -> None:
        """Opened read-only: the schema must hold an up-to-date FlowLoom ledger already."""
        known = len(load_migrations(self.dialect))
        conn = self._connect()
        try:
            conn.execute("SET default_transaction_read_only = on")
            self._check_foreign(conn)
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        except psycopg.Error as exc:
            raise self._translate(exc, "opening") from exc
        finally:
            conn.close()
        version = row[0] if row is not None else None
        if version is None or version < known:
            raise StoreError(
                f"PostgreSQL database {self.where} holds no up-to-date FlowLoom ledger, "
                "and this command only reads",
                hint="run a command that writes to create or upgrade it",
            )
        if version > known:
            raise StoreError(
                f"PostgreSQL database {self.where} was written by a newer FlowLoom"
                f" (schema {version})",
                hint="upgrade FlowLoom",
            )

    def _check_foreign(self, conn: Connection) -> None:
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = row[0] if row else None
        if schema is None:
            raise StoreUnavailableError(
                f"PostgreSQL database {self.where} has no schema to create the ledger in",
                hint="create the schema named by search_path, or fix options=-csearch_path",
            )
        columns: dict[str, dict[str, str]] = {}
        for table, column, data_type in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = ANY(%s)",
            (schema, [*_TABLES, "schema_migrations"]),
        ).fetchall():
            columns.setdefault(str(table), {})[str(column)] = str(data_type)
        migrations = columns.get("schema_migrations")
        ours = (
            migrations is not None
            and migrations.get("version") == "integer"
            and ("name" in migrations)
        )
        if migrations is not None and not ours:
            raise ForeignDatabaseError(
                f"schema {schema!r} of PostgreSQL database {self.where} has a schema_migrations"
                " table that FlowLoom did not create",
                hint="use another database or schema (options=-csearch_path%3D<schema>)",
            )
        found = sorted(t for t in _TABLES if t in columns)
        if found and migrations is None:
            raise ForeignDatabaseError(
                f"schema {schema!r} of PostgreSQL database {self.where} has tables FlowLoom"
                f" did not create ({', '.join(found)})",
                hint="use another database or schema (options=-csearch_path%3D<schema>)",
            )

    # -- reads -------------------------------------------------------------------

    def size(self, log: str) -> int:
        rows = self._query(_SIZE_SQL, (log,), "reading size")
        return int(rows[0][0])

    def logs(self) -> list[str]:
        rows = self._query("SELECT DISTINCT log FROM entries ORDER BY log", (), "listing logs")
        return [str(r[0]) for r in rows]

    def entries(
        self, log: str, start: int = 0, end: int | None = None, kind: str | None = None
    ) -> Iterator[StoredEntry]:
        stop = end if end is not None else _END
        sql = "SELECT idx, envelope, kind FROM entries WHERE log = %s AND idx >= %s AND idx < %s"
        if kind is not None:
            sql += " AND kind = %s"
        sql += f" ORDER BY idx LIMIT {_PAGE}"
        position = start
        while True:
            params: tuple[object, ...] = (log, position, stop)
            if kind is not None:
                params += (kind,)
            rows = self._query(sql, params, "reading entries")
            for idx, envelope, k in rows:
                yield StoredEntry(int(idx), bytes(envelope), str(k))
            if len(rows) < _PAGE:
                return
            position = int(rows[-1][0]) + 1

    def rows(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, bytes, str]]:
        for entry in self.entries(log, start, end):
            yield entry.index, entry.envelope, entry.kind

    def entry(self, log: str, index: int) -> StoredEntry | None:
        rows = self._query(
            "SELECT idx, envelope, kind FROM entries WHERE log = %s AND idx = %s",
            (log, index),
            "reading an entry",
        )
        if not rows:
            return None
        idx, envelope, kind = rows[0]
        return StoredEntry(int(idx), bytes(envelope), str(kind))

    def nodes(self, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        if not ids:
            return {}
        with self._connection("reading tree nodes") as conn:
            return _lookup_nodes(conn, log, ids)

    def level(
        self, log: str, level: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        stop = end if end is not None else _END
        expected = start
        while True:
            rows = self._query(
                "SELECT idx, hash FROM nodes WHERE log = %s AND level = %s AND idx >= %s"
                f" AND idx < %s ORDER BY idx LIMIT {_PAGE}",
                (log, level, expected, stop),
                "reading tree nodes",
            )
            for idx, digest in rows:
                if idx != expected:
                    return
                expected += 1
                yield bytes(digest)
            if len(rows) < _PAGE:
                return

    def latest_checkpoint(self, log: str) -> StoredCheckpoint | None:
        with self._connection("reading checkpoints") as conn:
            return _latest_checkpoint(conn, log)

    def checkpoints(self, log: str) -> list[StoredCheckpoint]:
        rows = self._query(
            "SELECT size, root, note FROM checkpoints WHERE log = %s ORDER BY size",
            (log,),
            "reading checkpoints",
        )
        return [StoredCheckpoint(int(s), bytes(r), str(n)) for s, r, n in rows]

    def body(self, digest: str) -> StoredBody | None:
        rows = self._query(
            "SELECT digest, salt, content, nonce, subject FROM bodies WHERE digest = %s",
            (digest,),
            "reading a body",
        )
        return _body_from_row(rows[0]) if rows else None

    def bodies(self, log: str) -> Iterator[StoredBody]:
        after = ""
        while True:
            rows = self._query(
                "SELECT digest, salt, content, nonce, subject FROM bodies"
                f" WHERE log = %s AND digest > %s ORDER BY digest LIMIT {_PAGE // 4}",
                (log, after),
                "reading bodies",
            )
            for row in rows:
                yield _body_from_row(row)
            if len(rows) < _PAGE // 4:
                return
            after = str(rows[-1][0])

    def subject_key(self, log: str, subject: str) -> bytes | None:
        rows = self._query(
            "SELECT wrapped_key FROM subject_keys WHERE log = %s AND subject = %s",
            (log, subject),
            "reading a subject key",
        )
        return bytes(rows[0][0]) if rows else None

    def body_digests(self, log: str, subject: str) -> list[str]:
        rows = self._query(
            "SELECT digest FROM bodies WHERE log = %s AND subject = %s ORDER BY digest",
            (log, subject),
            "reading bodies",
        )
        return [str(r[0]) for r in rows]

    # -- writes ------------------------------------------------------------------

    def append(self, log: str, items: Sequence[PendingEntry], extend: TreeExtender) -> int:
        if not items:
            return self.size(log)
        with self._write(log, "appending") as conn:
            size = _durable_size(conn, log)
            plan = extend(
                size,
                lambda ids: self._lookup_in(conn, log, ids),
                [item.leaf_hash for item in items],
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO entries (log, idx, envelope, kind) VALUES (%s, %s, %s, %s)",
                    [(log, size + i, item.envelope, item.kind) for i, item in enumerate(items)],
                )
                if plan.nodes:
                    cur.executemany(
                        "INSERT INTO nodes (log, level, idx, hash) VALUES (%s, %s, %s, %s)",
                        [(log, lvl, idx, h) for lvl, idx, h in plan.nodes],
                    )
                bodies = [item.body for item in items if item.body is not None]
                if bodies:
                    cur.executemany(
                        "INSERT INTO bodies (digest, log, salt, content, nonce, subject)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(b.digest, log, b.salt, b.content, b.nonce, b.subject) for b in bodies],
                    )
        return size

    def add_checkpoint(self, log: str, sign: CheckpointSigner) -> StoredCheckpoint:
        with self._write(log, "signing a checkpoint") as conn:
            size = _durable_size(conn, log)
            latest = _latest_checkpoint(conn, log)
            checkpoint = sign(size, lambda ids: self._lookup_in(conn, log, ids), latest)
            if latest is not None and checkpoint.size <= latest.size:
                return latest  # nothing new was signed
            conn.execute(
                "INSERT INTO checkpoints (log, size, root, note) VALUES (%s, %s, %s, %s)",
                (log, checkpoint.size, checkpoint.root, checkpoint.note),
            )
        return checkpoint

    def delete_bodies(self, log: str, subject: str) -> list[str]:
        with self._connection("erasing bodies") as conn, conn.transaction():
            rows = conn.execute(
                "DELETE FROM bodies WHERE log = %s AND subject = %s RETURNING digest",
                (log, subject),
            ).fetchall()
            conn.execute("DELETE FROM subject_keys WHERE log = %s AND subject = %s", (log, subject))
        return sorted(str(r[0]) for r in rows)

    def put_subject_key(self, log: str, subject: str, wrapped: bytes) -> bytes:
        with self._connection("storing a subject key") as conn, conn.transaction():
            conn.execute(
                "INSERT INTO subject_keys (log, subject, wrapped_key) VALUES (%s, %s, %s)"
                " ON CONFLICT (log, subject) DO NOTHING",
                (log, subject, wrapped),
            )
            row = conn.execute(
                "SELECT wrapped_key FROM subject_keys WHERE log = %s AND subject = %s",
                (log, subject),
            ).fetchone()
        if row is None:  # erased between the two statements
            raise StoreError(f"subject key for {subject!r} vanished while it was being stored")
        return bytes(row[0])

    def subject_keys(self) -> list[tuple[str, str, bytes]]:
        rows = self._query(
            "SELECT log, subject, wrapped_key FROM subject_keys ORDER BY log, subject",
            (),
            "reading subject keys",
        )
        return [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def replace_subject_key(self, log: str, subject: str, old: bytes, new: bytes) -> bool:
        with self._connection("re-wrapping a subject key") as conn, conn.transaction():
            cursor = conn.execute(
                "UPDATE subject_keys SET wrapped_key = %s WHERE log = %s AND subject = %s"
                " AND wrapped_key = %s",
                (new, log, subject, old),
            )
            return cursor.rowcount == 1

    def _lookup_in(self, conn: Connection, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """A node lookup for callbacks: reads inside the caller's transaction."""
        try:
            return _lookup_nodes(conn, log, ids)
        except psycopg.Error as exc:
            raise self._translate(exc, "reading tree nodes") from exc


def _configure(conn: Connection) -> None:
    # Appends read the size after taking the log's lock, so each statement needs a
    # fresh snapshot, whatever default_transaction_isolation the server has.
    conn.isolation_level = IsolationLevel.READ_COMMITTED


def _configure_read_only(conn: Connection) -> None:
    _configure(conn)
    conn.execute("SET default_transaction_read_only = on")


def _durable_size(conn: Connection, log: str) -> int:
    row = conn.execute(_SIZE_SQL, (log,)).fetchone()
    return int(row[0]) if row else 0


def _lookup_nodes(conn: Connection, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT n.level, n.idx, n.hash FROM nodes AS n"
        " JOIN unnest(%s::integer[], %s::bigint[]) AS q(level, idx)"
        " ON n.level = q.level AND n.idx = q.idx WHERE n.log = %s",
        ([lvl for lvl, _ in ids], [idx for _, idx in ids], log),
    ).fetchall()
    return {(int(lvl), int(idx)): bytes(h) for lvl, idx, h in rows}


def _latest_checkpoint(conn: Connection, log: str) -> StoredCheckpoint | None:
    row = conn.execute(
        "SELECT size, root, note FROM checkpoints WHERE log = %s ORDER BY size DESC LIMIT 1",
        (log,),
    ).fetchone()
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


def _describe(params: dict[str, Any]) -> str:
    """host:port/database, as libpq will resolve them, never the password."""
    host = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    user = str(params.get("user") or os.environ.get("PGUSER") or "")
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or user or "postgres")
    return f"{host or 'localhost'}:{port}/{dbname}"


_CONNECT_PREFIX = re.compile(
    r"^(connection failed: )?(connection to server (at|on) .*? failed: )?(FATAL: +)?"
)


def _connect_reason(exc: psycopg.Error) -> str:
    """The gist of a libpq connection failure, e.g. 'database "x" does not exist'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    # With several hosts or addresses libpq lists one failure per line; keep the last.
    reasons = [_CONNECT_PREFIX.sub("", line) for line in lines if "failed" in line]
    reason = reasons[-1] if reasons else _CONNECT_PREFIX.sub("", lines[0])
    reason = reason.removeprefix("- ")
    return reason or lines[0]


def _translate(
    exc: psycopg.Error, where: str, doing: str, clean: Callable[[str], str] = str.strip
) -> StoreError:
    primary = exc.diag.message_primary if exc.sqlstate else None
    text = clean(primary or str(exc) or type(exc).__name__)
    state = exc.sqlstate or ""
    if "append-only" in text or "only erased" in text:
        return StoreError(f"refused: {text}")
    if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
        return StoreCorruptError(
            f"PostgreSQL database {where} is damaged ({text}) while {doing}",
            hint="restore it from a backup or an exported bundle; run 'flowloom log verify'",
        )
    connection_lost = state.startswith("08") or state in ("57P01", "57P02", "57P03")
    if connection_lost or (isinstance(exc, psycopg.OperationalError) and not state):
        return StoreUnavailableError(
            f"lost PostgreSQL at {where} while {doing}: {text}", hint=_UNAVAILABLE_HINT
        )
    return StoreError(f"database error while {doing}: {text}")
