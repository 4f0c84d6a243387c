"""Tampering behind FlowLoom's back is detected and the entries are named.

Each test edits the database the way an insider with SQL access could (append-only
guard switched off), then runs the verifier. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.log import Ledger
from flowloom.ledger.verify import VerifyReport, verify_store
from flowloom.store.interface import Store
from tests.support.ledgers import fill, make_ledger, raw_sql

SIZE = 40


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest) -> Store:
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def ledger(sql_store: Store, tmp_path: Path) -> Ledger:
    ledger = make_ledger(sql_store, tmp_path)
    fill(ledger, SIZE)
    ledger.checkpoint()
    return ledger


def _verify(ledger: Ledger, against: str | None = None) -> VerifyReport:
    return verify_store(
        ledger.store,
        ledger.log,
        ledger.verifier,
        against=against,
        decrypt=lambda b: ledger.read_body(b.digest),
    )


def _envelope(ledger: Ledger, index: int) -> bytes:
    return ledger.entry(index).envelope


def _found(report: VerifyReport) -> set[tuple[int | None, str]]:
    return {(p.index, p.what) for p in report.problems}


def test_clean_log_verifies(ledger: Ledger) -> None:
    report = _verify(ledger)
    assert report.ok, [p.line() for p in report.problems]
    assert report.size == SIZE


def test_edit_is_named(ledger: Ledger) -> None:
    edited = _envelope(ledger, 7).replace(b"file7.py", b"file8.py")
    raw_sql(ledger.store, [("UPDATE entries SET envelope = ? WHERE idx = 7", [edited])])
    assert _found(_verify(ledger)) == {(7, "modified")}


def test_single_bit_flip_is_named(ledger: Ledger) -> None:
    envelope = bytearray(_envelope(ledger, 23))
    envelope[len(envelope) // 2] ^= 0x04
    raw_sql(ledger.store, [("UPDATE entries SET envelope = ? WHERE idx = 23", [bytes(envelope)])])
    assert _found(_verify(ledger)) == {(23, "modified")}


def test_delete_is_named(ledger: Ledger) -> None:
    raw_sql(ledger.store, [("DELETE FROM entries WHERE idx = 11", [])])
    assert _found(_verify(ledger)) == {(11, "missing")}


def test_delete_with_renumbering_is_named(ledger: Ledger) -> None:
    statements: list[tuple[str, list[object]]] = [("DELETE FROM entries WHERE idx = 11", [])]
    statements += [
        ("UPDATE entries SET idx = ? WHERE idx = ?", [i - 1, i]) for i in range(12, SIZE)
    ]
    raw_sql(ledger.store, statements)
    found = _found(_verify(ledger))
    assert (11, "missing") in found
    assert (12, "reordered") in found  # the rest moved up one place


def test_insert_is_named(ledger: Ledger) -> None:
    forged = _envelope(ledger, 5).replace(b"file5.py", b"forged.py")
    statements: list[tuple[str, list[object]]] = [
        ("UPDATE entries SET idx = ? WHERE idx = ?", [i + 1, i]) for i in range(SIZE - 1, 4, -1)
    ]
    statements.append(
        (
            "INSERT INTO entries (log, idx, envelope, kind) VALUES (?, ?, ?, ?)",
            [ledger.log, 5, forged, "agent.prompt"],
        )
    )
    raw_sql(ledger.store, statements)
    found = _found(_verify(ledger))
    assert (5, "inserted") in found
    assert (6, "reordered") in found


def test_insert_at_the_end_is_named(ledger: Ledger) -> None:
    forged = _envelope(ledger, 5).replace(b"file5.py", b"forged.py")
    raw_sql(
        ledger.store,
        [
            (
                "INSERT INTO entries (log, idx, envelope, kind) VALUES (?, ?, ?, ?)",
                [ledger.log, SIZE, forged, "agent.prompt"],
            )
        ],
    )
    assert _found(_verify(ledger)) == {(SIZE, "inserted")}


def test_reorder_is_named(ledger: Ledger) -> None:
    a, b = _envelope(ledger, 3), _envelope(ledger, 30)
    raw_sql(
        ledger.store,
        [
            ("UPDATE entries SET envelope = ? WHERE idx = 3", [b]),
            ("UPDATE entries SET envelope = ? WHERE idx = 30", [a]),
        ],
    )
    assert _found(_verify(ledger)) == {(3, "reordered"), (30, "reordered")}


def test_truncation_is_named(ledger: Ledger) -> None:
    raw_sql(ledger.store, [("DELETE FROM entries WHERE idx >= 35", [])])
    report = _verify(ledger)
    assert _found(report) == {(35, "missing")}
    assert "35..39" in report.problems[0].detail


def test_rewriting_entries_and_tree_is_bounded_by_checkpoints(ledger: Ledger) -> None:
    fill(ledger, 10)
    ledger.checkpoint()  # checkpoints at 40 and 50
    edited = _envelope(ledger, 44).replace(b"file4.py", b"evil.py")
    from flowloom.ledger.merkle import leaf_hash

    raw_sql(
        ledger.store,
        [
            ("UPDATE entries SET envelope = ? WHERE idx = 44", [edited]),
            ("UPDATE nodes SET hash = ? WHERE level = 0 AND idx = 44", [leaf_hash(edited)]),
        ],
    )
    report = _verify(ledger)
    assert not report.ok
    problem = report.problems[0]
    assert problem.what == "modified" and problem.index == 40
    assert "40..49" in problem.detail


def test_body_edit_is_named(ledger: Ledger) -> None:
    digest = _envelope(ledger, 9).split(b'"body":"')[1].split(b'"')[0].decode()
    raw_sql(ledger.store, [("UPDATE bodies SET content = ? WHERE digest = ?", [b"other", digest])])
    assert _found(_verify(ledger)) == {(9, "body mismatch")}


def test_body_delete_is_named(ledger: Ledger) -> None:
    digest = _envelope(ledger, 9).split(b'"body":"')[1].split(b'"')[0].decode()
    raw_sql(ledger.store, [("DELETE FROM bodies WHERE digest = ?", [digest])])
    assert _found(_verify(ledger)) == {(9, "body missing")}


def test_rollback_is_caught_with_an_external_checkpoint(ledger: Ledger) -> None:
    kept = ledger.checkpoint().note  # kept elsewhere (a git ref, a witness ...)
    raw_sql(
        ledger.store,
        [
            ("DELETE FROM entries WHERE idx >= 30", []),
            ("DELETE FROM nodes WHERE ((idx + 1) << level) > 30", []),
            ("DELETE FROM checkpoints", []),
        ],
    )
    # A careful rollback leaves a store that is consistent with itself ...
    assert _verify(ledger).ok
    # ... which only a checkpoint kept elsewhere can expose.
    report = _verify(ledger, against=kept)
    assert "rollback" in {p.what for p in report.problems}


def test_fork_is_caught_with_an_external_checkpoint(ledger: Ledger, tmp_path: Path) -> None:
    kept = ledger.checkpoint().note
    # Another history of the same size, signed by the same key: a fork.
    other_store_dir = tmp_path / "fork"
    from flowloom.store.sqlite import SQLiteStore

    other = SQLiteStore(other_store_dir / "ledger.db")
    twin = make_ledger(other, tmp_path)
    fill(twin, SIZE - 1)
    twin.record("agent.prompt", body=b"different")
    forked = twin.checkpoint().note
    assert open_checkpoint(forked, ledger.verifier).size == SIZE
    report = verify_store(other, twin.log, twin.verifier, against=kept)
    assert {p.what for p in report.problems} == {"fork"}
    other.close()


def test_forged_checkpoint_signature_is_refused(ledger: Ledger) -> None:
    note = ledger.checkpoint().note
    forged = note.replace(str(SIZE), str(SIZE - 1), 1)
    report = _verify(ledger, against=forged)
    assert "checkpoint" in {p.what for p in report.problems}
