"""SQLiteStore refuses files it did not make and reports damage as flowloom errors."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from flowloom.errors import (
    ForeignDatabaseError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
)
from flowloom.store.interface import (
    AppendPlan,
    NodeLookup,
    PendingEntry,
    StoredBody,
    StoredCheckpoint,
)
from flowloom.store.sqlite import SQLiteStore

LOG = "example.com/project"


def leaf_plan(size: int, lookup: NodeLookup, leaves: Sequence[bytes]) -> AppendPlan:
    return AppendPlan([(0, size + i, leaf) for i, leaf in enumerate(leaves)])


def sign(size: int, lookup: NodeLookup, latest: StoredCheckpoint | None) -> StoredCheckpoint:
    if latest is not None and latest.size >= size:
        return latest
    return StoredCheckpoint(size, b"r" * 32, f"cp\n{size}\n")


def entry(n: int) -> PendingEntry:
    envelope = (f'{{"n":{n},"pad":"' + "x" * 300 + '"}').encode()
    digest = hashlib.sha256(envelope).hexdigest()
    body = StoredBody(digest, b"salt", os.urandom(200), None, f"subject-{n % 7}")
    return PendingEntry(envelope, hashlib.sha256(b"\x00" + envelope).digest(), "note", body)


def test_random_bytes_file_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "random.db"
    path.write_bytes(random.Random(7).randbytes(8192))
    with pytest.raises(ForeignDatabaseError) as info:
        SQLiteStore(path)
    assert str(path) in info.value.message
    assert path.read_bytes() == random.Random(7).randbytes(8192), "the file was modified"


def test_text_file_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("These are my notes, not a database.\n" * 50, "utf-8")
    with pytest.raises(ForeignDatabaseError):
        SQLiteStore(path)


def test_other_applications_sqlite_file_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO contacts (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    with pytest.raises(ForeignDatabaseError, match="did not create"):
        SQLiteStore(path)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"contacts"}, "nothing may be created in a foreign database"


def test_other_application_id_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "tagged.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 12345")
    conn.close()
    with pytest.raises(ForeignDatabaseError):
        SQLiteStore(path)


def test_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="directory"):
        SQLiteStore(tmp_path)


def test_missing_file_without_create_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_empty_file_becomes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    store = SQLiteStore(path)
    try:
        assert store.append(LOG, [entry(0)], leaf_plan) == 0
    finally:
        store.close()


def _build_and_damage(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        for start in range(0, 600, 100):
            store.append(LOG, [entry(n) for n in range(start, start + 100)], leaf_plan)
            store.add_checkpoint(LOG, sign)
    finally:
        store.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "closing should checkpoint the WAL"
    page = 4096
    data = bytearray(path.read_bytes())
    pages = len(data) // page
    assert pages > 20
    rng = random.Random(2024)
    # keep page 1 (header and schema), overwrite a run of pages in the middle
    for n in range(pages // 3, 2 * pages // 3):
        data[n * page : (n + 1) * page] = rng.randbytes(page)
    path.write_bytes(bytes(data))


def test_damaged_pages_raise_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    _build_and_damage(path)

    raised: list[StoreError] = []

    def attempt(action: Callable[[], object]) -> None:
        try:
            action()
        except StoreError as exc:  # anything else (a raw sqlite3 error) fails the test
            raised.append(exc)

    try:
        store = SQLiteStore(path)
    except StoreError as open_error:
        raised.append(open_error)
    else:
        try:
            attempt(lambda: store.size(LOG))
            attempt(lambda: list(store.entries(LOG)))
            attempt(lambda: list(store.entries(LOG, kind="note")))
            attempt(lambda: [store.entry(LOG, n) for n in range(0, 600, 10)])
            attempt(lambda: list(store.level(LOG, 0)))
            attempt(lambda: store.nodes(LOG, [(0, n) for n in range(600)]))
            attempt(lambda: store.checkpoints(LOG))
            attempt(lambda: list(store.bodies(LOG)))
            attempt(lambda: [store.body_digests(LOG, f"subject-{n}") for n in range(7)])
            attempt(lambda: store.delete_bodies(LOG, "subject-3"))
            attempt(lambda: store.append(LOG, [entry(1000)], leaf_plan))
            attempt(lambda: store.add_checkpoint(LOG, sign))
            attempt(lambda: store.logs())
        finally:
            store.close()

    assert raised, "reading a damaged database raised no error at all"
    assert any(isinstance(exc, StoreCorruptError) for exc in raised), [str(e) for e in raised]
    for exc in raised:
        assert str(path) in exc.message or exc.message.startswith("refused")
        assert "\n" not in exc.diagnostics()
