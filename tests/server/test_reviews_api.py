"""Access reviews over loopback HTTP, on SQLite and PostgreSQL, with a real gateway key table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.errors import AuthError
from flowloom.gateway.access.service import Access, AccessSettings
from flowloom.ledger.event import Event
from flowloom.server.gateway_view import GatewayView
from tests.server.support import OWN, World, live_server

PASSWORD = "reviewer passphrase for signing"
MASTER = bytes(range(32))
REVIEWS = f"/api/v1/projects/{OWN}/access-reviews"


@pytest.fixture(params=["sqlite", "postgres"])
def any_world(request: pytest.FixtureRequest) -> World:
    world: World = request.getfixturevalue("world" if request.param == "sqlite" else "pg_world")
    return world


@pytest.fixture
def gateway(tmp_path: Path, any_world: World) -> Iterator[Access]:
    """A gateway's key table the server's view reads and revokes in."""
    database = str(tmp_path / "gateway.db")
    access = Access(
        database, master_key_loader=lambda: MASTER, settings=AccessSettings(background=False)
    )
    any_world.server.gateway = GatewayView(database, config=None, master_key_loader=lambda: MASTER)
    yield access
    any_world.server.gateway.close()
    access.close()


def _events(world: World, kind: str, project: str = OWN) -> list[Event]:
    ledger = world.server.ledger(project)
    return [Event.parse(e.envelope) for e in ledger.store.entries(project, kind=kind)]


def _login(client: httpx.Client, email: str) -> str:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


def test_campaign_over_http_revoke_takes_role_keys_and_vkeys_away(
    any_world: World, gateway: Access
) -> None:
    world = any_world
    directory = world.server.directory
    directory.set_password(world.user_ids["admin"], PASSWORD)
    auditor = world.user_ids["auditor"]
    vkey, vsecret = gateway.create_key(name="auditor laptop", owner_user=auditor, project=OWN)
    _, api_secret = directory.create_key(auditor, name="spare")
    admin_key = {"Authorization": f"Bearer {world.keys['admin']}"}
    with live_server(world.server) as base, httpx.Client(base_url=base) as client:
        opened = client.post(REVIEWS, json={"dormant_days": 30, "due_days": 7}, headers=admin_key)
        assert opened.status_code == 201, opened.text
        campaign = opened.json()
        assert campaign["status"] == "open" and campaign["overdue"] is False
        lines = {(ln["user_id"], ln["role"]): ln for ln in campaign["lines"]}
        line = lines[(auditor, "auditor")]
        assert [k["id"] for k in line["virtual_keys"]] == [vkey.id]
        assert {k["name"] for k in line["api_keys"]} == {"test", "spare"}

        again = client.post(REVIEWS, json={}, headers=admin_key)
        assert again.status_code == 409
        listed = client.get(REVIEWS, params={"status": "open"}, headers=admin_key)
        assert [c["id"] for c in listed.json()["campaigns"]] == [campaign["id"]]

        decide = f"{REVIEWS}/{campaign['id']}/lines/{line['line']}"
        csrf = _login(client, "admin@example.org")
        unsigned = client.post(decide, json={"decision": "revoke"}, headers={"X-CSRF-Token": csrf})
        assert unsigned.status_code == 401  # no re-authentication, no decision
        assert directory.grants_of(auditor)
        body = {"decision": "revoke", "email": "admin@example.org", "password": PASSWORD,
                "reason": "moved to another team"}  # fmt: skip
        done = client.post(decide, json=body, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200, done.text
        decided = done.json()
        assert decided["decision"] == "revoke" and decided["decided_by"] == world.user_ids["admin"]
        client.cookies.clear()

        # Revoked at once: the role, the API keys (no role left) and the virtual key.
        assert directory.grants_of(auditor) == {}
        with pytest.raises(AuthError):
            directory.principal_for_key(api_secret)
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {api_secret}"})
        assert me.status_code == 401
        with pytest.raises(AuthError):
            gateway.authenticate(vsecret)

        verdict = client.get(
            f"/api/v1/projects/{OWN}/signatures/{decided['signature']}/verify", headers=admin_key
        )
        assert verdict.status_code == 200, verdict.text
        assert verdict.json()["ok"] is True, verdict.json()["reasons"]
        signature = verdict.json()["signature"]
        assert signature["subject"] == f"access_review:{campaign['id']}/{line['line']}/revoke"

        # The reviewer's own line is someone else's to decide; the owner certifies it.
        directory.set_password(world.user_ids["owner"], PASSWORD)
        own = lines[(world.user_ids["admin"], "admin")]
        csrf = _login(client, "admin@example.org")
        mine = client.post(
            f"{REVIEWS}/{campaign['id']}/lines/{own['line']}",
            json={"decision": "certify", "email": "admin@example.org", "password": PASSWORD},
            headers={"X-CSRF-Token": csrf},
        )
        assert mine.status_code == 403
        client.cookies.clear()
        early = client.post(f"{REVIEWS}/{campaign['id']}/close", headers=admin_key)
        assert early.status_code == 409
        for pending in campaign["lines"]:
            if pending["line"] == line["line"]:
                continue
            who = "owner" if pending["user_id"] == world.user_ids["admin"] else "admin"
            certified = client.post(  # API-key signing: email and password every time
                f"{REVIEWS}/{campaign['id']}/lines/{pending['line']}",
                json={"decision": "certify", "email": f"{who}@example.org", "password": PASSWORD},
                headers={"Authorization": f"Bearer {world.keys[who]}"},
            )
            assert certified.status_code == 200, certified.text
        client.cookies.clear()
        closed = client.post(f"{REVIEWS}/{campaign['id']}/close", headers=admin_key)
        assert closed.status_code == 200, closed.text
        assert closed.json()["counts"]["pending"] == 0
        assert closed.json()["counts"]["revoked"] == 1

        other = client.get(f"/api/v1/access-reviews/{campaign['id']}", headers=admin_key)
        assert other.status_code == 403  # instance campaigns: "*" grants only
        root = {"Authorization": f"Bearer {world.keys['instance_owner']}"}
        not_here = client.get(f"/api/v1/access-reviews/{campaign['id']}", headers=root)
        assert not_here.status_code == 404  # a project's campaign is not the instance's
        dormant = client.get(f"{REVIEWS}/dormant", params={"days": 1}, headers=admin_key)
        assert dormant.status_code == 200 and dormant.json()["days"] == 1

    kinds = [e.kind for e in world.server.ledger(OWN).store.entries(OWN)]
    assert kinds.count("access.review_decided") == len(campaign["lines"])
    assert kinds.count("access.review_opened") == kinds.count("access.review_closed") == 1
    decided_event = _events(world, "access.review_decided")[0]
    assert decided_event.refs["revoked_vkeys"] == (vkey.id,)
    [vkey_event] = _events(world, "auth.vkey_revoked")  # its own event, in its project's log
    assert vkey_event.subject == vkey.id and vkey_event.actor.id == world.user_ids["admin"]
    assert vkey_event.refs["reason"] == "access review"
    assert vkey_event.refs["campaign"] == campaign["id"] and vkey_event.refs["line"] == line["line"]
    assert decided_event.actor.id == world.user_ids["admin"]


def test_generic_append_of_review_kinds_is_refused(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.keys['owner']}"}
    with live_server(world.server) as base, httpx.Client(base_url=base) as client:
        for kind in ("access.review_opened", "access.review_decided", "access.review_closed"):
            response = client.post(
                f"/api/v1/projects/{OWN}/ledger/entries",
                json={"kind": kind, "refs": {"campaign": "AR-0123456789"}},
                headers=headers,
            )
            assert response.status_code == 403, response.text
            assert "carry authority" in response.json()["error"]["message"]
