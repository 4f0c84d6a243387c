"""The Store contract (flowloom.store.interface), checked against every implementation.

Everything here runs on sqlite, postgres and memory through the `store` fixture; what
needs raw SQL (append-only triggers, schema_migrations) or several processes runs on
sqlite and postgres.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psycopg
import pytest

from flowloom.errors import StoreError
from flowloom.store.interface import (
    AppendPlan,
    CheckpointSigner,
    NodeLookup,
    PendingEntry,
    Store,
    StoredBody,
    StoredCheckpoint,
)
from flowloom.store.migrate import load_migrations
from flowloom.store.postgres import PostgresStore
from flowloom.store.sqlite import SQLiteStore

LOG = "example.com/project"
OTHER = "example.com/other"

# -- helpers ---------------------------------------------------------------------


def leaf_plan(size: int, lookup: NodeLookup, leaf_hashes: Sequence[bytes]) -> AppendPlan:
    """A tree extender that stores the leaves only (no Merkle module needed)."""
    return AppendPlan([(0, size + i, leaf) for i, leaf in enumerate(leaf_hashes)])


def leaf_of(envelope: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + envelope).digest()


def make_entry(tag: str, kind: str = "note", body: StoredBody | None = None) -> PendingEntry:
    envelope = json.dumps({"tag": tag, "kind": kind}, sort_keys=True).encode()
    return PendingEntry(envelope, leaf_of(envelope), kind, body)


def tag_of(envelope: bytes) -> str:
    return str(json.loads(envelope)["tag"])


def make_body(
    digest: str, subject: str | None = "alice", nonce: bytes | None = b"n" * 12
) -> StoredBody:
    return StoredBody(
        digest, b"salt-" + digest.encode(), b"content-" + digest.encode(), nonce, subject
    )


def signer(note: str = "cp") -> CheckpointSigner:
    """A checkpoint signer that reads every leaf through the lookup it is given."""

    def sign(size: int, lookup: NodeLookup, latest: StoredCheckpoint | None) -> StoredCheckpoint:
        if latest is not None and latest.size >= size:
            return latest
        leaves = lookup([(0, i) for i in range(size)])
        assert len(leaves) == size, "the lookup must see every leaf inside the transaction"
        root = hashlib.sha256(b"".join(leaves[(0, i)] for i in range(size))).digest()
        return StoredCheckpoint(size, root, f"{note}\n{size}\n")

    return sign


def location(store: Store) -> str:
    """What another process needs to open the same database."""
    if isinstance(store, SQLiteStore):
        return store.path
    if isinstance(store, PostgresStore):
        return store.url
    raise AssertionError(f"no location for {store!r}")


def open_store(dialect: str, where: str) -> Store:
    if dialect == "sqlite":
        return SQLiteStore(where)
    if dialect == "postgres":
        return PostgresStore(where, min_size=1, max_size=2)
    raise AssertionError(dialect)


def check_log(store: Store, log: str, batches: dict[str, int]) -> None:
    """No gaps, no duplicates, every batch contiguous and in order, leaves match."""
    rows = list(store.entries(log))
    assert [row.index for row in rows] == list(range(len(rows)))
    assert store.size(log) == len(rows) == sum(batches.values())
    tags = [tag_of(row.envelope) for row in rows]
    assert len(set(tags)) == len(tags), "an entry was stored twice"
    positions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, tag in zip(rows, tags, strict=True):
        batch, _, item = tag.rpartition("-i")
        positions[batch].append((row.index, int(item)))
    assert {batch: len(found) for batch, found in positions.items()} == batches
    for batch, found in positions.items():
        first = found[0][0]
        assert found == [(first + i, i) for i in range(len(found))], f"batch {batch} split"
    assert list(store.level(log, 0)) == [leaf_of(row.envelope) for row in rows]


def _process_worker(
    dialect: str, where: str, worker: int, batches: int, per_batch: int, start: Barrier
) -> None:
    store = open_store(dialect, where)
    try:
        start.wait(timeout=120)
        for b in range(batches):
            items = [make_entry(f"p{worker}-b{b}-i{i}") for i in range(per_batch)]
            store.append(LOG, items, leaf_plan)
    finally:
        store.close()


class RawDB:
    """Plain SQL on the store's database, bypassing the store (sqlite3 / psycopg)."""

    def __init__(self, dialect: str, where: str) -> None:
        self.dialect = dialect
        self.where = where
        self.errors: tuple[type[Exception], ...] = (
            (sqlite3.DatabaseError,) if dialect == "sqlite" else (psycopg.Error,)
        )

    def execute(self, sql: str) -> list[tuple[object, ...]]:
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.where, isolation_level=None)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.where, autocommit=True) as pg:
            cur = pg.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def sql_store(request: pytest.FixtureRequest) -> Iterator[tuple[Store, RawDB]]:
    """A store with a database behind it, and raw SQL access to that database."""
    store: Store = request.getfixturevalue(
        "sqlite_store" if request.param == "sqlite" else "pg_store"
    )
    yield store, RawDB(request.param, location(store))


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def fresh_location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(dialect, where) of a database no store has opened yet."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "fresh.db")
    url: str = request.getfixturevalue("pg_url")
    return "postgres", url


