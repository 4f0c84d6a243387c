"""Who may make an API key's secret, over real HTTP: a secret acts as its owner, so it
goes only to its owner (or, from an instance owner, to a service account), and a key
never reaches beyond the key that made it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.auth.permissions import ALL_PROJECTS
from tests.server.support import World, live_server, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home")
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
