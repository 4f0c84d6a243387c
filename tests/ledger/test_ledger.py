"""The ledger service over every store: record, checkpoint, prove, erase, limits."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flowloom.errors import (
    BodyTooLargeError,
    InputError,
    NotFoundError,
    UnknownKindError,
)
from flowloom.ledger import merkle
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.receipt import Receipt, verify_receipt
from flowloom.ledger.verify import verify_store
from flowloom.store.interface import Store
from tests.support.ledgers import fill, make_ledger


def _verify(ledger, **kw):  # type: ignore[no-untyped-def]
    return verify_store(
        ledger.store,
        ledger.log,
        ledger.verifier,
        decrypt=lambda b: ledger.read_body(b.digest),
        **kw,
    )


def test_record_gives_contiguous_indices_and_leaf_hashes(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    acks = [ledger.record("session.start", meta={"session": f"s{i}"}) for i in range(5)]
    assert [a.index for a in acks] == [0, 1, 2, 3, 4]
    for ack in acks:
        assert merkle.leaf_hash(ledger.entry(ack.index).envelope) == ack.leaf_hash


def test_checkpoint_signs_durable_root(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    fill(ledger, 37)
    stored = ledger.checkpoint()
    cp = open_checkpoint(stored.note, ledger.verifier)
    leaves = [merkle.leaf_hash(e.envelope) for e in store.entries(ledger.log)]
    assert cp.size == 37
    assert cp.root == merkle.root_of(leaves)
    assert cp.origin == ledger.origin
    # Nothing new: the same checkpoint comes back, no second one is stored.
    assert ledger.checkpoint() == stored
    assert len(store.checkpoints(ledger.log)) == 1


def test_empty_log_checkpoint(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    cp = open_checkpoint(ledger.checkpoint().note, ledger.verifier)
    assert (cp.size, cp.root) == (0, merkle.EMPTY_ROOT)


def test_receipts_verify_for_every_entry(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    fill(ledger, 21, body=False)
    ledger.checkpoint()
    fill(ledger, 12, body=False)
    ledger.checkpoint()
    for size in (21, 33):
        for index in range(size):
            receipt = Receipt.parse(ledger.prove(index, size).text())
            leaf = merkle.leaf_hash(ledger.entry(index).envelope)
            assert verify_receipt(receipt, leaf, ledger.verifier).size == size
    with pytest.raises(NotFoundError):
        ledger.prove(0, 25)
    with pytest.raises(NotFoundError):
        ledger.prove(40)


def test_prove_signs_a_checkpoint_when_needed(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    fill(ledger, 3, body=False)
    receipt = ledger.prove(2)
    assert receipt.index == 2
    assert store.latest_checkpoint(ledger.log).size == 3  # type: ignore[union-attr]


def test_consistency_proofs_verify(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    roots = {}
    for size in range(1, 18):
        fill(ledger, 1, body=False)
        roots[size] = open_checkpoint(ledger.checkpoint().note, ledger.verifier).root
    for old in range(1, 18):
        target, proof = ledger.consistency(old)
        merkle.verify_consistency(old, target.size, proof, roots[old], target.root)
    with pytest.raises(InputError):
        ledger.consistency(30)


def test_bodies_are_committed_and_readable(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    ack = ledger.record("agent.prompt", body=b"hello \xff binary ok")
    envelope = ledger.entry(ack.index).envelope
    digest = envelope.split(b'"body":"')[1].split(b'"')[0].decode()
    assert ledger.read_body(digest) == b"hello \xff binary ok"
    stored = store.body(digest)
    assert stored is not None and len(stored.salt) == 32


def test_same_body_twice_gets_different_commitments(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    a = ledger.entry(ledger.record("agent.prompt", body=b"yes").index).envelope
    b = ledger.entry(ledger.record("agent.prompt", body=b"yes").index).envelope
    assert a.split(b'"body":')[1][:80] != b.split(b'"body":')[1][:80]


def test_subject_bodies_are_encrypted_and_erasable(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    secret = b"Patient Jane Roe, DOB 1970-01-01"
    ack = ledger.record("agent.prompt", body=secret, data_subject="jane")
    fill(ledger, 3)
    digest = ledger.entry(ack.index).envelope.split(b'"body":"')[1].split(b'"')[0].decode()
    stored = store.body(digest)
    assert stored is not None and secret not in stored.content
    assert ledger.read_body(digest) == secret
    ledger.checkpoint()
    tomb = ledger.erase("jane", reason="GDPR Art. 17 request")
    assert ledger.read_body(digest) is None
    assert store.body(digest) is None
    assert ledger.entry(tomb.index).kind == "erasure.tombstone"
    assert digest.encode() in ledger.entry(tomb.index).envelope
    ledger.checkpoint()
    report = _verify(ledger)
    assert report.ok, [p.line() for p in report.problems]


def test_erasure_needs_a_reason(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    with pytest.raises(InputError):
        ledger.erase("jane", reason="  ")


@pytest.mark.parametrize(
    ("kind", "kwargs", "error"),
    [
        ("no.such.kind", {}, UnknownKindError),
        ("agent.prompt", {"meta": {"v": 2}}, InputError),
        ("agent.prompt", {"meta": {"ts": "yesterday"}}, InputError),
        ("agent.prompt", {"meta": {"actor": {"type": "robot", "id": "x"}}}, InputError),
        ("agent.prompt", {"meta": {"refs": []}}, InputError),
        ("agent.prompt", {"meta": {"refs": {"x": float("nan")}}}, InputError),
        ("agent.prompt", {"meta": {"subject": "\ud800"}}, InputError),
        ("agent.prompt", {"data_subject": "jane"}, InputError),
        ("agent.prompt", {"body": b"x" * 2049}, BodyTooLargeError),
        ("agent.prompt", {"meta": {"refs": {"big": "x" * 70000}}}, InputError),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    store: Store,
    tmp_path: Path,
    kind: str,
    kwargs: dict,
    error: type[Exception],  # type: ignore[type-arg]
) -> None:
    ledger = make_ledger(store, tmp_path, max_body=2048)
    fill(ledger, 2)
    with pytest.raises(error) as info:
        ledger.record(kind, **kwargs)
    assert "\n" not in str(info.value)
    assert ledger.size() == 2
    assert len(list(store.bodies(ledger.log))) == 2


def test_concurrent_appenders_share_batches(store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(store, tmp_path)
    batches: list[int] = []
    from flowloom.ledger.writer import LogWriter

    writer = LogWriter(store, ledger.log, observer=lambda n, _s: batches.append(n))
    ledger.writer = writer
    results: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        futures = [
            writer.submit(ledger.prepare("agent.tool", meta={"subject": f"t{t}-{i}"}).entry)
            for i in range(50)
        ]
        got = [f.result().index for f in futures]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sorted(results) == list(range(400))
    assert sum(batches) == 400
    assert max(batches) > 1  # group commit actually grouped
    ledger.checkpoint()
    assert _verify(ledger).ok


def test_writer_failure_reaches_every_waiter(store: Store, tmp_path: Path) -> None:
    from flowloom.ledger.writer import LogWriter

    ledger = make_ledger(store, tmp_path)
    writer = LogWriter(store, ledger.log)
    entry = ledger.prepare("agent.tool").entry
    store.close()
    future = writer.submit(entry)
    with pytest.raises(Exception):  # noqa: B017 - any store error, surfaced to the caller
        future.result(timeout=30)
    writer.close()


def test_checkpoint_refuses_to_sign_over_a_rewritten_tree(
    sqlite_store: Store, tmp_path: Path
) -> None:
    from flowloom.errors import VerificationError
    from tests.support.ledgers import raw_sql

    ledger = make_ledger(sqlite_store, tmp_path)
    fill(ledger, 10)
    ledger.checkpoint()
    fill(ledger, 3)
    raw_sql(
        sqlite_store, [("UPDATE nodes SET hash = ? WHERE level = 3 AND idx = 0", [b"\x01" * 32])]
    )
    ledger.writer = type(ledger.writer)(sqlite_store, ledger.log)
    with pytest.raises(VerificationError):
        ledger.checkpoint()
    assert sqlite_store.latest_checkpoint(ledger.log).size == 10  # type: ignore[union-attr]
