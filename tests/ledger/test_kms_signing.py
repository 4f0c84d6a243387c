"""Checkpoint keys in AWS KMS (Ed25519, ED25519_SHA_512 over RAW): notes signed there are
the C2SP signed notes a key file gives, byte for byte, and verify with the public key.

KMS is the stand-in of tests/support/kms_ed25519.py (moto has no Ed25519 keys), reached
by boto3 over HTTP on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowloom.config import KeySettings
from flowloom.errors import ConfigError, KeyMissingError
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.keyring import log_keys
from flowloom.ledger.keys import FileMasterKeys, KeyStore
from flowloom.ledger.kmssign import KmsSigningKeys, alias_for
from flowloom.ledger.note import Signer, Verifier, open_note, sign_note
from flowloom.ledger.providers import open_key_providers
from flowloom.ledger.verify import verify_store
from flowloom.services import open_ledger
from flowloom.store.sqlite import SQLiteStore
from tests.ledger.keytoken import AWS_ENV
from tests.support.kms_ed25519 import KmsStandIn, kms_ed25519

__all__ = ["kms_ed25519"]  # fixture, used by name

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "note" / "vectors.json").read_text("utf-8")
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "ledger.db"))
    yield opened
    opened.close()


@pytest.fixture
def client(kms_ed25519: KmsStandIn, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return boto3.client("kms", region_name="eu-west-1", endpoint_url=kms_ed25519.endpoint)


def _ledger(store: SQLiteStore, keys: Any, home: Path, log: str) -> Any:
    return open_ledger(
        store,
        keys,
        master=FileMasterKeys(KeyStore(home)),
        log=log,
        origin=f"flowloom.test/{log}",
        actor={"type": "human", "id": "ann"},
        max_body_bytes=1 << 20,
    )


def test_a_kms_key_signs_the_known_answer_note_byte_for_byte(
    kms_ed25519: KmsStandIn, client: Any
) -> None:
    vector = next(v for v in VECTORS["vectors"] if v["name"] == "go-note-PeterNeumann")
    seed = base64.b64decode(vector["skey"].split("+", 4)[4])[1:]
    arn = kms_ed25519.add_key(Ed25519PrivateKey.from_private_bytes(seed))
    client.create_alias(AliasName=alias_for("PeterNeumann"), TargetKeyId=arn)
    keys = KmsSigningKeys(client)
    verifier = Verifier.from_vkey(vector["vkey"])
    signer = keys.find(verifier)
    assert signer is not None and signer.external is not None
    kms_note = sign_note(vector["text"], signer)
    assert kms_note == vector["note"]
    # ... and the same bytes as the key file of that seed gives.
    assert kms_note == sign_note(vector["text"], Signer.from_skey(vector["skey"]))
    assert open_note(kms_note, [verifier]).verified_by == (verifier,)
    assert kms_ed25519.calls.count("Sign") >= 1


def test_a_log_signed_in_kms_verifies_with_its_public_key_and_rotates(
    kms_ed25519: KmsStandIn, client: Any, store: SQLiteStore, tmp_path: Path
) -> None:
    settings = KeySettings(signing="kms", kms_endpoint=kms_ed25519.endpoint)
    providers = open_key_providers(tmp_path / "home", settings)
    ledger = _ledger(store, providers.signing, tmp_path / "home", "kms-s")
    ledger.record("agent.prompt", body=b"hello")
    ledger.record("decision.approve", meta={"subject": "D-1"})  # attested in KMS
    first = ledger.checkpoint()
    old = ledger.verifier
    generated = json.loads(next(iter(store.entries("kms-s", kind="key.generated"))).envelope)
    assert generated["refs"]["provider"] == "kms"
    assert generated["refs"]["vkey"] == old.vkey
    assert open_checkpoint(first.note, old).size == first.size  # the public key alone
    assert verify_store(store, "kms-s", old).ok
    # No key file was written for it.
    assert not (tmp_path / "home" / "keys").exists() or not any(
        p.suffix == ".skey" for p in (tmp_path / "home" / "keys").iterdir()
    )

    rotation = ledger.rotate_key(reason="yearly rotation")
    ledger.record("agent.prompt", body=b"after")
    ledger.checkpoint()
    rotated = json.loads(next(iter(store.entries("kms-s", kind="key.rotated"))).envelope)
    assert rotated["refs"]["provider"] == "kms" and rotated["refs"]["old_vkey"] == old.vkey
    assert log_keys(store, "kms-s").verifiers == (old, rotation.new)
    assert open_checkpoint(first.note, old).size == first.size
    assert verify_store(store, "kms-s", rotation.new).ok
    # The log's alias moved to the new key; the old one is still found by its key id.
    in_use = client.describe_key(KeyId=alias_for("flowloom.test/kms-s"))["KeyMetadata"]
    assert in_use["Arn"] == providers.signing.active("flowloom.test/kms-s").external.arn
    assert providers.signing.find(old) is not None


def test_a_kms_without_the_logs_key_or_with_a_wrong_key_says_so(
    kms_ed25519: KmsStandIn, client: Any, store: SQLiteStore, tmp_path: Path
) -> None:
    files = KeyStore(tmp_path / "home")
    ledger = _ledger(store, files, tmp_path / "home", "kms-t")
    ledger.record("agent.prompt", body=b"x")
    other = _ledger(store, KmsSigningKeys(client), tmp_path / "home", "kms-t")
    with pytest.raises(KeyMissingError) as caught:
        other.checkpoint()
    assert alias_for("flowloom.test/kms-t") in caught.value.diagnostics()
    # An alias naming a key that is not an Ed25519 signing key is refused, not used.
    arn = kms_ed25519.add_key(Ed25519PrivateKey.generate())
    kms_ed25519.keys[arn.rsplit("/", 1)[-1]]["state"] = "Disabled"
    client.create_alias(AliasName=alias_for("flowloom.test/kms-u"), TargetKeyId=arn)
    with pytest.raises(ConfigError, match="Disabled"):
        KmsSigningKeys(client).active("flowloom.test/kms-u")
