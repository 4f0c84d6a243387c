"""Offboarding over real HTTP on loopback, on SQLite and PostgreSQL: a disabled user's
session cookie and API key fail on the next request, enabling restores sign-in but not
the keys, deleting erases the person and keeps their past events readable, roles
granted to and revoked from teams change access at once, and every change is an
``auth.*`` event in the ledger naming the caller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.auth.directory import DELETED_USER_NAME
from flowloom.decisions.records import DecisionBook
from flowloom.ledger.event import Event
from flowloom.server import INSTANCE_PROJECT
from tests.server.support import OWN, World, live_server, make_world

PASSWORD = "correct horse battery staple"
API = "/api/v1"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    built = make_world(db_url, tmp_path / "home")
    yield built
    built.close()


@pytest.fixture
def base(world: World) -> Iterator[str]:
    with live_server(world.server) as url:
        yield url


def _events(world: World, project: str, kind: str) -> list[Event]:
    ledger = world.server.ledger(project)
    return [Event.parse(e.envelope) for e in ledger.store.entries(project, kind=kind)]


def _login(client: httpx.Client, email: str) -> httpx.Response:
    return client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})


def test_disable_enable_delete_over_http(world: World, base: str) -> None:
    directory = world.server.directory
    root = world.user_ids["instance_owner"]
    owner = httpx.Client(base_url=base, headers=world.headers("instance_owner"))
    lee = directory.create_user("lee@example.org", "Lee Leaver", password=PASSWORD)
    directory.grant(lee.id, OWN, "developer")
    _, secret = directory.create_key(lee.id, name="laptop")
    by_key = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"})
    browser = httpx.Client(base_url=base)
    with owner, by_key, browser:
        assert _login(browser, "lee@example.org").status_code == 200
        written = by_key.post(
            f"{API}/projects/{OWN}/ledger/entries",
            json={"kind": "agent.prompt", "body": "ship it", "session": "s-lee"},
        )
        assert written.status_code == 201, written.text
        index = written.json()["index"]
        assert browser.get(f"{API}/me").status_code == 200
        assert by_key.get(f"{API}/me").status_code == 200

        disabled = owner.post(f"{API}/users/{lee.id}/disable")
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] is True
        # The very next request with the same cookie or key is refused.
        assert browser.get(f"{API}/me").status_code == 401
        assert by_key.get(f"{API}/me").status_code == 401
        assert _login(browser, "lee@example.org").status_code == 401

        enabled = owner.post(f"{API}/users/{lee.id}/enable")
        assert enabled.status_code == 200 and enabled.json()["disabled"] is False
        assert _login(browser, "lee@example.org").status_code == 200
        assert browser.get(f"{API}/me").status_code == 200
        assert by_key.get(f"{API}/me").status_code == 401  # the key stays revoked
        keys = owner.get(f"{API}/keys", params={"user_id": lee.id}).json()
        assert [k["revoked_at"] is not None for k in keys] == [True]

        # Refusals: oneself, an enabled-again deleted user, an unknown user.
        assert owner.post(f"{API}/users/{root}/disable").status_code == 403
        assert owner.delete(f"{API}/users/{root}").status_code == 403
        assert owner.post(f"{API}/users/usr_missing/disable").status_code == 404

        assert owner.delete(f"{API}/users/{lee.id}").status_code == 204
        assert browser.get(f"{API}/me").status_code == 401  # the new session ended too
        assert _login(browser, "lee@example.org").status_code == 401
        [listed] = [u for u in owner.get(f"{API}/users").json() if u["id"] == lee.id]
        assert listed["email"] is None and listed["name"] == DELETED_USER_NAME
        assert listed["deleted_at"] is not None and listed["disabled"] is True
        assert owner.get(f"{API}/users/{lee.id}/grants").json() == []
        assert owner.post(f"{API}/users/{lee.id}/enable").status_code == 409

        # The ledger is not edited: Lee's event still reads, naming Lee's id.
        past = owner.get(f"{API}/projects/{OWN}/ledger/entries/{index}")
        assert past.status_code == 200
        assert past.json()["envelope"]["actor"]["id"] == lee.id
        assert owner.get(f"{API}/projects/{OWN}/ledger/entries/{index}/body").content == (
            b"ship it"
        )

    # Every change is recorded, by the instance owner, through their API key.
    for kind in ("auth.user_disabled", "auth.user_enabled", "auth.user_deleted"):
        [event] = [e for e in _events(world, INSTANCE_PROJECT, kind) if e.subject == lee.id]
        assert event.actor.id == root, kind
        assert event.refs["auth_via"] == "key", kind
    [deleted] = [e for e in _events(world, INSTANCE_PROJECT, "auth.user_deleted")]
    assert "lee@example.org" not in deleted.canonical().decode()
    [revoked] = _events(world, OWN, "auth.role_revoked")
    assert revoked.subject == lee.id and revoked.actor.id == root
    assert revoked.refs["role"] == "developer" and revoked.refs["reason"] == "user deleted"


def test_team_roles_change_access_at_once(world: World, base: str) -> None:
    directory = world.server.directory
    nia = directory.create_user("nia@example.org", "Nia New")
    _, secret = directory.create_key(nia.id, name="laptop")
    entries = f"{API}/projects/{OWN}/ledger/entries"
    team_role = f"{API}/projects/{OWN}/teams/payments/developer"
    with (
        httpx.Client(base_url=base, headers=world.headers("instance_owner")) as owner,
        httpx.Client(base_url=base, headers=world.headers("admin")) as project_admin,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as nia_http,
    ):
        assert owner.post(f"{API}/teams", json={"name": "payments"}).status_code == 201
        assert owner.put(f"{API}/teams/payments/members/{nia.id}").status_code == 204
        assert nia_http.get(entries).status_code in (403, 404)

        # A project's administrator grants a team a role on it, as for a person.
        assert project_admin.put(team_role).status_code == 204
        assert nia_http.get(entries).status_code == 200
        assert owner.get(f"{API}/teams").json()[0]["name"] == "payments"
        assert owner.get(f"{API}/teams/payments/roles").json() == [
            {"project": OWN, "role": "developer", "team": "payments"}
        ]
        assert owner.get(f"{API}/users/{nia.id}/grants").json() == [
            {"project": OWN, "role": "developer", "team": "payments"}
        ]
        bad_role = project_admin.put(f"{API}/projects/{OWN}/teams/payments/god")
        assert bad_role.status_code == 400

        assert project_admin.delete(team_role).status_code == 204
        assert nia_http.get(entries).status_code in (403, 404)
        assert project_admin.delete(team_role).status_code == 404
        assert owner.get(f"{API}/teams/payments/roles").json() == []
        # A person's direct grant works the same way.
        direct = f"{API}/projects/{OWN}/members/{nia.id}/auditor"
        assert project_admin.put(direct).status_code == 204
        assert nia_http.get(f"{API}/projects/{OWN}/audit").status_code == 200
        assert project_admin.delete(direct).status_code == 204
        assert nia_http.get(f"{API}/projects/{OWN}/audit").status_code in (403, 404)

    admin_id = world.user_ids["admin"]
    granted = [e for e in _events(world, OWN, "auth.role_granted") if "team" in e.refs]
    revoked = [e for e in _events(world, OWN, "auth.role_revoked") if "team" in e.refs]
    assert [(e.refs["team"], e.refs["role"], e.actor.id) for e in granted + revoked] == [
        ("payments", "developer", admin_id),
        ("payments", "developer", admin_id),
    ]


def test_a_signature_still_verifies_after_its_signer_is_cycled_and_deleted(
    world: World, base: str
) -> None:
    """The signer check reads the instance log: disabled, enabled again, then signing,
    then deleted: the signature was made while enabled, so it still verifies."""
    directory = world.server.directory
    approver = world.user_ids["approver"]
    directory.set_password(approver, PASSWORD)
    owner = httpx.Client(base_url=base, headers=world.headers("instance_owner"))
    with owner:
        assert owner.post(f"{API}/users/{approver}/disable").status_code == 200
        assert owner.post(f"{API}/users/{approver}/enable").status_code == 200
        _, secret = directory.create_key(approver, name="after return")
        decision = DecisionBook(world.server.ledger(OWN)).record(
            title="Keep audit logs for seven years", requested_by="developer@example.org"
        )
        signed = httpx.post(
            f"{base}{API}/projects/{OWN}/decisions/{decision.id}/approve",
            json={"email": "approver@example.org", "password": PASSWORD},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert signed.status_code == 201, signed.text
        sig_id = signed.json()["signature"]["id"]
        assert owner.delete(f"{API}/users/{approver}").status_code == 204
        verdict = owner.get(f"{API}/projects/{OWN}/signatures/{sig_id}/verify").json()
    checks = {c["name"]: c for c in verdict["checks"]}
    assert checks["signer"]["status"] == "pass", checks["signer"]
    assert verdict["ok"] is True
