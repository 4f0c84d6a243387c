"""Who may make an API key's secret, over real HTTP: a secret acts as its owner, so it
goes only to its owner (or, from an instance owner, to a service account), and a key
never reaches beyond the key that made it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from flowloom.auth.permissions import ALL_PROJECTS
from tests.server.support import World, live_server, make_world

PASSWORD = "correct horse battery staple"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    sqlite = request.param == "sqlite"
    database = str(tmp_path / "server.db") if sqlite else request.getfixturevalue("pg_url")
    world = make_world(database, tmp_path / "home")
    directory = world.server.directory
    star_admin = directory.create_user("ops@example.org", "Ops Admin")
    directory.grant(star_admin.id, ALL_PROJECTS, "admin")  # key.admin on "*", not an owner
    world.keys["star_admin"] = directory.create_key(star_admin.id, name="test")[1]
    world.user_ids["star_admin"] = star_admin.id
    yield world
    world.close()


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with live_server(world.server) as base, httpx.Client(base_url=base) as client:
        yield client


def test_an_admin_cannot_mint_a_secret_for_the_instance_owner(
    world: World, http: httpx.Client
) -> None:
    owner_id = world.user_ids["instance_owner"]
    made = http.post(
        "/api/v1/keys",
        json={"name": "takeover", "user_id": owner_id},
        headers=world.headers("star_admin"),
    )
    assert made.status_code == 403, made.text
    [key] = [k for k in world.server.directory.list_keys(owner_id)]
    rotated = http.post(f"/api/v1/keys/{key.id}/rotate", headers=world.headers("star_admin"))
    assert rotated.status_code == 403, rotated.text
    # listing and revoking another user's keys is what key.admin is for
    listed = http.get(
        "/api/v1/keys", params={"user_id": owner_id}, headers=world.headers("star_admin")
    )
    assert listed.status_code == 200 and [k["id"] for k in listed.json()] == [key.id]
    assert all(k.user_id == owner_id for k in world.server.directory.list_keys(owner_id))


def test_an_admin_cannot_mint_for_a_service_account_either(
    world: World, http: httpx.Client
) -> None:
    made = http.post(
        "/api/v1/keys",
        json={"name": "ci", "user_id": world.user_ids["service"]},
        headers=world.headers("star_admin"),
    )
    assert made.status_code == 403, made.text


def test_the_instance_owner_mints_for_a_service_account_not_for_a_person(
    world: World, http: httpx.Client
) -> None:
    owner = world.headers("instance_owner")
    made = http.post(
        "/api/v1/keys", json={"name": "ci", "user_id": world.user_ids["service"]}, headers=owner
    )
    assert made.status_code == 201, made.text
    works = http.post(
        "/api/v1/projects/alpha/ledger/entries",
        json={"kind": "agent.prompt", "body": "hello"},
        headers={"Authorization": f"Bearer {made.json()['secret']}"},
    )
    assert works.status_code == 201, works.text
    person = http.post(
        "/api/v1/keys", json={"name": "x", "user_id": world.user_ids["developer"]}, headers=owner
    )
    assert person.status_code == 403, person.text
    assert "only its owner" in person.json()["error"]["message"]


def test_a_scoped_key_makes_keys_no_wider_than_itself(world: World, http: httpx.Client) -> None:
    directory = world.server.directory
    developer = world.user_ids["developer"]
    _, narrow = directory.create_key(developer, name="narrow", scopes=["ledger.read", "key.self"])
    as_narrow = {"Authorization": f"Bearer {narrow}"}

    unscoped = http.post("/api/v1/keys", json={"name": "wide?"}, headers=as_narrow)
    assert unscoped.status_code == 201, unscoped.text
    assert sorted(unscoped.json()["key"]["scopes"]) == ["key.self", "ledger.read"]
    appended = http.post(
        "/api/v1/projects/alpha/ledger/entries",
        json={"kind": "agent.prompt", "body": "hello"},
        headers={"Authorization": f"Bearer {unscoped.json()['secret']}"},
    )
    assert appended.status_code == 403, appended.text

    wider = http.post(
        "/api/v1/keys",
        json={"name": "wider", "scopes": ["ledger.read", "ledger.append"]},
        headers=as_narrow,
    )
    assert wider.status_code == 403 and "ledger.append" in wider.json()["error"]["message"]

    [full] = [k for k in directory.list_keys(developer) if k.scopes is None]
    rotated = http.post(f"/api/v1/keys/{full.id}/rotate", headers=as_narrow)
    assert rotated.status_code == 403, rotated.text


def _expiry(answer: httpx.Response) -> datetime:
    return datetime.fromisoformat(answer.json()["key"]["expires_at"].replace("Z", "+00:00"))


def test_a_key_never_outlives_the_key_that_made_it(world: World, http: httpx.Client) -> None:
    directory = world.server.directory
    developer = world.user_ids["developer"]
    soon = datetime.now(UTC) + timedelta(seconds=20)
    short, secret = directory.create_key(developer, name="short", expires_at=soon)
    as_short = {"Authorization": f"Bearer {secret}"}
    assert short.expires_at is not None

    child = http.post("/api/v1/keys", json={"name": "child"}, headers=as_short)
    assert child.status_code == 201, child.text
    assert _expiry(child) == short.expires_at  # none asked: the maker's expiry
    later = (soon + timedelta(days=1)).isoformat()
    longer = http.post("/api/v1/keys", json={"name": "x", "expires_at": later}, headers=as_short)
    assert longer.status_code == 403, longer.text
    assert "cannot outlive the key creating it" in longer.json()["error"]["message"]
    earlier = (soon - timedelta(seconds=10)).isoformat()
    shorter = http.post("/api/v1/keys", json={"name": "y", "expires_at": earlier}, headers=as_short)
    assert shorter.status_code == 201 and _expiry(shorter) < short.expires_at
    # A grandchild made by the child is bounded the same way.
    as_child = {"Authorization": f"Bearer {child.json()['secret']}"}
    grandchild = http.post("/api/v1/keys", json={"name": "grandchild"}, headers=as_child)
    assert grandchild.status_code == 201 and _expiry(grandchild) == short.expires_at
    # Rotating a key that never expires, with the short-lived one: the replacement does not
    # outlive the key that made it either.
    [forever] = [k for k in directory.list_keys(developer) if k.name == "test"]
    assert forever.expires_at is None
    rotated = http.post(f"/api/v1/keys/{forever.id}/rotate", headers=as_short)
    assert rotated.status_code == 201, rotated.text
    assert _expiry(rotated) == short.expires_at
    # Keys that do not expire still make keys that do not expire.
    unbounded = http.post("/api/v1/keys", json={"name": "z"}, headers=world.headers("auditor"))
    assert unbounded.status_code == 201 and unbounded.json()["key"]["expires_at"] is None


def test_a_key_made_in_a_session_follows_the_session_policy(
    world: World, http: httpx.Client
) -> None:
    directory = world.server.directory
    developer = world.user_ids["developer"]
    directory.set_password(developer, PASSWORD)
    signed_in = http.post(
        "/api/v1/auth/login", json={"email": "developer@example.org", "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
    lifetime = directory.session_policy.key_lifetime
    before = datetime.now(UTC)
    made = http.post("/api/v1/keys", json={"name": "from the browser"}, headers=csrf)
    assert made.status_code == 201, made.text
    assert before + lifetime <= _expiry(made) <= datetime.now(UTC) + lifetime
    far = (datetime.now(UTC) + lifetime + timedelta(days=1)).isoformat()
    refused = http.post("/api/v1/keys", json={"name": "far", "expires_at": far}, headers=csrf)
    assert refused.status_code == 403, refused.text
    assert "limit of a sign-in session" in refused.json()["error"]["message"]
