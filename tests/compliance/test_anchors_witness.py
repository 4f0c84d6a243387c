"""Witness anchors against a local C2SP tlog-witness over HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from flowloom.compliance.anchors.book import AnchorBook
from flowloom.compliance.anchors.interface import checkpoint_text
from flowloom.compliance.anchors.witness import (
    CosignatureVerifier,
    WitnessAnchor,
    WitnessConflictError,
    add_checkpoint_body,
)
from flowloom.errors import ConfigError, RemoteError, VerificationError
from flowloom.ledger.log import Ledger, consistency_text
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import fill, make_ledger
from tests.support.witness import LocalWitness


def _open(path: Path, home: Path) -> Ledger:
    return make_ledger(SQLiteStore(str(path)), home)


def _close(ledger: Ledger) -> None:
    ledger.writer.close()
    ledger.store.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ledger(tmp_path: Path, home: Path) -> Iterator[Ledger]:
    made = _open(tmp_path / "ledger.db", home)
    fill(made, 5)
    yield made
    _close(made)


@pytest.fixture
def witness(ledger: Ledger) -> Iterator[LocalWitness]:
    server = LocalWitness(trusted=[ledger.verifier]).start()
    yield server
    server.stop()


def _anchor(ledger: Ledger, witness: LocalWitness) -> WitnessAnchor:
    """What `flowloom anchor witness` builds: proofs from the log, old size from its book."""
    book = AnchorBook(ledger)
    last = book.latest("witness", witness.url)
    return WitnessAnchor(
        CosignatureVerifier.from_vkey(witness.vkey),
        url=witness.url,
        proofs=lambda old, new: ledger.consistency(old, new)[1],
        old_size=last.size if last else 0,
        timeout=5,
    )


def test_vkey_uses_cosignature_type_byte_and_key_id() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = "witness.example/w1"
    key_id = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    cosign64 = base64.b64encode(b"\x04" + public).decode()
    note64 = base64.b64encode(b"\x01" + public).decode()
    vkey = f"{name}+{key_id.hex()}+{cosign64}"
    verifier = CosignatureVerifier.from_vkey(vkey)
    assert verifier.key_id == key_id and verifier.vkey == vkey
    note_style = f"{name}+{key_id.hex()}+{note64}"
    with pytest.raises(ConfigError, match="type byte 0x04"):
        CosignatureVerifier.from_vkey(note_style)


def test_cosignature_message_matches_the_spec_example() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert CosignatureVerifier.message(text, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n"
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_request_body_has_the_tlog_witness_shape(ledger: Ledger) -> None:
    fill(ledger, 3)
    target, proof = ledger.consistency(3)
    body = add_checkpoint_body(3, proof, target.note)
    assert body.decode() == consistency_text(3, proof, target.note)
    assert body.startswith(b"old 3\n") and b"\n\n" + target.note.encode() in body


def test_cosignature_is_recorded_and_verifies(ledger: Ledger, witness: LocalWitness) -> None:
    book = AnchorBook(ledger)
    first = book.anchor(_anchor(ledger, witness))
    assert witness.state[ledger.origin] == (5, ledger.checkpoint_at(5).root)
    fill(ledger, 4)  # the next anchor goes from size 5 with a consistency proof
    second = book.anchor(_anchor(ledger, witness))
    assert second.record.size == 10 and witness.state[ledger.origin][0] == 10
    trusted = WitnessAnchor(CosignatureVerifier.from_vkey(witness.vkey))
    for entry in (first, second):
        record = entry.record
        assert record.evidence["vkey"] == witness.vkey
        trusted.verify(record, record.note)
        assert book.check(record, "test", trusted).ok
    assert [e.index for e in book.entries()] == [5, 10]


def test_cosignature_fails_with_another_key_or_altered_line(
    ledger: Ledger, witness: LocalWitness
) -> None:
    record = AnchorBook(ledger).anchor(_anchor(ledger, witness)).record
    impostor = LocalWitness(name=witness.name)
    with pytest.raises(VerificationError, match="recorded for witness"):
        WitnessAnchor(CosignatureVerifier.from_vkey(impostor.vkey)).verify(record, record.note)
    line = str(record.evidence["cosignature"])
    prefix, _, sig64 = line.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(sig64))
    raw[-1] ^= 1
    altered = f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    evidence = {
        **record.evidence,
        "cosignature": altered,
        "cosignature_sha256": hashlib.sha256(altered.encode()).hexdigest(),
    }
    trusted = WitnessAnchor(CosignatureVerifier.from_vkey(witness.vkey))
    with pytest.raises(VerificationError, match="cosignature does not verify"):
        trusted.verify(replace(record, evidence=evidence), record.note)
    with pytest.raises(VerificationError, match="digest does not match"):
        trusted.verify(replace(record, evidence={**evidence, "cosignature": line}), record.note)


def test_lines_from_other_witnesses_are_ignored(ledger: Ledger, witness: LocalWitness) -> None:
    note = ledger.checkpoint().note
    other = LocalWitness(name="witness.test/other")
    lines = other.cosign(checkpoint_text(note)) + witness.cosign(checkpoint_text(note))
    found = CosignatureVerifier.from_vkey(witness.vkey).find(lines, checkpoint_text(note))
    assert found.name == witness.name
    with pytest.raises(VerificationError, match="no cosignature from witness"):
        CosignatureVerifier.from_vkey(witness.vkey).find(other.cosign(checkpoint_text(note)), "")


def test_unknown_origin_and_down_witness_record_nothing(ledger: Ledger) -> None:
    stranger = LocalWitness(trusted=[]).start()
    try:
        with pytest.raises(RemoteError, match="does not know this log's origin"):
            AnchorBook(ledger).anchor(_anchor(ledger, stranger))
    finally:
        stranger.stop()
    with pytest.raises(RemoteError, match="cannot reach the witness"):
        AnchorBook(ledger).anchor(_anchor(ledger, stranger))
    assert ledger.size() == 5


def test_rolled_back_and_forked_log_is_refused_by_the_witness(tmp_path: Path, home: Path) -> None:
    db, backup = tmp_path / "ledger.db", tmp_path / "backup.db"
    ledger = _open(db, home)
    fill(ledger, 3)
    witness = LocalWitness(trusted=[ledger.verifier]).start()
    try:
        AnchorBook(ledger).anchor(_anchor(ledger, witness))  # witness at 3
        _close(ledger)
        shutil.copy(db, backup)
        ledger = _open(db, home)
        fill(ledger, 4)
        AnchorBook(ledger).anchor(_anchor(ledger, witness))  # witness at 8
        _close(ledger)

        shutil.copy(backup, db)  # rollback: the log is back at 4 entries
        ledger = _open(db, home)
        with pytest.raises(WitnessConflictError, match="cosigned size 8 but this log has only"):
            AnchorBook(ledger).anchor(_anchor(ledger, witness))
        assert witness.refused == [409]
        with pytest.raises(WitnessConflictError, match="rolled back"):
            _anchor(ledger, witness).probe(ledger.checkpoint().note)

        for i in range(6):  # a different history past the witnessed size: a fork
            ledger.record("agent.prompt", meta={"subject": f"forked{i}.py"})
        size = ledger.size()
        with pytest.raises(WitnessConflictError, match="not consistent with the tree of size 8"):
            AnchorBook(ledger).anchor(_anchor(ledger, witness))
        assert witness.refused[-2:] == [409, 422]
        assert ledger.size() == size  # nothing recorded for a refused anchor
        with pytest.raises(WitnessConflictError, match="a fork"):
            _anchor(ledger, witness).probe(ledger.checkpoint().note)
        assert witness.state[ledger.origin][0] == 8
    finally:
        witness.stop()
        _close(ledger)


def test_same_size_other_root_is_a_fork(tmp_path: Path, home: Path) -> None:
    db, backup = tmp_path / "ledger.db", tmp_path / "backup.db"
    ledger = _open(db, home)
    fill(ledger, 2)
    ledger.checkpoint()
    _close(ledger)
    shutil.copy(db, backup)
    ledger = _open(db, home)
    ledger.record("agent.prompt", meta={"subject": "original.py"})
    witness = LocalWitness(trusted=[ledger.verifier]).start()
    try:
        AnchorBook(ledger).anchor(_anchor(ledger, witness))  # witness at 3
        _close(ledger)
        shutil.copy(backup, db)
        ledger = _open(db, home)
        ledger.record("agent.prompt", meta={"subject": "replacement.py"})
        with pytest.raises(WitnessConflictError, match="different tree at size 3"):
            _anchor(ledger, witness).probe(ledger.checkpoint().note)
    finally:
        witness.stop()
        _close(ledger)
