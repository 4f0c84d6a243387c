"""Key providers: checkpoint keys in a real PKCS#11 token (SoftHSM2), the master key in a
token, in AWS KMS (moto's server on loopback) or in files; rotation and re-wrapping."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowloom.config import KeySettings, load_key_settings, load_settings
from flowloom.errors import ConfigError, KeyFileError, KeyMissingError
from flowloom.gateway.access.vault import ProviderKeyVault
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.hsm import Pkcs11MasterKeys, Pkcs11SigningKeys, Token
from flowloom.ledger.keyprovider import Envelope
from flowloom.ledger.keyring import log_keys
from flowloom.ledger.keys import FileMasterKeys, KeyStore
from flowloom.ledger.kms import KmsMasterKeys
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Signer, Verifier, open_note, sign_note
from flowloom.ledger.providers import open_key_providers, rewrap_subject_keys
from flowloom.ledger.verify import verify_store
from flowloom.services import open_ledger
from flowloom.store.sqlite import SQLiteStore
from tests.ledger.keytoken import AWS_ENV, SoftHsm, kms_endpoint, softhsm

__all__ = ["kms_endpoint", "softhsm"]  # fixtures, used by name

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "note" / "vectors.json").read_text("utf-8")
)


def _token(hsm: SoftHsm) -> Token:
    return Token(hsm.module, hsm.token, hsm.pin)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "ledger.db"))
    yield opened
    opened.close()


def _ledger(store: SQLiteStore, keys: Any, master: Any, log: str) -> Ledger:
    return open_ledger(
        store,
        keys,
        master=master,
        log=log,
        origin=f"flowloom.test/{log}",
        actor={"type": "human", "id": "ann"},
        max_body_bytes=1 << 20,
    )


def _import_seed(hsm: SoftHsm, name: str, skey: str) -> None:
    """Put a known Ed25519 seed into the token, labelled as the key in use for `name`."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    signer = Signer.from_skey(skey)
    seed = base64.b64decode(skey.split("+", 4)[4])[1:]
    session = _token(hsm).session()
    ident = os.urandom(16)
    common = {
        pkcs11.Attribute.KEY_TYPE: pkcs11.KeyType.EC_EDWARDS,
        pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112"),
        pkcs11.Attribute.TOKEN: True,
        pkcs11.Attribute.LABEL: name,
        pkcs11.Attribute.ID: ident,
    }
    session.create_object(
        {
            **common,
            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
            pkcs11.Attribute.VALUE: seed,
            pkcs11.Attribute.SIGN: True,
            pkcs11.Attribute.SENSITIVE: True,
            pkcs11.Attribute.EXTRACTABLE: False,
            pkcs11.Attribute.PRIVATE: True,
        }
    )
    public = signer.verifier().public_key
    session.create_object(
        {
            **common,
            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY,
            pkcs11.Attribute.EC_POINT: b"\x04\x20" + public,
            pkcs11.Attribute.VERIFY: True,
        }
    )


# -- checkpoint keys in a token ---------------------------------------------------------


def test_a_token_key_signs_the_known_answer_note_byte_for_byte(softhsm: SoftHsm) -> None:
    vector = next(v for v in VECTORS["vectors"] if v["name"] == "go-note-PeterNeumann")
    _import_seed(softhsm, "PeterNeumann", vector["skey"])
    keys = Pkcs11SigningKeys(_token(softhsm))
    verifier = Verifier.from_vkey(vector["vkey"])
    signer = keys.find(verifier)
    assert signer is not None and signer.external is not None
    assert sign_note(vector["text"], signer) == vector["note"]
    assert open_note(vector["note"], [verifier]).verified_by == (verifier,)
    with pytest.raises(KeyFileError, match="cannot be exported"):
        signer.to_skey()  # the key never leaves the token