# -- append and read -------------------------------------------------------------


def test_append_round_trip(store: Store) -> None:
    assert store.size(LOG) == 0
    assert store.logs() == []
    assert list(store.entries(LOG)) == []
    assert store.entry(LOG, 0) is None

    first = [make_entry(f"a-i{i}", kind="note" if i % 2 else "commit") for i in range(5)]
    assert store.append(LOG, first, leaf_plan) == 0
    second = [make_entry(f"b-i{i}") for i in range(3)]
    assert store.append(LOG, second, leaf_plan) == 5
    assert store.append(LOG, [], leaf_plan) == 8
    assert store.size(LOG) == 8

    rows = list(store.entries(LOG))
    assert [r.index for r in rows] == list(range(8))
    assert [r.envelope for r in rows] == [e.envelope for e in first + second]
    assert [r.kind for r in rows] == [e.kind for e in first + second]
    assert [r.index for r in store.entries(LOG, 2, 6)] == [2, 3, 4, 5]
    assert [r.index for r in store.entries(LOG, 6)] == [6, 7]
    assert [r.index for r in store.entries(LOG, kind="commit")] == [0, 2, 4]
    assert [r.index for r in store.entries(LOG, 1, 4, kind="note")] == [1, 3]
    assert list(store.entries(LOG, 8)) == []

    got = store.entry(LOG, 6)
    assert got is not None
    assert (got.index, got.envelope, got.kind) == (6, second[1].envelope, "note")
    assert store.entry(LOG, 8) is None
    assert store.entry(OTHER, 0) is None


def test_logs_are_independent(store: Store) -> None:
    assert store.append(LOG, [make_entry("a-i0"), make_entry("a-i1")], leaf_plan) == 0
    assert store.append(OTHER, [make_entry("b-i0")], leaf_plan) == 0
    assert store.append(LOG, [make_entry("a-i2")], leaf_plan) == 2
    assert store.size(LOG) == 3
    assert store.size(OTHER) == 1
    assert store.logs() == sorted([LOG, OTHER])
    assert [tag_of(r.envelope) for r in store.entries(OTHER)] == ["b-i0"]
    assert store.nodes(OTHER, [(0, 0), (0, 1)]) == {(0, 0): leaf_of(make_entry("b-i0").envelope)}


def test_many_entries_are_read_in_pages(store: Store) -> None:
    total = 4096 + 904
    for start in range(0, total, 1000):
        store.append(LOG, [make_entry(f"x-i{i}") for i in range(start, start + 1000)], leaf_plan)
    assert [r.index for r in store.entries(LOG)] == list(range(total))
    assert [r.index for r in store.entries(LOG, 4000, 4100)] == list(range(4000, 4100))
    assert len(list(store.level(LOG, 0))) == total
    assert len(list(store.level(LOG, 0, 4090))) == total - 4090


