"""The team server with its keys in a PKCS#11 token (SoftHSM2): the instance log's and
every project's signing keys, and the master key, are generated in the token; the
public keys it serves verify everything, and no key file is written."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.note import Verifier
from flowloom.ledger.verify import verify_store
from tests.ledger.keytoken import SoftHsm, softhsm
from tests.server.support import OWN, live_server, make_world

__all__ = ["softhsm"]  # a fixture, used by name


def test_a_server_keeps_its_keys_in_the_token(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in softhsm.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLOWLOOM_SIGNING_KEYS", "pkcs11")
    monkeypatch.setenv("FLOWLOOM_MASTER_KEY", "pkcs11")
    monkeypatch.setenv("FLOWLOOM_PKCS11_MASTER_LABEL", "server-test-master")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    home = tmp_path / "server-home"
    world = make_world(str(tmp_path / "server.db"), home, public_url="http://hsm.test")
    server = world.server
    try:
        instance = json.loads(
            next(iter(server.store.entries(INSTANCE_PROJECT, kind="key.generated"))).envelope
        )
        assert instance["refs"]["provider"] == "pkcs11"
        ledger = server.ledgers.get(OWN)
        ledger.record("agent.prompt", body=b"secret", data_subject="ann@example.org")
        checkpoint = ledger.checkpoint()
        with live_server(server) as base, httpx.Client(base_url=base, timeout=30) as http:
            http.headers.update(world.headers("owner"))
            served = Verifier.from_vkey(
                http.get(f"/api/v1/projects/{OWN}/ledger/vkey").text.strip()
            )
        assert open_checkpoint(checkpoint.note, served).size == checkpoint.size
        report = verify_store(
            server.store, OWN, served, decrypt=lambda stored: ledger.read_body(stored.digest)
        )
        assert report.ok, report.problems  # the body decrypts through the token's key
        assert verify_store(server.store, INSTANCE_PROJECT).ok
        [(_, _, wrapped)] = server.store.subject_keys()
        assert wrapped.startswith(b"FLMK\x01") and b"pkcs11:" in wrapped
        keys = home / "keys"
        assert not keys.exists() or list(keys.iterdir()) == []  # nothing on disk
    finally:
        server.close()