def test_a_log_signed_in_the_token_verifies_with_its_public_key(
    softhsm: SoftHsm, store: SQLiteStore
) -> None:
    token = _token(softhsm)
    keys = Pkcs11SigningKeys(token)
    ledger = _ledger(store, keys, Pkcs11MasterKeys(token, "test-master-a"), "hsm-a")
    ledger.record("agent.prompt", body=b"hello")
    ledger.record("decision.approve", meta={"subject": "D-1"})  # attested in the token
    checkpoint = ledger.checkpoint()
    vkey = ledger.verifier
    generated = json.loads(next(iter(store.entries("hsm-a", kind="key.generated"))).envelope)
    assert generated["refs"]["provider"] == "pkcs11"
    assert generated["refs"]["vkey"] == vkey.vkey
    # The note is a C2SP signed note like any other: the public key alone opens it.
    assert open_checkpoint(checkpoint.note, vkey).size == checkpoint.size
    report = verify_store(store, "hsm-a", vkey)
    assert report.ok, report.problems
    # The private key is sensitive and not extractable in the token.
    import pkcs11

    private = token.objects(
        object_class=pkcs11.ObjectClass.PRIVATE_KEY, label="flowloom.test/hsm-a"
    )
    assert len(private) == 1
    assert private[0][pkcs11.Attribute.EXTRACTABLE] is False
    assert private[0][pkcs11.Attribute.SENSITIVE] is True
    # No key file was written anywhere for it.
    assert not keys.has_signer("flowloom.test/hsm-never")


def test_rotating_a_token_key_is_recorded_and_old_checkpoints_still_verify(
    softhsm: SoftHsm, store: SQLiteStore
) -> None:
    token = _token(softhsm)
    keys = Pkcs11SigningKeys(token)
    ledger = _ledger(store, keys, Pkcs11MasterKeys(token, "test-master-b"), "hsm-b")
    ledger.record("agent.prompt", body=b"before")
    first = ledger.checkpoint()
    old = ledger.verifier
    rotation = ledger.rotate_key(reason="yearly rotation")
    ledger.record("agent.prompt", body=b"after")
    ledger.checkpoint()
    assert rotation.old == old and rotation.new == ledger.verifier != old
    rotated = json.loads(next(iter(store.entries("hsm-b", kind="key.rotated"))).envelope)
    assert rotated["refs"]["provider"] == "pkcs11"
    assert rotated["refs"]["old_vkey"] == old.vkey
    assert log_keys(store, "hsm-b").verifiers == (old, rotation.new)
    assert open_checkpoint(first.note, old).size == first.size
    assert verify_store(store, "hsm-b", rotation.new).ok
    # Both keys stay in the token, found by key id; the new one is the one in use.
    assert keys.find(old) is not None
    active = keys.active("flowloom.test/hsm-b")
    assert active is not None and active.verifier() == rotation.new


def test_a_home_whose_token_lacks_the_log_key_says_where_it_looked(
    softhsm: SoftHsm, store: SQLiteStore, tmp_path: Path
) -> None:
    files = KeyStore(tmp_path / "home")
    ledger = _ledger(store, files, FileMasterKeys(files), "hsm-c")
    ledger.record("agent.prompt", body=b"x")
    other = _ledger(store, Pkcs11SigningKeys(_token(softhsm)), FileMasterKeys(files), "hsm-c")
    with pytest.raises(KeyMissingError) as caught:
        other.checkpoint()
    message = caught.value.diagnostics()
    assert "PKCS#11 token 'flowloom-tests'" in message and "'flowloom.test/hsm-c'" in message


def test_a_wrong_pin_or_token_is_a_config_error(softhsm: SoftHsm) -> None:
    with pytest.raises(ConfigError, match="PIN"):
        Token(softhsm.module, softhsm.token, "0000").session()
    with pytest.raises(ConfigError, match="no PKCS#11 token labelled 'nope'"):
        Token(softhsm.module, "nope", softhsm.pin).session()


# -- the master key ------------------------------------------------------------------------


