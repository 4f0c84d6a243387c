"""A log's key: pinned by its first key.generated, changed only by an attested key.rotated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.errors import InputError, KeyMissingError, NotFoundError
from flowloom.ledger.attest import attest
from flowloom.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from flowloom.ledger.event import Event
from flowloom.ledger.keyring import key_name, log_keys, rotated_meta
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.merkle import root_at
from flowloom.ledger.note import Signer
from flowloom.ledger.verify import verify_store
from flowloom.services import Access, open_ledger
from flowloom.store.interface import Store
from tests.support.ledgers import raw_sql

ORIGIN = "flowloom.test/proj"


def ledger_in(store: Store, home: Path, access: Access = "write") -> Ledger:
    return open_ledger(
        store,
        KeyStore(home),
        log="proj",
        origin=ORIGIN,
        actor={"type": "human", "id": "tester"},
        max_body_bytes=1 << 20,
        access=access,
    )


def kinds(store: Store) -> list[str]:
    return [e.kind for e in store.entries("proj")]


def key_files(home: Path) -> list[str]:
    folder = home / "keys"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def append_raw(ledger: Ledger, kind: str, meta: dict[str, object], signer: Signer | None) -> int:
    """What a hand-made append could put in the log: any envelope, any attestation."""
    envelope = ledger.prepare("agent.tool").event.to_json()
    envelope.update(kind=kind, **meta)
    if signer is not None:
        envelope = attest(envelope, signer)
    event = Event.from_json(envelope)
    return ledger.writer.append_many([ledger._pending(event, None)])[0].index


def test_the_first_write_to_a_new_log_pins_its_key(store: Store, tmp_path: Path) -> None:
    ledger = ledger_in(store, tmp_path / "home")
    assert kinds(store) == []
    assert ledger.record("agent.prompt", body=b"hello").index == 1
    history = log_keys(store, "proj")
    assert history.problems == []
    assert [(k.since, k.verifier) for k in history.all] == [(0, ledger.signer.verifier())]
    assert history.current == history.pinned == ledger.verifier
    pin = json.loads(store.entries("proj", kind="key.generated").__next__().envelope)
    assert pin["refs"]["vkey"] == ledger.verifier.vkey
    assert pin["refs"]["attestation"]["key"] == key_name(ledger.verifier)
    # A second ledger over the same log (another process) pins nothing more.
    ledger_in(store, tmp_path / "home").record("agent.prompt", body=b"again")
    assert kinds(store) == ["key.generated", "agent.prompt", "agent.prompt"]


def test_a_home_without_the_key_never_makes_another(store: Store, tmp_path: Path) -> None:
    owner = ledger_in(store, tmp_path / "home")
    owner.record("agent.prompt", body=b"hello")
    owner.checkpoint()
    pinned = owner.verifier
    elsewhere = tmp_path / "elsewhere"
    other = ledger_in(store, elsewhere)
    # Plain events need no key (hooks record them without loading one) ...
    other.record("agent.prompt", body=b"from another home")
    # ... but signing and attesting do, and say which key and where it was expected.
    before = [e.envelope for e in store.entries("proj")]
    for write in (
        other.checkpoint,
        lambda: other.record("decision.approve", meta={"subject": "D-1"}),
        other.require_signer,
    ):
        with pytest.raises(KeyMissingError) as caught:
            write()
        message = caught.value.diagnostics()
        assert key_name(pinned) in message and pinned.vkey in message
        assert str(elsewhere / "keys") in message and "flowloom.test_proj.skey" in message
    assert [e.envelope for e in store.entries("proj")] == before
    assert len(store.checkpoints("proj")) == 1
    assert key_files(elsewhere) == []
    assert other.verifier == pinned  # the public key comes from the log itself


def test_readers_never_create_keys_or_pin(store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for access in ("read", "sign"):
        reader = ledger_in(store, home, access)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match="no signing key yet"):
            _ = reader.verifier
        assert reader.current_verifier() is None
        with pytest.raises(NotFoundError):
            reader.checkpoint_at(None)
    assert kinds(store) == [] and store.checkpoints("proj") == []
    assert key_files(home) == []


def test_rotation_is_attested_by_the_old_key(store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ledger = ledger_in(store, home)
    ledger.record("agent.prompt", body=b"one")
    first = ledger.checkpoint()
    old = ledger.verifier
    with pytest.raises(InputError, match="reason"):
        ledger.rotate_key(reason=" ")
    rotation = ledger.rotate_key(reason="laptop lost", actor={"type": "human", "id": "ann"})
    assert rotation.old == old and rotation.new != old
    assert rotation.new.name == old.name == ORIGIN
    assert ledger.verifier == rotation.new
    # The old key is kept under its key id, the new one is in use.
    assert f"flowloom.test_proj.{old.key_id.hex()}.skey" in key_files(home)
    assert KeyStore(home).find(old) is not None
    active = KeyStore(home).active(ORIGIN)
    assert active is not None and active.verifier() == rotation.new
    event = json.loads(store.entry("proj", rotation.index).envelope)  # type: ignore[union-attr]
    assert event["kind"] == "key.rotated" and event["actor"]["id"] == "ann"
    assert event["refs"]["old_vkey"] == old.vkey and event["refs"]["new_vkey"] == rotation.new.vkey
    assert event["refs"]["attestation"]["key"] == key_name(old)
    history = log_keys(store, "proj")
    assert history.problems == []
    assert [(k.verifier, k.since) for k in history.all] == [(old, 0), (rotation.new, 2)]
    assert history.at(first.size) == old and history.at(rotation.index + 1) == rotation.new
    # The new key signed a checkpoint covering the rotation; later ones too.
    assert rotation.checkpoint.size == rotation.index + 1
    ledger.record("agent.prompt", body=b"two")
    latest = ledger.checkpoint()
    assert open_checkpoint(latest.note, rotation.new).size == latest.size
    assert open_checkpoint(first.note, old).size == first.size
    report = verify_store(store, "proj")
    assert report.ok, [p.line() for p in report.problems]
    assert report.checkpoints_checked == 3 and report.key == rotation.new
    # A key someone trusts must be one of the log's keys; either of them will do.
    assert verify_store(store, "proj", old).ok and verify_store(store, "proj", rotation.new).ok
    stranger = Signer.generate(ORIGIN).verifier()
    problems = [p.line() for p in verify_store(store, "proj", stranger).problems]
    assert problems == [
        f"key: the trusted key {key_name(stranger)} is not a key of this log: "
        f"entry 0 pins {key_name(old)}"
    ]


def test_forged_key_events_are_ignored_and_reported(store: Store, tmp_path: Path) -> None:
    ledger = ledger_in(store, tmp_path / "home")
    ledger.record("agent.prompt", body=b"one")
    pinned = ledger.verifier
    mallory = Signer.generate(ORIGIN)
    new = mallory.verifier()
    # A rotation attested by the new key itself, one with no attestation, and a second
    # key.generated naming another key: none of them changes the log's key.
    self_signed = append_raw(ledger, "key.rotated", rotated_meta(pinned, new, "takeover"), mallory)
    bare = append_raw(ledger, "key.rotated", rotated_meta(pinned, new, "takeover"), None)
    second = append_raw(
        ledger, "key.generated", {"refs": {"vkey": new.vkey, "purpose": "checkpoint signing"}}, None
    )
    history = log_keys(store, "proj")
    assert history.verifiers == (pinned,)
    assert history.problems == [
        f"entry {self_signed}: key.rotated to {key_name(new)} is not attested by the log's key "
        f"then, {key_name(pinned)}; ignored",
        f"entry {bare}: key.rotated to {key_name(new)} is not attested by the log's key "
        f"then, {key_name(pinned)}; ignored",
        f"entry {second}: key.generated names key {key_name(new)}, but the log is pinned to "
        f"{key_name(pinned)} by entry 0; ignored (a log's key changes only by key.rotated)",
    ]
    # The log still signs with its pinned key; verification reports the forgeries.
    assert open_checkpoint(ledger.checkpoint().note, pinned).size == store.size("proj")
    report = verify_store(store, "proj")
    assert [p.what for p in report.problems] == ["key", "key", "key"]
    assert report.checkpoints_checked == 1


def test_a_checkpoint_signed_by_another_key_fails(store: Store, tmp_path: Path) -> None:
    if store.dialect == "memory":
        pytest.skip("a hand-written row needs a database")
    ledger = ledger_in(store, tmp_path / "home")
    for i in range(3):
        ledger.record("agent.prompt", body=f"p{i}".encode())
    ledger.checkpoint()
    ledger.record("agent.prompt", body=b"late")
    size = store.size("proj")
    foreign = Signer.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root_at(size, ledger.lookup())), foreign)
    raw_sql(
        store,
        [
            (
                "INSERT INTO checkpoints (log, size, root, note) VALUES (?, ?, ?, ?)",
                ("proj", size, root_at(size, ledger.lookup()), note),
            )
        ],
    )
    report = verify_store(store, "proj")
    assert [p.line() for p in report.problems] == [
        f"checkpoint: checkpoint {size} is signed by key {key_name(foreign.verifier())}, not by "
        f"the log's key {key_name(ledger.verifier)} (its key at size {size})"
    ]
