"""RFC 3161 anchors against a local time-stamping authority over HTTP on loopback."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from asn1crypto import tsp  # type: ignore[import-untyped]
from cryptography import x509

from flowloom.compliance.anchors.book import ANCHOR_KIND, AnchorBook
from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.compliance.anchors.tsa import TsaAnchor, build_request, load_trust_anchors
from flowloom.errors import RemoteError, VerificationError
from flowloom.ledger.log import Ledger
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import fill, make_ledger
from tests.support.tsa import Authority, LocalTsa


@pytest.fixture
def tsa() -> Iterator[LocalTsa]:
    server = LocalTsa().start()
    yield server
    server.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    made = make_ledger(store, tmp_path / "home")
    fill(made, 5)
    yield made
    made.writer.close()
    store.close()


def test_request_is_rfc3161_with_nonce_and_cert_req() -> None:
    der = build_request(b"\x07" * 32, 12345)
    request = tsp.TimeStampReq.load(der)
    assert request["version"].native == "v1"
    assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert request["message_imprint"]["hashed_message"].native == b"\x07" * 32
    assert request["nonce"].native == 12345
    assert request["cert_req"].native is True


@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
def test_valid_token_is_recorded_and_verifies_offline(ledger: Ledger, key_kind: str) -> None:
    server = LocalTsa(Authority.create(key_kind=key_kind)).start()
    try:
        book = AnchorBook(ledger)
        entry = book.anchor(TsaAnchor(server.url, timeout=5))
    finally:
        server.stop()
    record = entry.record
    assert entry.index == 5 and ledger.entry(5).kind == ANCHOR_KIND
    assert (record.type, record.size, record.where) == ("tsa", 5, server.url)
    assert record.root == ledger.checkpoint_at(5).root
    # The TSA is gone: the token still verifies from the record alone.
    [listed] = book.entries()
    assert listed.record == record
    TsaAnchor().verify(listed.record, listed.record.note)
    check = book.check(listed.record, "test", TsaAnchor())
    assert check.ok, check.problem


@pytest.mark.parametrize("self_signed", [True, False], ids=["self-signed", "ca-issued"])
def test_trust_anchor_chain_is_checked(ledger: Ledger, tmp_path: Path, self_signed: bool) -> None:
    tsa = LocalTsa(Authority.create(self_signed=self_signed)).start()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(tsa.authority.ca_pem())
    trust = load_trust_anchors([ca_file])
    try:
        record = AnchorBook(ledger).anchor(TsaAnchor(tsa.url, trust=trust)).record
    finally:
        tsa.stop()
    TsaAnchor(trust=trust).verify(record, record.note)
    other = tmp_path / "other.pem"
    other.write_bytes(Authority.create().ca_pem())
    with pytest.raises(VerificationError, match="does not chain to a trusted CA"):
        TsaAnchor(trust=load_trust_anchors([other])).verify(record, record.note)


def test_token_from_another_tsa_certificate_is_refused(ledger: Ledger, tsa: LocalTsa) -> None:
    record = AnchorBook(ledger).anchor(TsaAnchor(tsa.url)).record
    assert isinstance(record.evidence["tsa_cert_sha256"], str)
    evidence = {**record.evidence, "tsa_cert_sha256": "00" * 32}
    with pytest.raises(VerificationError, match="different TSA certificate"):
        TsaAnchor().verify(replace(record, evidence=evidence), record.note)


def test_tampered_stored_token_fails(ledger: Ledger, tsa: LocalTsa) -> None:
    record = AnchorBook(ledger).anchor(TsaAnchor(tsa.url)).record
    token = bytearray(base64.b64decode(str(record.evidence["token"])))
    token[len(token) // 2] ^= 0x01
    evidence = {**record.evidence, "token": base64.b64encode(bytes(token)).decode()}
    with pytest.raises(VerificationError):
        TsaAnchor().verify(replace(record, evidence=evidence), record.note)


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("tamper", VerificationError, "message digest does not match"),
        ("wrong-imprint", VerificationError, "message imprint is not the checkpoint's hash"),
        ("wrong-nonce", VerificationError, "nonce does not match"),
        ("reject", RemoteError, "refused the request .rejection: policy not accepted"),
        ("garbage", RemoteError, "not a TimeStampResp"),
        ("http-500", RemoteError, "answered HTTP 500"),
    ],
)
def test_bad_replies_are_refused_and_nothing_is_recorded(
    ledger: Ledger, tsa: LocalTsa, mode: str, error: type[Exception], message: str
) -> None:
    tsa.mode = mode
    size = ledger.size()
    with pytest.raises(error, match=message):
        AnchorBook(ledger).anchor(TsaAnchor(tsa.url))
    assert ledger.size() == size
    assert AnchorBook(ledger).entries() == []


def test_certificate_without_timestamping_eku_is_refused(ledger: Ledger) -> None:
    server = LocalTsa(Authority.create(eku=False)).start()
    try:
        with pytest.raises(VerificationError, match="extended key usage"):
            AnchorBook(ledger).anchor(TsaAnchor(server.url))
    finally:
        server.stop()
    assert ledger.size() == 5


def test_tsa_down_is_a_clear_remote_error(ledger: Ledger) -> None:
    server = LocalTsa().start()
    url = server.url
    server.stop()
    with pytest.raises(RemoteError, match="cannot reach the time-stamping authority") as caught:
        AnchorBook(ledger).anchor(TsaAnchor(url, timeout=2))
    assert caught.value.exit_code == 9
    assert ledger.size() == 5


def test_record_for_another_checkpoint_fails(ledger: Ledger, tsa: LocalTsa) -> None:
    record = AnchorBook(ledger).anchor(TsaAnchor(tsa.url)).record
    fill(ledger, 1)
    newer = ledger.checkpoint().note
    with pytest.raises(VerificationError, match=r"is for .* size 5, not for .* size 7"):
        TsaAnchor().verify(record, newer)


def test_record_round_trips_through_refs(ledger: Ledger, tsa: LocalTsa) -> None:
    record = AnchorBook(ledger).anchor(TsaAnchor(tsa.url)).record
    again = AnchorRecord.from_refs(record.to_refs())
    assert again == record
    cert = x509.load_pem_x509_certificate(tsa.authority.ca_pem())
    assert record.evidence["tsa"] == cert.subject.rfc4514_string() == "CN=FlowLoom Test TSA"


def _close(ledger: Ledger) -> None:
    ledger.writer.close()
    ledger.store.close()


def test_database_rollback_and_fork_are_caught_by_a_kept_record(
    tmp_path: Path, tsa: LocalTsa
) -> None:
    db = tmp_path / "ledger.db"
    backup = tmp_path / "backup.db"
    home = tmp_path / "home"
    ledger = make_ledger(SQLiteStore(str(db)), home)
    fill(ledger, 3)
    ledger.checkpoint()
    _close(ledger)
    shutil.copy(db, backup)
    ledger = make_ledger(SQLiteStore(str(db)), home)
    fill(ledger, 4)
    kept = AnchorBook(ledger).anchor(TsaAnchor(tsa.url)).record  # anchored at size 7
    _close(ledger)

    shutil.copy(backup, db)  # the database is restored from the old backup
    ledger = make_ledger(SQLiteStore(str(db)), home)
    try:
        book = AnchorBook(ledger)
        assert book.entries() == []  # the anchor event went with the rollback
        check = book.check(kept, "kept record", TsaAnchor())
        assert not check.ok
        assert "holds checkpoint 7, but the database has only 3 entries" in str(check.problem)

        # The history is then rewritten past the anchored size: a fork.
        for i in range(6):
            ledger.record("agent.prompt", meta={"subject": f"other{i}.py"})
        ledger.checkpoint()
        check = book.check(kept, "kept record", TsaAnchor())
        assert "does not match the tsa anchor" in str(check.problem)
        assert "rewritten or forked" in str(check.problem)
    finally:
        _close(ledger)