def test_token_master_key_encrypts_bodies_and_rotation_rewraps_them(
    softhsm: SoftHsm, store: SQLiteStore, tmp_path: Path
) -> None:
    token = _token(softhsm)
    master = Pkcs11MasterKeys(token, "test-master-d")
    files = KeyStore(tmp_path / "home")
    ledger = _ledger(store, files, master, "hsm-d")
    ack = ledger.record("agent.prompt", body=b"secret prompt", data_subject="ann@example.com")
    [(log, _, wrapped)] = store.subject_keys()
    assert log == "hsm-d"
    first = master.active(create=False)
    assert Envelope.ref_of(wrapped) == first.ref
    assert not (tmp_path / "home" / "keys" / "master.key").exists()  # nothing on disk

    old, new = master.rotate(None)
    assert old is not None and old.ref == first.ref and new.ref != first.ref
    envelope = Envelope(master, create=False)
    done = rewrap_subject_keys(store, envelope)
    assert (done.moved, done.current, done.skipped) == (1, 0, 0)
    [(_, _, rewrapped)] = store.subject_keys()
    assert Envelope.ref_of(rewrapped) == new.ref
    assert rewrap_subject_keys(store, envelope).current == 1  # a second run moves nothing
    fresh = _ledger(store, files, Pkcs11MasterKeys(token, "test-master-d"), "hsm-d")
    entry = next(e for e in store.entries("hsm-d") if e.index == ack.index)
    body_digest = json.loads(entry.envelope)["body"]
    assert fresh.read_body(body_digest) == b"secret prompt"


