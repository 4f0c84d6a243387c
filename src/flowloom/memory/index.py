"""The memory index: the knowledge graph and the full-text documents, in the ledger's database.

Data model (own tables beside the ledger's, own numbered migrations per dialect in
``memory/migrations/{sqlite,postgres}``, applied versions in ``memory_migrations``):

- memory_state(log, consumed, last_leaf): how many ledger entries of the log have been
  projected, and the leaf hash of the last one (a ledger that no longer has that entry
  was replaced or rolled back: the index is rebuilt).
- memory_entities(log, name, entity_type, seq, entry, commit_sha, session, ts): graph
  nodes; ``seq`` orders them deterministically (ledger index × 65536 + position).
- memory_relations(log, source, target, relation_type, seq, entry, commit_sha, session).
- memory_docs(id, log, kind, ref, title, body, author, author_alt, ts, entry, commit_sha,
  session, digest): what search finds — decisions, prompts, replies, observations and
  explicit entities. ``digest`` is the ledger body a document was read from, so an
  erasure removes its text. Observations are the documents of kind ``observation``
  whose ``ref`` is the entity name.
- memory_doc_files(doc, path): the files a document is about (the ``--file`` filter).
- memory_commits(log, sha): every commit some document was made on (branch scoping).
- memory_vectors(doc, log, model, vec) and memory_vector_state(log, model, upto): the
  optional semantic search's embeddings (float32 little-endian) and how far embedding
  has gone; see `flowloom.memory.semantic`.
- Full text: SQLite FTS5 external-content table ``memory_fts`` kept by triggers (porter
  stemmer, bm25); PostgreSQL a generated ``tsvector`` column with a GIN index (english
  configuration, ts_rank, ts_headline).

Nothing here is authoritative: every row derives from ledger events, so dropping these
tables and projecting the ledger again gives the same graph.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import StoreError
from flowloom.memory.interface import Hit
from flowloom.memory.query import Terms
from flowloom.store.migrate import load_migrations

if TYPE_CHECKING:
    from flowloom.store.interface import Store

__all__ = [
    "MAX_INDEXED_CHARS",
    "RANK_WINDOW",
    "DocRow",
    "ItemContext",
    "MemoryIndex",
    "SearchSpec",
    "Writer",
]

MAX_INDEXED_CHARS: Final = 100_000
"""Text beyond this many characters of one body is not indexed (PostgreSQL caps a
tsvector at 1 MB, and nobody reads a snippet from the middle of a 16 MB prompt)."""

_SNIPPET_WORDS: Final = 16
RANK_WINDOW: Final = 1000
FILTER_WINDOW: Final = 2000
"""Ranking considers the newest this-many matches of a query (after its filters): a
word in a hundred thousand items is not ranked across all of them on every search."""
_TITLE_CHARS: Final = 100


def first_line(text: str) -> str:
    """A display title for a text without one: its first non-blank line, shortened."""
    for line in text.splitlines():
        if line.strip():
            line = " ".join(line.split())
            return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1] + "…"
    return ""


@dataclass(frozen=True)
class ItemContext:
    """Where an indexed item came from: its ledger entry and that event's context."""

    entry: int
    ts: str
    commit: str | None = None
    session: str | None = None
    author: str | None = None
    author_alt: str | None = None


@dataclass(frozen=True)
class DocRow:
    """A searchable document to add."""

    kind: str
    ref: str
    title: str
    body: str
    digest: str | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchSpec:
    """A search, already validated: terms and filters in index terms."""

    terms: Terms
    any_word: bool = False
    kinds: tuple[str, ...] | None = None
    author: str | None = None
    file: str | None = None
    since: str | None = None
    until: str | None = None
    hidden_commits: tuple[str, ...] | None = None
    session: str | None = None
    limit: int = 20


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; neither index needs it.
    return text.replace("\x00", " ")[:MAX_INDEXED_CHARS]


