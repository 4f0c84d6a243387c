"""Signatures and decision approval over loopback HTTP: session + CSRF, API key + credentials."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.ledger import merkle
from flowloom.ledger.event import Event
from flowloom.ledger.note import Verifier
from flowloom.ledger.receipt import Receipt, verify_receipt
from tests.server.support import OWN, World, live_server

PASSWORD = "approver passphrase for signing"
DECISIONS = f"/api/v1/projects/{OWN}/decisions"
SIGNATURES = f"/api/v1/projects/{OWN}/signatures"


@pytest.fixture
def base(world: World) -> Iterator[str]:
    world.server.directory.set_password(world.user_ids["approver"], PASSWORD)
    with live_server(world.server) as url:
        yield url


def _decision(world: World, *, requested_by: str = "developer@example.org") -> str:
    book = DecisionBook(world.server.ledger(OWN))
    return book.record(title="Rotate signing keys yearly", requested_by=requested_by).id


def _events(world: World, kind: str) -> list[Event]:
    ledger = world.server.ledger(OWN)
    return [Event.parse(e.envelope) for e in ledger.store.entries(OWN, kind=kind)]


def _login(client: httpx.Client) -> str:
    response = client.post(
        "/api/v1/auth/login", json={"email": "approver@example.org", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    csrf = response.json()["csrf_token"]
    assert isinstance(csrf, str)
    return csrf


def test_approve_with_a_session_cookie_csrf_and_reauthentication(world: World, base: str) -> None:
    decision = _decision(world)
    with httpx.Client(base_url=base) as client:
        csrf = _login(client)
        listed = client.get(DECISIONS)
        assert listed.status_code == 200
        [shown] = [d for d in listed.json()["decisions"] if d["id"] == decision]
        assert shown["status"] == "proposed"
        digest = shown["content_digest"]

        approve = f"{DECISIONS}/{decision}/approve"
        no_csrf = client.post(approve, json={"email": "approver@example.org", "password": PASSWORD})
        assert no_csrf.status_code == 403
        password_only = client.post(
            approve, json={"password": PASSWORD}, headers={"X-CSRF-Token": csrf}
        )
        assert password_only.status_code == 401
        assert "first signature in a session" in password_only.json()["error"]["message"]

        done = client.post(
            approve,
            json={"email": "approver@example.org", "password": PASSWORD},
            headers={"X-CSRF-Token": csrf},
        )
        assert done.status_code == 201, done.text
        signature = done.json()["signature"]
        assert signature["printed_name"] == "Approver Person"
        assert signature["meaning"] == "approved"
        assert signature["subject"] == f"decision:{decision}"
        assert signature["content_digest"] == digest
        assert signature["components"] == ["email", "password"]
        assert signature["auth_session"] and signature["auth_key"] is None
        assert done.json()["approval"]["signature"] == signature["id"]
        assert PASSWORD not in done.text

        shown = client.get(f"{DECISIONS}/{decision}").json()
        assert shown["status"] == "accepted"
        assert shown["approvals"][0]["signature"] == signature["id"]

        # Later in the same session the password alone signs.
        again = client.post(
            SIGNATURES,
            json={
                "subject": f"decision:{decision}",
                "content_digest": digest,
                "meaning": "responsible",
                "password": PASSWORD,
            },
            headers={"X-CSRF-Token": csrf},
        )
        assert again.status_code == 201, again.text
        assert again.json()["components"] == ["password"]
        read = client.get(f"{SIGNATURES}/{again.json()['id']}")
        assert read.status_code == 200 and read.json()["meaning"] == "responsible"

    [approve_event] = _events(world, "decision.approve")
    assert approve_event.refs["signature"] == signature["id"]


def test_approve_with_an_api_key_and_credentials(world: World, base: str) -> None:
    decision = _decision(world)
    headers = world.headers("approver")
    with httpx.Client(base_url=base, headers=headers) as client:
        approve = f"{DECISIONS}/{decision}/approve"
        missing = client.post(approve, json={"password": PASSWORD})
        assert missing.status_code == 401
        wrong = client.post(
            approve, json={"email": "approver@example.org", "password": "not my password at all"}
        )
        assert wrong.status_code == 401
        done = client.post(
            approve,
            json={"email": "approver@example.org", "password": PASSWORD, "meaning": "reviewed"},
        )
        assert done.status_code == 201, done.text
        assert done.json()["signature"]["meaning"] == "reviewed"
        assert done.json()["signature"]["auth_key"]
        repeat = client.post(
            approve,
            json={"email": "approver@example.org", "password": PASSWORD, "meaning": "reviewed"},
        )
        assert repeat.status_code == 409
    reasons = [e.refs["reason"] for e in _events(world, "auth.signature_failed")]
    assert reasons == ["email_missing", "bad_credentials"]


def test_auditor_and_developer_cannot_sign_and_service_accounts_cannot_read(
    world: World, base: str
) -> None:
    decision = _decision(world)
    digest = DecisionBook(world.server.ledger(OWN)).get(decision).content_digest
    body = {"email": "auditor@example.org", "password": PASSWORD}
    for who in ("auditor", "developer"):
        refused = httpx.post(
            f"{base}{DECISIONS}/{decision}/approve", json=body, headers=world.headers(who)
        )
        assert refused.status_code == 403, (who, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
        signed = httpx.post(
            f"{base}{SIGNATURES}",
            json={
                "subject": f"decision:{decision}",
                "content_digest": digest,
                "meaning": "approved",
                **body,
            },
            headers=world.headers(who),
        )
        assert signed.status_code == 403
    assert httpx.get(f"{base}{DECISIONS}", headers=world.headers("auditor")).status_code == 200
    assert httpx.get(f"{base}{DECISIONS}", headers=world.headers("service")).status_code == 403
    assert _events(world, "signature.apply") == []


def test_segregation_of_duties_over_http(world: World, base: str) -> None:
    decision = _decision(world, requested_by="Approver Person <approver@example.org>")
    refused = httpx.post(
        f"{base}{DECISIONS}/{decision}/approve",
        json={"email": "approver@example.org", "password": PASSWORD},
        headers=world.headers("approver"),
    )
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert f"cannot approve {decision}: they requested it" in error["message"]
    assert "forbid_self_approval" in error["hint"]
    assert _events(world, "signature.apply") == []
    assert [e.subject for e in _events(world, "auth.approval_denied")] == [decision]


def test_verify_endpoint_and_offline_receipt(world: World, base: str) -> None:
    decision = _decision(world)
    headers = world.headers("approver")
    done = httpx.post(
        f"{base}{DECISIONS}/{decision}/approve",
        json={"email": "approver@example.org", "password": PASSWORD},
        headers=headers,
    )
    assert done.status_code == 201, done.text
    sig_id = done.json()["signature"]["id"]

    verdict = httpx.get(f"{base}{SIGNATURES}/{sig_id}/verify", headers=world.headers("auditor"))
    assert verdict.status_code == 200, verdict.text
    result = verdict.json()
    assert result["ok"] is True and result["reasons"] == []
    assert {c["name"]: c["status"] for c in result["checks"]} == {
        "included": "pass",
        "content": "pass",
        "origin": "pass",
        "signer": "pass",
        "reauthentication": "pass",
    }
    # An auditor checks the receipt with nothing but the published vkey and the entry.
    vkey = httpx.get(f"{base}/api/v1/projects/{OWN}/ledger/vkey", headers=headers).text.strip()
    assert vkey == result["vkey"]
    entry = httpx.get(f"{base}/api/v1/projects/{OWN}/ledger/entries/{sig_id}", headers=headers)
    leaf = bytes.fromhex(entry.json()["leaf_hash"])
    assert leaf == merkle.leaf_hash(world.server.ledger(OWN).entry(sig_id).envelope)
    verify_receipt(Receipt.parse(result["receipt"]), leaf, Verifier.from_vkey(vkey))

    not_a_signature = httpx.get(f"{base}{SIGNATURES}/0/verify", headers=headers)
    assert not_a_signature.status_code == 404


@pytest.mark.postgres
def test_approve_and_verify_on_postgresql(pg_world: World) -> None:
    pg_world.server.directory.set_password(pg_world.user_ids["approver"], PASSWORD)
    decision = _decision(pg_world)
    headers = pg_world.headers("approver")
    with live_server(pg_world.server) as url:
        done = httpx.post(
            f"{url}{DECISIONS}/{decision}/approve",
            json={"email": "approver@example.org", "password": PASSWORD},
            headers=headers,
        )
        assert done.status_code == 201, done.text
        sig_id = done.json()["signature"]["id"]
        verdict = httpx.get(f"{url}{SIGNATURES}/{sig_id}/verify", headers=headers).json()
    assert verdict["ok"] is True, verdict["reasons"]
    assert verdict["signature"]["printed_name"] == "Approver Person"