def _kms(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return boto3.client("kms", region_name="eu-west-1", endpoint_url=endpoint)


def test_kms_master_key_wraps_in_kms_and_rotation_moves_the_alias(
    kms_endpoint: str, monkeypatch: pytest.MonkeyPatch, store: SQLiteStore, tmp_path: Path
) -> None:
    client = _kms(kms_endpoint, monkeypatch)
    first = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")
    alias = f"alias/flowloom-{os.urandom(4).hex()}"
    client.create_alias(AliasName=alias, TargetKeyId=first["KeyMetadata"]["KeyId"])
    settings = KeySettings(master="kms", kms_key_id=alias, kms_endpoint=kms_endpoint)
    providers = open_key_providers(tmp_path / "home", settings)
    ledger = _ledger(store, providers.signing, providers.master, "kms-a")
    ledger.record("agent.prompt", body=b"kms body", data_subject="bob")
    [(_, subject, wrapped)] = store.subject_keys()
    assert Envelope.ref_of(wrapped) == "kms:" + first["KeyMetadata"]["Arn"]
    envelope = providers.envelope(create=False)
    data_key = envelope.unwrap(wrapped, subject.encode())
    with pytest.raises(KeyFileError):
        envelope.unwrap(wrapped, b"another subject")  # the context is bound by KMS
    # A row naming a KMS key in another account does not choose where FlowLoom decrypts.
    foreign = "kms:arn:aws:kms:eu-west-1:999999999999:key/0c1d"
    forged = b"FLMK\x01" + bytes([len(foreign)]) + foreign.encode() + wrapped[-40:]
    with pytest.raises(KeyMissingError, match="not reachable"):
        envelope.unwrap(forged, subject.encode())

    old, new = providers.master.rotate(None)
    assert old is not None and old.ref == "kms:" + first["KeyMetadata"]["Arn"]
    target = client.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    assert new.ref == "kms:" + target != old.ref
    assert rewrap_subject_keys(store, providers.envelope(create=False)).moved == 1
    [(_, _, rewrapped)] = store.subject_keys()
    assert Envelope.ref_of(rewrapped) == new.ref
    assert providers.envelope(create=False).unwrap(rewrapped, subject.encode()) == data_key
    entry = next(e for e in store.entries("kms-a") if e.kind == "agent.prompt")
    assert ledger.read_body(json.loads(entry.envelope)["body"]) == b"kms body"


def test_kms_rotation_needs_an_alias(
    kms_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = _kms(kms_endpoint, monkeypatch)
    created = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")
    key = created["KeyMetadata"]["KeyId"]
    masters = KmsMasterKeys(client, key)
    assert masters.active(create=False).ref.startswith("kms:arn:")
    with pytest.raises(ConfigError, match="not an alias"):
        masters.rotate(None)
    with pytest.raises(ConfigError, match="no key is named"):
        KmsMasterKeys(client, None).active(create=True)


def test_file_master_key_rows_from_before_providers_still_read_and_rotate(
    store: SQLiteStore, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    files = KeyStore(tmp_path / "home")
    raw = files.master_key()
    # A row as FlowLoom wrote it before providers: nonce || AES-GCM(master, key, subject).
    nonce, data_key = os.urandom(12), os.urandom(32)
    legacy = nonce + AESGCM(raw).encrypt(nonce, data_key, b"subj:1")
    store.put_subject_key("old", "subj:1", legacy)
    masters = FileMasterKeys(files)
    envelope = Envelope(masters, create=False)
    assert envelope.unwrap(legacy, b"subj:1") == data_key
    old, new = masters.rotate(None)
    assert old is not None and old.raw == raw and new.raw != raw
    assert (tmp_path / "home" / "keys" / f"master.{old.ref[5:]}.key").exists()
    assert files.master_key() == new.raw  # master.key is the new key now
    assert rewrap_subject_keys(store, Envelope(masters, create=False)).moved == 1
    [(_, _, rewrapped)] = store.subject_keys()
    assert Envelope.ref_of(rewrapped) == new.ref
    assert Envelope(masters, create=False).unwrap(rewrapped, b"subj:1") == data_key


def test_provider_keys_sealed_before_providers_are_resealed_by_a_rotation(
    tmp_path: Path,
) -> None:
    files = KeyStore(tmp_path / "home")
    legacy_vault = ProviderKeyVault(files.master_key)  # raw bytes: the 0x01 form
    sealed = legacy_vault.seal("anthropic", "sk-ant-secret")
    masters = FileMasterKeys(files)
    vault = ProviderKeyVault(lambda: Envelope(masters, create=True))
    assert vault.open("anthropic", sealed) == "sk-ant-secret"
    masters.rotate(None)
    renewed = vault.rewrap("anthropic", sealed)
    assert renewed is not None and renewed[:1] == b"\x02"
    again = ProviderKeyVault(lambda: Envelope(masters, create=False))
    assert again.open("anthropic", renewed) == "sk-ant-secret"
    assert again.rewrap("anthropic", renewed) is None
    with pytest.raises(KeyFileError):
        again.open("openai", renewed)  # bound to its name


# -- settings ----------------------------------------------------------------------------


def test_key_settings_come_from_the_user_config_and_environment(tmp_path: Path) -> None:
    user = tmp_path / "config.toml"
    user.write_text('[keys]\nsigning = "pkcs11"\npkcs11_token = "t"\n')
    found = load_key_settings({"FLOWLOOM_PKCS11_PIN": "9876", "FLOWLOOM_MASTER_KEY": "kms"}, user)
    assert (found.signing, found.master, found.pkcs11_token, found.pin()) == (
        "pkcs11",
        "kms",
        "t",
        "9876",
    )
    assert "9876" not in repr(found)  # the PIN is never printed
    assert load_key_settings({"FLOWLOOM_SIGNING_KEYS": "kms"}, user).signing == "kms"
    with pytest.raises(ConfigError, match="unknown signing key provider 'vault'"):
        load_key_settings({"FLOWLOOM_SIGNING_KEYS": "vault"}, user)
    user.write_text('[keys]\npkcs11_pin = "1234"\n')
    with pytest.raises(ConfigError, match="PIN file"):
        load_key_settings({}, user)


def test_a_repository_config_may_not_name_key_providers(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".flowloom").mkdir()
    (repo / ".flowloom" / "config.toml").write_text(
        '[keys]\nsigning = "pkcs11"\npkcs11_module = "/tmp/evil.so"\n'
    )
    with pytest.raises(ConfigError, match="may not say where keys are held"):
        load_settings(repo, {"HOME": str(tmp_path)})