def test_contiguous_indices_under_threads(store: Store) -> None:
    threads, batches, per_batch = 8, 12, 7
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait(timeout=30)
            for b in range(batches):
                items = [make_entry(f"t{worker}-b{b}-i{i}") for i in range(per_batch)]
                store.append(LOG, items, leaf_plan)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    expected = {f"t{w}-b{b}": per_batch for w in range(threads) for b in range(batches)}
    check_log(store, LOG, expected)


@pytest.mark.parametrize(
    "dialect",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_contiguous_indices_under_processes(dialect: str, request: pytest.FixtureRequest) -> None:
    store: Store = request.getfixturevalue("sqlite_store" if dialect == "sqlite" else "pg_store")
    where = location(store)
    store.append(LOG, [make_entry("parent-b0-i0")], leaf_plan)
    processes, batches, per_batch = 3, 15, 9
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes)
    procs = [
        ctx.Process(target=_process_worker, args=(dialect, where, w, batches, per_batch, start))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * processes
    expected = {f"p{w}-b{b}": per_batch for w in range(processes) for b in range(batches)}
    expected["parent-b0"] = 1
    check_log(store, LOG, expected)


# -- tree nodes ------------------------------------------------------------------


def test_level_returns_leaves_in_order_and_stops_at_gaps(store: Store) -> None:
    items = [make_entry(f"l-i{i}") for i in range(6)]
    store.append(LOG, items, leaf_plan)
    leaves = [leaf_of(e.envelope) for e in items]
    assert list(store.level(LOG, 0)) == leaves
    assert list(store.level(LOG, 0, 2)) == leaves[2:]
    assert list(store.level(LOG, 0, 2, 5)) == leaves[2:5]
    assert list(store.level(LOG, 0, 6)) == []
    assert list(store.level(LOG, 1)) == []
    assert list(store.level(OTHER, 0)) == []

    # level 1 with a hole at index 1: the contiguous run from `start` only
    def with_gap(size: int, lookup: NodeLookup, hashes: Sequence[bytes]) -> AppendPlan:
        plan = leaf_plan(size, lookup, hashes)
        return AppendPlan([*plan.nodes, (1, 0, b"A" * 32), (1, 2, b"C" * 32), (1, 3, b"D" * 32)])

    store.append(LOG, [make_entry("g-i0")], with_gap)
    assert list(store.level(LOG, 1)) == [b"A" * 32]
    assert list(store.level(LOG, 1, 1)) == []
    assert list(store.level(LOG, 1, 2)) == [b"C" * 32, b"D" * 32]
    assert list(store.level(LOG, 1, 2, 3)) == [b"C" * 32]
    assert len(list(store.level(LOG, 0))) == 7


def test_nodes_lookup(store: Store) -> None:
    items = [make_entry(f"n-i{i}") for i in range(4)]

    def with_parents(size: int, lookup: NodeLookup, hashes: Sequence[bytes]) -> AppendPlan:
        plan = leaf_plan(size, lookup, hashes)
        return AppendPlan([*plan.nodes, (1, 0, b"p" * 32), (1, 1, b"q" * 32), (2, 0, b"r" * 32)])

    store.append(LOG, items, with_parents)
    leaves = [leaf_of(e.envelope) for e in items]
    assert store.nodes(LOG, []) == {}
    found = store.nodes(LOG, [(0, 0), (0, 3), (1, 1), (2, 0), (0, 4), (3, 0), (1, 2)])
    assert found == {(0, 0): leaves[0], (0, 3): leaves[3], (1, 1): b"q" * 32, (2, 0): b"r" * 32}
    assert store.nodes(OTHER, [(0, 0)]) == {}


def test_extend_sees_durable_size_and_stored_nodes(store: Store) -> None:
    first = [make_entry(f"s-i{i}") for i in range(3)]
    store.append(LOG, first, leaf_plan)
    seen: list[tuple[int, dict[tuple[int, int], bytes], list[bytes]]] = []

    def spy(size: int, lookup: NodeLookup, hashes: Sequence[bytes]) -> AppendPlan:
        seen.append((size, dict(lookup([(0, 0), (0, 2), (0, 3)])), list(hashes)))
        return leaf_plan(size, lookup, hashes)

    more = [make_entry("s-i3"), make_entry("s-i4")]
    assert store.append(LOG, more, spy) == 3
    size, found, hashes = seen[0]
    assert size == 3
    assert found == {(0, 0): leaf_of(first[0].envelope), (0, 2): leaf_of(first[2].envelope)}
    assert hashes == [e.leaf_hash for e in more]


# -- checkpoints -----------------------------------------------------------------


def test_checkpoints_only_grow(store: Store) -> None:
    assert store.latest_checkpoint(LOG) is None
    assert store.checkpoints(LOG) == []
    store.append(LOG, [make_entry(f"c-i{i}") for i in range(3)], leaf_plan)

    first = store.add_checkpoint(LOG, signer())
    assert first.size == 3
    assert store.latest_checkpoint(LOG) == first
    assert store.checkpoints(LOG) == [first]

    # Nothing new: the signer hands back the latest, which is returned, not re-stored.
    again = store.add_checkpoint(LOG, signer("other"))
    assert again == first
    assert store.checkpoints(LOG) == [first]

    # A signer that produces a different checkpoint of the same (or a smaller) size
    # does not get it stored: checkpoints only grow.
    def same_size(
        size: int, lookup: NodeLookup, latest: StoredCheckpoint | None
    ) -> StoredCheckpoint:
        assert latest == first
        return StoredCheckpoint(size, b"z" * 32, "forged\n")

    def smaller(size: int, lookup: NodeLookup, latest: StoredCheckpoint | None) -> StoredCheckpoint:
        return StoredCheckpoint(1, b"y" * 32, "older\n")

    store.add_checkpoint(LOG, same_size)
    store.add_checkpoint(LOG, smaller)
    assert store.checkpoints(LOG) == [first]
    assert store.latest_checkpoint(LOG) == first

    store.append(LOG, [make_entry("c-i3"), make_entry("c-i4")], leaf_plan)
    second = store.add_checkpoint(LOG, signer())
    assert second.size == 5
    assert store.checkpoints(LOG) == [first, second]
    assert store.latest_checkpoint(LOG) == second
    assert store.latest_checkpoint(OTHER) is None
    assert store.checkpoints(OTHER) == []


def test_checkpoint_of_an_empty_log(store: Store) -> None:
    empty = store.add_checkpoint(LOG, signer())
    assert empty.size == 0
    assert store.checkpoints(LOG) == [empty]
    assert store.add_checkpoint(LOG, signer()) == empty
    assert store.checkpoints(LOG) == [empty]


def test_checkpoint_signer_failure_stores_nothing(store: Store) -> None:
    store.append(LOG, [make_entry("f-i0")], leaf_plan)

    def failing(size: int, lookup: NodeLookup, latest: StoredCheckpoint | None) -> StoredCheckpoint:
        raise RuntimeError("signing key unavailable")

    with pytest.raises(RuntimeError, match="signing key unavailable"):
        store.add_checkpoint(LOG, failing)
    assert store.checkpoints(LOG) == []


# -- bodies and subject keys -----------------------------------------------------


def test_bodies_stored_read_and_erased(store: Store) -> None:
    b1 = make_body("d1", "alice")
    b2 = make_body("d2", "bob", nonce=None)
    b3 = make_body("d3", "alice")
    b4 = make_body("d4", None, nonce=None)
    items = [
        make_entry("b-i0", body=b1),
        make_entry("b-i1", body=b2),
        make_entry("b-i2"),
        make_entry("b-i3", body=b3),
        make_entry("b-i4", body=b4),
    ]
    store.append(LOG, items, leaf_plan)
    store.append(OTHER, [make_entry("o-i0", body=make_body("d5", "alice"))], leaf_plan)

    assert store.body("d1") == b1
    assert store.body("d2") == b2
    assert store.body("d4") == b4
    assert store.body("missing") is None
    assert sorted(store.bodies(LOG), key=lambda b: b.digest) == [b1, b2, b3, b4]
    assert store.body_digests(LOG, "alice") == ["d1", "d3"]
    assert store.body_digests(LOG, "bob") == ["d2"]
    assert store.body_digests(LOG, "carol") == []

    assert store.put_subject_key(LOG, "alice", b"wrapped-alice") == b"wrapped-alice"
    assert store.put_subject_key(LOG, "bob", b"wrapped-bob") == b"wrapped-bob"
    assert store.put_subject_key(OTHER, "alice", b"wrapped-alice-2") == b"wrapped-alice-2"

    assert store.delete_bodies(LOG, "alice") == ["d1", "d3"]
    assert store.body("d1") is None
    assert store.body("d3") is None
    assert store.body("d2") == b2
    assert store.subject_key(LOG, "alice") is None
    assert store.subject_key(LOG, "bob") == b"wrapped-bob"
    assert store.body_digests(LOG, "alice") == []
    assert sorted(b.digest for b in store.bodies(LOG)) == ["d2", "d4"]
    # the other log's subject of the same name is untouched, and envelopes stay
    assert store.body("d5") is not None
    assert store.subject_key(OTHER, "alice") == b"wrapped-alice-2"
    assert store.size(LOG) == 5
    assert store.delete_bodies(LOG, "alice") == []


def test_put_subject_key_first_writer_wins(store: Store) -> None:
    assert store.subject_key(LOG, "alice") is None
    assert store.put_subject_key(LOG, "alice", b"first") == b"first"
    assert store.put_subject_key(LOG, "alice", b"second") == b"first"
    assert store.subject_key(LOG, "alice") == b"first"

    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait(timeout=30)
        results.append(store.put_subject_key(LOG, "bob", f"key-{n}".encode()))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 8
    assert len(set(results)) == 1
    assert store.subject_key(LOG, "bob") == results[0]


# -- atomicity -------------------------------------------------------------------


def test_failure_in_extend_rolls_the_batch_back(store: Store) -> None:
    first = make_entry("r-i0", body=make_body("d0"))
    store.append(LOG, [first], leaf_plan)

    def failing(size: int, lookup: NodeLookup, hashes: Sequence[bytes]) -> AppendPlan:
        assert lookup([(0, 0)]) == {(0, 0): first.leaf_hash}
        raise RuntimeError("extender failed")

    batch = [make_entry("r-i1", body=make_body("d1")), make_entry("r-i2", body=make_body("d2"))]
    with pytest.raises(RuntimeError, match="extender failed"):
        store.append(LOG, batch, failing)
    assert store.size(LOG) == 1
    assert store.nodes(LOG, [(0, 1), (0, 2)]) == {}
    assert store.body("d1") is None
    assert store.body("d2") is None
    assert list(store.level(LOG, 0)) == [first.leaf_hash]
    # the store is still usable, and the next batch takes the next index
    assert store.append(LOG, batch, leaf_plan) == 1
    assert store.body("d2") is not None


def test_database_refusal_rolls_the_batch_back(store: Store) -> None:
    store.append(LOG, [make_entry("k-i0", body=make_body("dup"))], leaf_plan)
    # the second item's body digest already exists: the whole batch is refused
    batch = [make_entry("k-i1", body=make_body("new")), make_entry("k-i2", body=make_body("dup"))]
    with pytest.raises(StoreError):
        store.append(LOG, batch, leaf_plan)
    assert store.size(LOG) == 1
    assert store.body("new") is None
    assert store.nodes(LOG, [(0, 1), (0, 2)]) == {}

    # a plan that would overwrite a stored node is refused too
    def overwrite(size: int, lookup: NodeLookup, hashes: Sequence[bytes]) -> AppendPlan:
        return AppendPlan([*leaf_plan(size, lookup, hashes).nodes, (0, 0, b"x" * 32)])

    with pytest.raises(StoreError):
        store.append(LOG, [make_entry("k-i3")], overwrite)
    assert store.size(LOG) == 1
    assert store.nodes(LOG, [(0, 0)]) == {(0, 0): make_entry("k-i0").leaf_hash}


def test_closed_store_refuses_work(store: Store) -> None:
    store.append(LOG, [make_entry("z-i0")], leaf_plan)
    store.close()
    with pytest.raises(StoreError):
        store.size(LOG)
    with pytest.raises(StoreError):
        store.append(LOG, [make_entry("z-i1")], leaf_plan)


# -- the database itself (sqlite and postgres) -----------------------------------


def test_database_refuses_edits(sql_store: tuple[Store, RawDB]) -> None:
    store, raw = sql_store
    store.append(LOG, [make_entry(f"e-i{i}", body=make_body(f"d{i}")) for i in range(3)], leaf_plan)
    checkpoint = store.add_checkpoint(LOG, signer())

    refused = [
        "UPDATE entries SET kind = 'forged'",
        "DELETE FROM entries WHERE idx = 1",
        "UPDATE nodes SET hash = nodes.hash WHERE idx = 0",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "UPDATE bodies SET subject = 'mallory'",
    ]
    if raw.dialect == "postgres":
        refused += ["TRUNCATE entries", "TRUNCATE nodes", "TRUNCATE checkpoints"]
    for statement in refused:
        with pytest.raises(raw.errors) as info:
            raw.execute(statement)
        text = str(info.value)
        assert "append-only" in text or "only erased" in text, (statement, text)

    assert [r.kind for r in store.entries(LOG)] == ["note"] * 3
    assert len(list(store.level(LOG, 0))) == 3
    assert store.checkpoints(LOG) == [checkpoint]
    assert store.body_digests(LOG, "alice") == ["d0", "d1", "d2"]

    # bodies may be erased
    raw.execute("DELETE FROM bodies WHERE digest = 'd1'")
    assert store.body("d1") is None
    assert store.size(LOG) == 3


def _migration_rows(raw: RawDB) -> list[tuple[object, ...]]:
    return raw.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")


def test_migrations_recorded_once(sql_store: tuple[Store, RawDB]) -> None:
    store, raw = sql_store
    known = load_migrations(store.dialect)
    rows = _migration_rows(raw)
    assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in known]

    store.append(LOG, [make_entry("m-i0")], leaf_plan)
    again = open_store(raw.dialect, raw.where)
    try:
        assert again.size(LOG) == 1
    finally:
        again.close()
    assert _migration_rows(raw) == rows