def _exact(text: str) -> str | None:
    """The ``exact`` column for a text: None when the body holds it as it is."""
    if "\x00" not in text and len(text) <= MAX_INDEXED_CHARS:
        return None
    return json.dumps(text)


def _text_of(body: object, exact: object) -> str:
    return str(body) if exact is None else str(json.loads(str(exact)))


def _sqlite_statements(script: str) -> Iterator[str]:
    """Statements of a script, triggers (with inner semicolons) kept whole."""
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


class Writer:
    """Index changes inside one transaction (from `MemoryIndex.write`)."""

    def __init__(self, index: MemoryIndex) -> None:
        self._ix = index
        self._log = index.log

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # Text from any ledger event must not stop the projection: PostgreSQL refuses
        # NUL in text, so both dialects store it as a space.
        clean = [p.replace("\x00", " ") if isinstance(p, str) else p for p in params]
        return self._ix._execute(sql, clean)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A statement of another index part (`flowloom.memory.semantic`) in this transaction."""
        return self._x(sql, params)

    # -- progress ----------------------------------------------------------------------

    def consumed(self) -> tuple[int, bytes | None]:
        return self._ix._consumed()

    def set_consumed(self, consumed: int, last_leaf: bytes | None) -> None:
        self._x(
            "INSERT INTO memory_state (log, consumed, last_leaf) VALUES (?, ?, ?) "
            "ON CONFLICT (log) DO UPDATE SET consumed = excluded.consumed, "
            "last_leaf = excluded.last_leaf",
            (self._log, consumed, last_leaf),
        )

    def reset(self) -> None:
        """Forget everything indexed for this log."""
        log = (self._log,)
        if self._ix.dialect == "sqlite":
            self._x(
                "DELETE FROM memory_doc_files WHERE doc IN "
                "(SELECT id FROM memory_docs WHERE log = ?)",
                log,
            )
        for table in (
            "memory_vectors",
            "memory_vector_state",
            "memory_docs",
            "memory_entities",
            "memory_relations",
            "memory_commits",
            "memory_state",
        ):
            self._x(f"DELETE FROM {table} WHERE log = ?", log)

    # -- entities and relations --------------------------------------------------------

    def entity_type(self, name: str) -> str | None:
        row = self._x(
            "SELECT entity_type FROM memory_entities WHERE log = ? AND name = ?",
            (self._log, name),
        ).fetchone()
        return None if row is None else str(row[0])

    def add_entity(self, name: str, entity_type: str, seq: int, ctx: ItemContext) -> bool:
        """Add a node unless one of that name exists (the first type stays)."""
        cur = self._x(
            "INSERT INTO memory_entities "
            "(log, name, entity_type, seq, entry, commit_sha, session, ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log, name) DO NOTHING",
            (self._log, name, entity_type, seq, ctx.entry, ctx.commit, ctx.session, ctx.ts),
        )
        return bool(cur.rowcount)

    def delete_entity(self, name: str) -> bool:
        cur = self._x("DELETE FROM memory_entities WHERE log = ? AND name = ?", (self._log, name))
        self._x(
            "DELETE FROM memory_relations WHERE log = ? AND (source = ? OR target = ?)",
            (self._log, name, name),
        )
        self._x(
            "DELETE FROM memory_docs WHERE log = ? AND kind IN ('observation', 'entity') "
            "AND ref = ?",
            (self._log, name),
        )
        return bool(cur.rowcount)

    def add_relation(
        self, source: str, target: str, relation_type: str, seq: int, ctx: ItemContext
    ) -> bool:
        cur = self._x(
            "INSERT INTO memory_relations "
            "(log, source, target, relation_type, seq, entry, commit_sha, session) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (log, source, target, relation_type) DO NOTHING",
            (
                self._log,
                source,
                target,
                relation_type,
                seq,
                ctx.entry,
                ctx.commit,
                ctx.session,
            ),
        )
        return bool(cur.rowcount)

    def delete_relation(self, source: str, target: str, relation_type: str) -> bool:
        cur = self._x(
            "DELETE FROM memory_relations WHERE log = ? AND source = ? AND target = ? "
            "AND relation_type = ?",
            (self._log, source, target, relation_type),
        )
        return bool(cur.rowcount)

    # -- documents ---------------------------------------------------------------------

    def has_observation(self, entity: str, content: str) -> bool:
        row = self._x(
            "SELECT 1 FROM memory_docs WHERE log = ? AND kind = 'observation' AND ref = ? "
            "AND body = ? AND exact IS NOT DISTINCT FROM ?",
            (self._log, entity, _clean(content), _exact(content)),
        ).fetchone()
        return row is not None

    def delete_observation(self, entity: str, content: str) -> int:
        """Delete every copy of an observation (as the reference server does)."""
        cur = self._x(
            "DELETE FROM memory_docs WHERE log = ? AND kind = 'observation' AND ref = ? "
            "AND body = ? AND exact IS NOT DISTINCT FROM ?",
            (self._log, entity, _clean(content), _exact(content)),
        )
        return int(cur.rowcount)

    def add_doc(self, doc: DocRow, ctx: ItemContext) -> int:
        row = self._x(
            "INSERT INTO memory_docs (log, kind, ref, title, body, exact, author, author_alt, "
            "ts, entry, commit_sha, session, digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                self._log,
                doc.kind,
                doc.ref,
                _clean(doc.title),
                _clean(doc.body),
                _exact(doc.body) if doc.kind == "observation" else None,
                ctx.author,
                ctx.author_alt,
                ctx.ts,
                ctx.entry,
                ctx.commit,
                ctx.session,
                doc.digest,
            ),
        ).fetchone()
        doc_id = int(row[0])
        for path in dict.fromkeys(doc.files):
            self._x("INSERT INTO memory_doc_files (doc, path) VALUES (?, ?)", (doc_id, path))
        if ctx.commit is not None:
            self._x(
                "INSERT INTO memory_commits (log, sha) VALUES (?, ?) "
                "ON CONFLICT (log, sha) DO NOTHING",
                (self._log, ctx.commit),
            )
        return doc_id

    def delete_docs_with_bodies(self, digests: Sequence[str]) -> int:
        """Remove the documents read from these (erased) bodies, text and all."""
        removed = 0
        for digest in digests:
            cur = self._x(
                "DELETE FROM memory_docs WHERE digest = ? AND log = ?", (digest, self._log)
            )
            removed += int(cur.rowcount)
        return removed


class MemoryIndex:
    """Connection to the index tables of one log, in the database of the ledger's store.

    A second connection (SQLite) or a connection of its own (PostgreSQL) to the same
    database, so the ledger's store needs no change; one lock serialises its use.
    """

    def __init__(self, store: Store, log: str) -> None:
        self.log = log
        self.dialect = "postgres" if store.dialect == "postgres" else "sqlite"
        self._lock = threading.RLock()
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        if store.dialect == "postgres":
            import psycopg  # the store already needs it

            url = str(getattr(store, "url", ""))
            try:
                self._pg = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise StoreError(
                    "cannot open the memory index in PostgreSQL: "
                    f"{' '.join(str(exc).split())[:200]}"
                ) from exc
        else:
            # The in-memory store gets an in-memory index, for tests and demos.
            path = (
                str(getattr(store, "path", ":memory:")) if store.dialect == "sqlite" else ":memory:"
            )
            try:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=60000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the memory index in {path}: {exc}") from exc
            self._sqlite = conn
        self._migrate()

    def close(self) -> None:
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None
            if self._pg is not None:
                self._pg.close()
                self._pg = None

    # -- plumbing ----------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            if self._sqlite is not None:
                return self._sqlite.execute(sql, params)
            if self._pg is None:
                raise StoreError("the memory index is closed")
            return self._pg.execute(sql.replace("?", "%s"), params)
        except sqlite3.Error as exc:
            raise StoreError(f"memory index: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise StoreError(f"memory index: {' '.join(str(exc).split())[:300]}") from exc
            raise

    @contextlib.contextmanager
    def _transaction(self, *, lock_key: str) -> Iterator[None]:
        with self._lock:
            if self._sqlite is not None:
                self._execute("BEGIN IMMEDIATE")
            else:
                self._execute("BEGIN")
                self._execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (lock_key,))
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    self._execute("ROLLBACK")
                raise
            self._execute("COMMIT")

    def _migrate(self) -> None:
        known = load_migrations(self.dialect, "flowloom.memory", "memory migrations")
        try:
            # The common case, an up-to-date index, takes no lock.
            row = self._execute("SELECT MAX(version) FROM memory_migrations").fetchone()
            if row is not None and row[0] == len(known):
                return
        except StoreError:
            pass  # no table yet: the careful path below creates it
        with self._transaction(lock_key="flowloom-memory-migrations"):
            self._execute(
                "CREATE TABLE IF NOT EXISTS memory_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            applied = {
                int(r[0]) for r in self._execute("SELECT version FROM memory_migrations").fetchall()
            }
            if applied and max(applied) > len(known):
                raise StoreError(
                    f"the memory index was written by a newer FlowLoom (schema {max(applied)})",
                    hint="upgrade FlowLoom",
                )
            for migration in known:
                if migration.version in applied:
                    continue
                if self._sqlite is not None:
                    for statement in _sqlite_statements(migration.sql):
                        self._execute(statement)
                else:
                    self._execute(migration.sql)
                self._execute(
                    "INSERT INTO memory_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )

    @contextlib.contextmanager
    def write(self) -> Iterator[Writer]:
        """One write transaction; concurrent writers (threads, processes) take turns."""
        with self._transaction(lock_key=f"flowloom-memory:{self.log}"):
            yield Writer(self)

    def rebuild_text_index(self) -> None:
        """Rebuild the full-text index from the documents (SQLite), compact, in one segment.

        After a full re-projection: it also repairs an index that drifted from its
        documents (say, someone dropped the triggers that keep it).
        """
        if self.dialect == "sqlite":
            with self._lock:
                self._execute("INSERT INTO memory_fts (memory_fts) VALUES ('rebuild')")

    # -- reads -------------------------------------------------------------------------

    def _consumed(self) -> tuple[int, bytes | None]:
        row = self._execute(
            "SELECT consumed, last_leaf FROM memory_state WHERE log = ?", (self.log,)
        ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]), None if row[1] is None else bytes(row[1])

    def consumed(self) -> tuple[int, bytes | None]:
        with self._lock:
            return self._consumed()

    def _names_clause(self, column: str, names: Sequence[Any] | None) -> tuple[str, list[Any]]:
        if names is None:
            return "", []
        if self.dialect == "sqlite":
            return f" AND {column} IN (SELECT value FROM json_each(?))", [json.dumps(list(names))]
        return f" AND {column} = ANY(?)", [list(names)]

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`` AND column IN (values)`` in this dialect, with its parameters."""
        return self._names_clause(column, values)

    def entities(self, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(name, type) in creation order; all of them, or those named."""
        clause, params = self._names_clause("name", names)
        with self._lock:
            rows = self._execute(
                f"SELECT name, entity_type FROM memory_entities WHERE log = ?{clause} ORDER BY seq",
                [self.log, *params],
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def observations(self, names: Sequence[str] | None = None) -> dict[str, list[str]]:
        clause, params = self._names_clause("ref", names)
        with self._lock:
            rows = self._execute(
                "SELECT ref, body, exact FROM memory_docs WHERE log = ? AND kind = 'observation'"
                f"{clause} ORDER BY id",
                [self.log, *params],
            ).fetchall()
        found: dict[str, list[str]] = {}
        for ref, body, exact in rows:
            found.setdefault(str(ref), []).append(_text_of(body, exact))
        return found

    def relations(self, touching: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
        """(source, target, type) in creation order; all, or those touching a name."""
        with self._lock:
            if touching is None:
                rows = self._execute(
                    "SELECT source, target, relation_type FROM memory_relations WHERE log = ? "
                    "ORDER BY seq",
                    (self.log,),
                ).fetchall()
            else:
                a, pa = self._names_clause("source", touching)
                b, pb = self._names_clause("target", touching)
                rows = self._execute(
                    "SELECT source, target, relation_type FROM memory_relations "
                    f"WHERE log = ? AND (1 = 0 OR (1 = 1{a}) OR (1 = 1{b})) ORDER BY seq",
                    [self.log, *pa, *pb],
                ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def known_commits(self) -> list[str]:
        with self._lock:
            rows = self._execute(
                "SELECT sha FROM memory_commits WHERE log = ?", (self.log,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read of another index part (`flowloom.memory.semantic`)."""
        with self._lock:
            return list(self._execute(sql, params).fetchall())

    def search(self, spec: SearchSpec) -> list[Hit]:
        return [hit for _, hit in self.search_ids(spec)]

    def filters(self, spec: SearchSpec) -> tuple[str, list[Any]]:
        """The WHERE condition (over ``memory_docs d``) of a search's filters and scope."""
        where: list[str] = ["d.log = ?"]
        params: list[Any] = [self.log]
        if spec.kinds is not None:
            clause, extra = self._names_clause("d.kind", spec.kinds)
            where.append(clause.removeprefix(" AND "))
            params += extra
        if spec.author is not None:
            where.append("(d.author = ? OR d.author_alt = ?)")
            params += [spec.author, spec.author]
        if spec.since is not None:
            where.append("d.ts >= ?")
            params.append(spec.since)
        if spec.until is not None:
            where.append("d.ts < ?")
            params.append(spec.until)
        if spec.file is not None:
            folder = spec.file.rstrip("/") + "/"
            # A range instead of LIKE: no pattern characters to escape, index-friendly.
            where.append(
                "EXISTS (SELECT 1 FROM memory_doc_files f WHERE f.doc = d.id AND "
                "(f.path = ? OR (f.path >= ? AND f.path < ?)))"
            )
            params += [spec.file, folder, folder[:-1] + "0"]
        if spec.hidden_commits is not None and spec.hidden_commits:
            hidden, extra = self._names_clause("d.commit_sha", spec.hidden_commits)
            visible = f"(d.commit_sha IS NULL OR NOT (1 = 1{hidden})"
            params += extra
            if spec.session is not None:
                visible += " OR d.session = ?"
                params.append(spec.session)
            where.append(visible + ")")
        return " AND ".join(where), params

    def search_ids(self, spec: SearchSpec) -> list[tuple[int, Hit]]:
        """Ranked full-text hits, each with its document's id."""
        if not spec.terms:
            return []
        where, params = self.filters(spec)
        with self._lock:
            if self.dialect == "sqlite":
                rows = self._search_sqlite(spec, where, params)
            else:
                rows = self._search_postgres(spec, where, params)
            files = self._files([int(r[0]) for r in rows])
        return self._hits(rows, files, sqlite_rank=self.dialect == "sqlite")

    def ranked_ids(self, spec: SearchSpec) -> list[int]:
        """Ids of the best full-text matches, best first, without snippets (candidates)."""
        if not spec.terms:
            return []
        where, params = self.filters(spec)
        with self._lock:
            if self.dialect == "sqlite":
                source = "FROM memory_fts JOIN memory_docs d ON d.id = memory_fts.rowid"
                match = spec.terms.fts5(any_word=spec.any_word)
                rows = self._ranked_filtered_sqlite(match, source, where, params, spec.limit)
            else:
                rows = self._execute(
                    "SELECT w.id FROM (SELECT d.id, d.tsv, q.q FROM memory_docs d, "
                    "(SELECT to_tsquery('english', ?) AS q) q "
                    f"WHERE d.tsv @@ q.q AND {where} ORDER BY d.id DESC LIMIT ?) w "
                    "ORDER BY ts_rank(w.tsv, w.q) DESC LIMIT ?",
                    [spec.terms.tsquery(any_word=spec.any_word), *params, RANK_WINDOW, spec.limit],
                ).fetchall()
        return [int(r[0]) for r in rows]

    def docs(self, doc_ids: Sequence[int]) -> dict[int, Hit]:
        """Hits for documents found another way (semantic search): no marked snippet.

        The snippet is the start of the text; the score is 0 (the caller ranks).
        """
        if not doc_ids:
            return {}
        clause, params = self._names_clause("d.id", list(doc_ids))
        with self._lock:
            rows = self._execute(
                "SELECT d.id, d.kind, d.ref, d.title, substr(d.body, 1, 200), 0.0, d.entry, "
                "d.ts, d.commit_sha, d.author, d.session, substr(d.body, 1, 400) "
                f"FROM memory_docs d WHERE 1 = 1{clause}",
                params,
            ).fetchall()
            files = self._files([int(r[0]) for r in rows])
        return dict(self._hits(rows, files, sqlite_rank=False))

    @staticmethod
    def _hits(
        rows: Sequence[Any], files: dict[int, list[str]], *, sqlite_rank: bool
    ) -> list[tuple[int, Hit]]:
        hits = []
        for row in rows:
            rank = float(row[5])
            hits.append(
                (
                    int(row[0]),
                    Hit(
                        kind=str(row[1]),
                        id=str(row[2]),
                        title=str(row[3]) or first_line(str(row[11])),
                        snippet=" ".join(str(row[4]).split()),
                        score=round(-rank if sqlite_rank else rank, 6),
                        entry=int(row[6]),
                        ts=str(row[7]),
                        commit=row[8],
                        author=row[9],
                        session=row[10],
                        files=tuple(files.get(int(row[0]), ())),
                    ),
                )
            )
        return hits

    def _search_sqlite(self, spec: SearchSpec, where: str, params: list[Any]) -> list[Any]:
        """Rank recent matches with bm25, then build snippets for the best only.

        bm25() and snippet() cost per row, so: find the rowid of the N-th newest match
        (FTS5 walks its doclist backwards), rank only the matches from there on, and
        build snippets for the `limit` best alone. Without filters, in a database holding
        one log, ranking reads the full-text index alone, not the documents.
        """
        match = spec.terms.fts5(any_word=spec.any_word)
        source = "FROM memory_fts JOIN memory_docs d ON d.id = memory_fts.rowid"
        # Two index probes (not "log <> ?", which scans): is any other log indexed?
        bare = (
            where == "d.log = ?"
            and not self._execute(
                "SELECT EXISTS (SELECT 1 FROM memory_docs WHERE log < ?)"
                " OR EXISTS (SELECT 1 FROM memory_docs WHERE log > ?)",
                [self.log, self.log],
            ).fetchone()[0]
        )
        if bare:
            ranked = self._ranked_sqlite(match, "FROM memory_fts", "", [], spec.limit)
        else:
            ranked = self._ranked_filtered_sqlite(match, source, where, params, spec.limit)
        rows = []
        for doc_id, rank in ranked:
            row = self._execute(
                "SELECT d.id, d.kind, d.ref, d.title, "
                f"snippet(memory_fts, -1, '«', '»', '…', {_SNIPPET_WORDS}), ?, d.entry, "
                f"d.ts, d.commit_sha, d.author, d.session, substr(d.body, 1, 400) {source} "
                "WHERE memory_fts MATCH ? AND memory_fts.rowid = ?",
                [rank, match, doc_id],
            ).fetchone()
            if row is not None:
                rows.append(row)
        return rows

    def _ranked_sqlite(
        self, match: str, source: str, where: str, params: list[Any], limit: int
    ) -> list[Any]:
        """(rowid, bm25) of the best among the newest RANK_WINDOW matches (after filters)."""
        bound = self._execute(
            f"SELECT memory_fts.rowid {source} WHERE memory_fts MATCH ?{where} "
            "ORDER BY memory_fts.rowid DESC LIMIT 1 OFFSET ?",
            [match, *params, RANK_WINDOW - 1],
        ).fetchone()
        window = "" if bound is None else f" AND memory_fts.rowid >= {int(bound[0])}"
        return list(
            self._execute(
                f"SELECT memory_fts.rowid, bm25(memory_fts, 4.0, 1.0) AS rank {source} "
                f"WHERE memory_fts MATCH ?{where}{window} ORDER BY rank LIMIT ?",
                [match, *params, limit],
            ).fetchall()
        )

    def _ranked_filtered_sqlite(
        self, match: str, source: str, where: str, params: list[Any], limit: int
    ) -> list[Any]:
        """With filters: rank the newest FILTER_WINDOW matches of the words, then filter.

        When fewer than `limit` of those pass the filters (a narrow filter, or older
        items), the newest RANK_WINDOW matches that pass the filters are ranked instead:
        slower, as the filters are then checked on every match until enough are found.
        """
        bound = self._execute(
            "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ? "
            "ORDER BY rowid DESC LIMIT 1 OFFSET ?",
            [match, FILTER_WINDOW - 1],
        ).fetchone()
        window = "" if bound is None else f" AND memory_fts.rowid >= {int(bound[0])}"
        ranked = list(
            self._execute(
                "WITH ranked AS MATERIALIZED (SELECT memory_fts.rowid AS id, "
                "bm25(memory_fts, 4.0, 1.0) AS rank FROM memory_fts "
                f"WHERE memory_fts MATCH ?{window}) "
                "SELECT ranked.id, ranked.rank FROM ranked JOIN memory_docs d ON d.id = ranked.id "
                f"WHERE {where} ORDER BY ranked.rank LIMIT ?",
                [match, *params, limit],
            ).fetchall()
        )
        if bound is None or len(ranked) >= limit:
            return ranked
        return self._ranked_sqlite(match, source, f" AND {where}", params, limit)

    def _search_postgres(self, spec: SearchSpec, where: str, params: list[Any]) -> list[Any]:
        """Rank the newest RANK_WINDOW matches with ts_rank; headlines for the best only."""
        sql = (
            # the headline comes from the title when it matches there (as FTS5's snippet
            # takes the best column), else from the body
            "SELECT h.id, h.kind, h.ref, h.title, ts_headline('english', "
            "CASE WHEN to_tsvector('english', h.title) @@ h.q THEN h.title ELSE h.body END, h.q, "
            "'StartSel=«, StopSel=», MaxWords=24, MinWords=8, MaxFragments=1, "
            "FragmentDelimiter=…'), h.rank, h.entry, h.ts, h.commit_sha, h.author, h.session, "
            "substr(h.body, 1, 400) FROM ("
            " SELECT w.id, w.q, ts_rank(w.tsv, w.q) AS rank, w.kind, w.ref, w.title, w.body,"
            " w.entry, w.ts, w.commit_sha, w.author, w.session FROM ("
            "  SELECT d.*, q.q FROM memory_docs d, (SELECT to_tsquery('english', ?) AS q) q"
            f"  WHERE d.tsv @@ q.q AND {where} ORDER BY d.id DESC LIMIT ?"
            " ) w ORDER BY rank DESC LIMIT ?"
            ") h ORDER BY h.rank DESC"
        )
        args = [spec.terms.tsquery(any_word=spec.any_word), *params, RANK_WINDOW, spec.limit]
        return list(self._execute(sql, args).fetchall())

    def _files(self, doc_ids: Sequence[int]) -> dict[int, list[str]]:
        if not doc_ids:
            return {}
        clause, params = self._names_clause("doc", doc_ids)
        rows = self._execute(
            f"SELECT doc, path FROM memory_doc_files WHERE 1 = 1{clause} ORDER BY path", params
        ).fetchall()
        found: dict[int, list[str]] = {}
        for doc, path in rows:
            found.setdefault(int(doc), []).append(str(path))
        return found