def test_newer_schema_is_refused(sql_store: tuple[Store, RawDB]) -> None:
    store, raw = sql_store
    newer = len(load_migrations(store.dialect)) + 1
    raw.execute(
        f"INSERT INTO schema_migrations (version, name) VALUES ({newer}, 'from_the_future')"
    )
    with pytest.raises(StoreError, match="newer FlowLoom") as info:
        open_store(raw.dialect, raw.where)
    assert info.value.hint == "upgrade FlowLoom"


def test_concurrent_first_opens_migrate_once(fresh_location: tuple[str, str]) -> None:
    dialect, where = fresh_location
    opened: list[Store] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        try:
            barrier.wait(timeout=30)
            opened.append(open_store(dialect, where))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        assert len(opened) == 6
        opened[0].append(LOG, [make_entry("o-i0")], leaf_plan)
        assert all(s.size(LOG) == 1 for s in opened)
    finally:
        for s in opened:
            s.close()
    raw = RawDB(dialect, where)
    versions = [r[0] for r in _migration_rows(raw)]
    assert versions == [m.version for m in load_migrations(dialect)]


def test_subject_keys_are_listed_and_swapped_only_while_unchanged(store: Store) -> None:
    store.put_subject_key(LOG, "alice", b"under-old")
    store.put_subject_key(OTHER, "bob", b"bob-old")
    assert store.subject_keys() == [(OTHER, "bob", b"bob-old"), (LOG, "alice", b"under-old")]
    assert store.replace_subject_key(LOG, "alice", b"under-old", b"under-new") is True
    assert store.subject_key(LOG, "alice") == b"under-new"
    # A row that changed (or was erased) since it was read is left alone.
    assert store.replace_subject_key(LOG, "alice", b"under-old", b"stale") is False
    assert store.subject_key(LOG, "alice") == b"under-new"
    store.delete_bodies(OTHER, "bob")
    assert store.replace_subject_key(OTHER, "bob", b"bob-old", b"bob-new") is False
    assert store.subject_key(OTHER, "bob") is None
    assert store.subject_keys() == [(LOG, "alice", b"under-new")]
