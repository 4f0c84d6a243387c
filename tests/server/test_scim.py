"""SCIM 2.0 on a real server over loopback: the scim2-tester compliance checker, the
request shapes Okta and Entra ID send (tests/server/scim_fixtures/), filters,
pagination, ETags, token scoping, the limits on what a token may touch, the ledger."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.directory import INSTANCE_PROJECT
from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.services import open_store
from tests.server.support import World, live_server, make_world

FIXTURES = Path(__file__).parent / "scim_fixtures"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    """A live server, its World, and an HTTP client holding a provisioning token."""

    def __init__(self, world: World, base: str, token: str) -> None:
        self.world = world
        self.base = base
        self.token = token
        self.http = httpx.Client(
            base_url=base + "/scim/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        body = {"schemas": [USER], "userName": user_name, **extra}
        response = self.http.post("/Users", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def kinds(self, log: str = INSTANCE_PROJECT) -> list[dict[str, Any]]:
        store = open_store(self.world.server.settings.database)
        try:
            return [json.loads(e.envelope) for e in store.entries(log)]
        finally:
            store.close()


@pytest.fixture
def scim(tmp_path: Path) -> Iterator[Scim]:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    assert world.server.provisioning is not None
    _, token = world.server.provisioning.create_token("tests")
    try:
        with live_server(world.server) as base:
            client = Scim(world, base, token)
            yield client
            client.http.close()
    finally:
        world.close()


def test_the_scim2_tester_compliance_checker_passes(scim: Scim) -> None:
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    with httpx2.Client(
        base_url=scim.base + "/scim/v2", headers={"Authorization": f"Bearer {scim.token}"}
    ) as http:
        results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    failed = [
        f"{r.title} {r.resource_type}: {r.reason}"
        for r in results
        if r.status not in (Status.SUCCESS, Status.SKIPPED)
    ]
    assert not failed, "\n".join(failed)
    succeeded = {r.title for r in results if r.status == Status.SUCCESS}
    for check in ("check_add_attribute", "check_replace_attribute", "check_remove_attribute"):
        assert check in succeeded
    assert len(results) > 50


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: ids[m.group(1)], value)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("provider", ["okta", "entra"])
def test_the_request_shapes_identity_providers_send(scim: Scim, provider: str) -> None:
    _replay(scim, provider)


@pytest.mark.postgres
def test_the_request_shapes_over_postgresql(pg_url: str, tmp_path: Path) -> None:
    world = make_world(pg_url, tmp_path / "home")
    assert world.server.provisioning is not None
    _, token = world.server.provisioning.create_token("tests")
    try:
        with live_server(world.server) as base:
            client = Scim(world, base, token)
            for provider in ("okta", "entra"):
                _replay(client, provider)
            client.http.close()
    finally:
        world.close()


def _replay(scim: Scim, provider: str) -> None:
    script = json.loads((FIXTURES / f"{provider}.json").read_text("utf-8"))
    ids: dict[str, str] = {}
    for step in script["requests"]:
        body = _fill(step.get("body"), ids)
        response = scim.http.request(
            step["method"],
            _fill(step["path"], ids),
            content=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/scim+json"},
        )
        assert response.status_code == step["status"], (step, response.text)
        if response.status_code != 204:
            assert response.headers["content-type"].startswith("application/scim+json")
        answer = response.json() if response.content else {}
        if "capture" in step:
            ids[step["capture"]] = answer["id"]
        if "total" in step:
            assert answer["totalResults"] == step["total"], (step, answer)
        if "absent" in step:
            assert all(step["absent"] not in r for r in answer["Resources"])
        if response.status_code >= 400:
            assert answer["schemas"] == [ERROR] and answer["status"] == str(step["status"])
    directory = scim.world.server.directory
    for name, expected in script["expect"].items():
        user = directory.get_user(ids[name])
        if expected.get("deleted"):
            assert user.deleted_at is not None and user.disabled and user.email is None
            continue
        assert user.disabled is not expected["active"]
        if "name" in expected:
            assert user.name == expected["name"]
        if "email" in expected:
            assert user.email == expected["email"]
        teams = sorted(g.team for g in directory.effective_grants(user.id) if g.team)
        member_of = sorted(
            t.name for t in directory.list_teams() if user in directory.team_members(t.id)
        )
        assert member_of == expected["teams"], teams


def test_filters_and_pagination(scim: Scim) -> None:
    for n in range(5):
        scim.user(
            f"user{n}@example.org",
            displayName=f"Person {n}",
            externalId=f"EXT-{n}",
            emails=[{"value": f"u{n}@{'corp' if n % 2 else 'home'}.example", "type": "work"}],
        )

    def names(query: str, **params: Any) -> list[str]:
        response = scim.http.get("/Users", params={"filter": query, **params})
        assert response.status_code == 200, response.text
        return sorted(r["userName"] for r in response.json()["Resources"])

    assert names('userName eq "USER3@example.org"') == ["user3@example.org"]
    assert names('emails co "corp"') == ["user1@example.org", "user3@example.org"]
    assert names('emails[type eq "work" and value sw "u4@"]') == ["user4@example.org"]
    assert names('displayName sw "person 1" or externalId eq "EXT-2"') == [
        "user1@example.org",
        "user2@example.org",
    ]
    assert names('externalId eq "ext-2"') == []  # externalId is case-exact
    assert len(names('externalId pr and not (userName ew "0@example.org")')) == 4
    page = scim.http.get("/Users", params={"startIndex": 2, "count": 2}).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)
    assert [r["userName"] for r in page["Resources"]] == ["user1@example.org", "user2@example.org"]
    empty = scim.http.get("/Users", params={"count": 0}).json()
    assert empty["totalResults"] == 5 and empty["Resources"] == []
    bad = scim.http.get("/Users", params={"filter": 'userName xx "a"'})
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"
    searched = scim.http.post(
        "/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "user0"',
            "attributes": ["userName"],
        },
    ).json()
    assert searched["totalResults"] == 1
    assert set(searched["Resources"][0]) == {"schemas", "id", "userName", "meta"}


def test_etags_guard_concurrent_changes(scim: Scim) -> None:
    created = scim.user("etag@example.org", displayName="Before")
    url = f"/Users/{created['id']}"
    first = scim.http.get(url)
    etag = first.headers["etag"]
    assert etag == created["meta"]["version"] and etag.startswith('W/"')
    assert scim.http.get(url, headers={"If-None-Match": etag}).status_code == 304
    rename = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "After"}],
    }
    changed = scim.http.patch(url, json=rename, headers={"If-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    stale = scim.http.patch(url, json=rename, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.json()["schemas"] == [ERROR]
    assert scim.http.delete(url, headers={"If-Match": etag}).status_code == 412
    assert scim.http.get(url).json()["displayName"] == "After"
    assert scim.http.delete(url, headers={"If-Match": changed.headers["etag"]}).status_code == 204


def test_a_provisioning_token_works_only_on_scim_and_nothing_else_works_there(
    scim: Scim,
) -> None:
    api_key = scim.world.keys["instance_owner"]
    refused = httpx.get(
        scim.base + "/scim/v2/Users", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert refused.status_code == 401 and refused.json()["schemas"] == [ERROR]
    assert httpx.get(scim.base + "/scim/v2/Users").status_code == 401
    me = httpx.get(scim.base + "/api/v1/me", headers={"Authorization": f"Bearer {scim.token}"})
    assert me.status_code == 401
    provisioning = scim.world.server.provisioning
    assert provisioning is not None
    token = provisioning.list_tokens()[0]
    provisioning.revoke_token(token.id)
    assert scim.http.get("/Users").status_code == 401


def test_a_token_cannot_touch_instance_owners_or_instance_wide_teams(scim: Scim) -> None:
    directory = scim.world.server.directory
    # Claiming the instance owner by email is refused, so nothing about them changes.
    claim = scim.http.post(
        "/Users", json={"schemas": [USER], "userName": "root@example.org", "active": False}
    )
    assert claim.status_code == 403, claim.text
    owner = directory.get_user(scim.world.user_ids["instance_owner"])
    assert not owner.disabled and owner.name == "Root Owner"
    # A team holding a "*" role cannot be claimed or filled through SCIM.
    directory.create_team("admins")
    directory.grant_team("admins", ALL_PROJECTS, "owner")
    member = scim.user("someone@example.org")
    group = scim.http.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "admins", "members": [{"value": member["id"]}]},
    )
    assert group.status_code == 403, group.text
    assert directory.team_members("admins") == []
    # A member must be a SCIM user: a local account cannot be pulled into a group.
    local = scim.world.user_ids["developer"]
    made = scim.http.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "eng", "members": [{"value": local}]}
    )
    assert made.status_code == 400 and made.json()["scimType"] == "invalidValue"


def test_groups_map_to_teams_and_their_roles(scim: Scim) -> None:
    directory = scim.world.server.directory
    member = scim.user("dev@corp.example", displayName="Dee Veloper")
    group = scim.http.post("/Groups", json={"schemas": [GROUP], "displayName": "payments-devs"})
    assert group.status_code == 201
    directory.grant_team("payments-devs", "alpha", "developer")  # the operator's mapping
    add = {
        "schemas": [PATCH],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": member["id"]}]}],
    }
    assert scim.http.patch(f"/Groups/{group.json()['id']}", json=add).status_code == 200
    assert "developer" in directory.grants_of(member["id"])["alpha"]
    read = scim.http.get(f"/Users/{member['id']}").json()
    assert read["groups"][0]["display"] == "payments-devs"
    remove = {
        "schemas": [PATCH],
        "Operations": [{"op": "remove", "path": f'members[value eq "{member["id"]}"]'}],
    }
    assert scim.http.patch(f"/Groups/{group.json()['id']}", json=remove).status_code == 200
    assert "alpha" not in directory.grants_of(member["id"])
    assert scim.http.delete(f"/Groups/{group.json()['id']}").status_code == 204
    assert [t.name for t in directory.list_teams()] == []


def test_every_change_is_in_the_ledger_with_the_token_as_actor(scim: Scim) -> None:
    provisioning = scim.world.server.provisioning
    assert provisioning is not None
    token_id = provisioning.list_tokens()[0].id
    created = scim.user("ledger@example.org")
    off = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim.http.patch(f"/Users/{created['id']}", json=off).status_code == 200
    events = [e for e in scim.kinds() if e.get("subject") in (created["id"], token_id)]
    kinds = [e["kind"] for e in events]
    assert kinds == ["auth.scim_token_created", "auth.user_created", "auth.user_disabled"]
    for event in events[1:]:
        assert event["actor"]["id"] == token_id
        assert event["refs"]["auth_via"] == "scim"


def test_bad_requests_get_scim_errors(scim: Scim) -> None:
    no_name = scim.http.post("/Users", json={"schemas": [USER]})
    assert no_name.status_code == 400 and no_name.json()["scimType"] == "invalidValue"
    scim.user("taken@example.org")
    taken = scim.http.post("/Users", json={"schemas": [USER], "userName": "TAKEN@example.org"})
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    created = scim.user("patched@example.org")
    bad_op = {"schemas": [PATCH], "Operations": [{"op": "move", "path": "userName"}]}
    answer = scim.http.patch(f"/Users/{created['id']}", json=bad_op)
    assert answer.status_code == 400 and answer.json()["scimType"] == "invalidSyntax"
    bad_bool = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "active", "value": "maybe"}],
    }
    assert scim.http.patch(f"/Users/{created['id']}", json=bad_bool).status_code == 400
    not_json = scim.http.post(
        "/Users", content=b"{", headers={"Content-Type": "application/scim+json"}
    )
    assert not_json.status_code == 400
    assert scim.http.get("/Users/usr_nope").status_code == 404
    assert scim.http.get("/Nope").json()["status"] == "404"
    assert scim.http.put("/Schemas").status_code == 405
    quoted = urllib.parse.quote('userName eq "unterminated')
    assert scim.http.get(f"/Users?filter={quoted}").status_code == 400


def test_provisioning_shows_in_the_sox_report(scim: Scim) -> None:
    import datetime

    directory = scim.world.server.directory
    directory.create_team("alpha-devs")
    directory.grant_team("alpha-devs", "alpha", "developer")
    person = scim.user("joiner@example.org")
    group = scim.http.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "alpha-devs",
            "members": [{"value": person["id"]}],
        },
    )
    assert group.status_code == 201, group.text
    off = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim.http.patch(f"/Users/{person['id']}", json=off).status_code == 200
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    report = httpx.post(
        scim.base + "/api/v1/projects/alpha/reports",
        headers=scim.world.headers("instance_owner"),
        json={"framework": "sox", "from": today, "to": today, "format": "json"},
        timeout=60,
    )
    assert report.status_code == 200, report.text
    check = next(c for c in report.json()["checks"] if c["check"] == "access_provisioning")
    about = [f["message"] for f in check["findings"] if person["id"] in json.dumps(f, default=str)]
    assert about, sorted(check)
    assert any("disabled by the identity provider" in m for m in about), about
    assert any("team alpha-devs" in m and "identity provider" in m for m in about), about
    # ... and in the next access review: the person's line says the account is disabled.
    opened = httpx.post(
        scim.base + "/api/v1/projects/alpha/access-reviews",
        headers=scim.world.headers("instance_owner"),
        json={},
        timeout=60,
    )
    assert opened.status_code == 201, opened.text
    lines = [ln for ln in opened.json()["lines"] if ln["user_id"] == person["id"]]
    assert lines and all(ln["disabled"] is True for ln in lines), lines
    assert {ln["team"] for ln in lines} == {"alpha-devs"}


def test_an_administrator_disabling_someone_revokes_their_gateway_keys_too(scim: Scim) -> None:
    from flowloom.gateway.access import Access
    from flowloom.ledger.keys import KeyStore

    server = scim.world.server
    person = server.directory.create_user("keyholder@example.org", "Key Holder")
    database = server.settings.database
    with Access(database, master_key_loader=KeyStore(server.settings.home).master_key) as access:
        by_email, _ = access.create_key(owner_user="keyholder@example.org")
        by_id, _ = access.create_key(owner_user=person.id, project="alpha")
        other, _ = access.create_key(owner_user="someone-else@example.org")
    disabled = httpx.post(
        f"{scim.base}/api/v1/users/{person.id}/disable",
        headers=scim.world.headers("instance_owner"),
    )
    assert disabled.status_code == 200, disabled.text
    with Access(database, master_key_loader=KeyStore(server.settings.home).master_key) as access:
        assert access.get_key(by_email.id).revoked_at is not None
        assert access.get_key(by_id.id).revoked_at is not None
        assert access.get_key(other.id).revoked_at is None
    instance = [e for e in scim.kinds() if e["kind"] == "auth.vkey_revoked"]
    alpha = [e for e in scim.kinds("alpha") if e["kind"] == "auth.vkey_revoked"]
    assert [e["subject"] for e in instance] == [by_email.id]
    assert [e["subject"] for e in alpha] == [by_id.id]
    owner_id = scim.world.user_ids["instance_owner"]
    assert all(e["actor"]["id"] == owner_id for e in instance + alpha)


def test_sorting_and_what_the_server_says_it_supports(scim: Scim) -> None:
    scim.user("b@example.org", name={"familyName": "Hopper"}, emails=[{"value": "z@x.org"}])
    scim.user(
        "A@example.org",
        name={"familyName": "lovelace"},
        emails=[{"value": "y@x.org"}, {"value": "a@x.org", "primary": True}],
    )
    scim.user("c@example.org", emails=[{"value": "m@x.org"}])  # no family name

    def order(**params: Any) -> list[str]:
        response = scim.http.get("/Users", params=params)
        assert response.status_code == 200, response.text
        return [r["userName"] for r in response.json()["Resources"]]

    assert order(sortBy="userName") == ["A@example.org", "b@example.org", "c@example.org"]
    assert order(sortBy="userName", sortOrder="descending") == [
        "c@example.org",
        "b@example.org",
        "A@example.org",
    ]
    # Case-insensitive; missing values last ascending (first descending).
    assert order(sortBy="name.familyName") == ["b@example.org", "A@example.org", "c@example.org"]
    assert order(sortBy="name.familyName", sortOrder="descending")[0] == "c@example.org"
    # A multi-valued attribute sorts by its primary value.
    assert order(sortBy="emails") == ["A@example.org", "c@example.org", "b@example.org"]
    assert order(sortBy="userName", startIndex=2, count=1) == ["b@example.org"]
    searched = scim.http.post(
        "/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "sortBy": "userName",
            "sortOrder": "descending",
        },
    ).json()
    assert searched["Resources"][0]["userName"] == "c@example.org"
    bad = scim.http.get("/Users", params={"sortBy": "userName", "sortOrder": "sideways"})
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidValue"
    config = scim.http.get("/ServiceProviderConfig").json()
    assert config["sort"] == {"supported": True}
    assert config["bulk"] == {"supported": False, "maxOperations": 0, "maxPayloadSize": 0}


def test_simple_filters_are_answered_by_the_database_alike(scim: Scim) -> None:
    from flowloom.auth.scim.service import _GROUP_COLUMNS, _USER_COLUMNS, _narrowed

    assert _narrowed('userName eq "Ada@Example.org"', _USER_COLUMNS) == (
        "username",
        "ada@example.org",
    )
    assert _narrowed(f'{USER}:externalId eq "E-1"', _USER_COLUMNS) == ("externalid", "E-1")
    assert _narrowed('id eq "t1"', _GROUP_COLUMNS) == ("id", "t1")
    for general in ('userName sw "a"', 'userName eq "a" or id eq "b"', 'displayName eq "x"'):
        assert _narrowed(general, _USER_COLUMNS) is None  # read all, filter in memory
    ada = scim.user("ada@example.org", externalId="E-1")
    scim.user("bob@example.org", externalId="E-2")

    def names(query: str) -> list[str]:
        response = scim.http.get("/Users", params={"filter": query})
        assert response.status_code == 200, response.text
        return [r["userName"] for r in response.json()["Resources"]]

    assert names('userName eq "ADA@example.org"') == ["ada@example.org"]
    assert names(f'id eq "{ada["id"]}"') == ["ada@example.org"]
    assert names('externalId eq "E-2"') == ["bob@example.org"]
    assert names('externalId eq "e-2"') == []
    group = scim.http.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "Ops", "externalId": "G-1"}
    ).json()
    found = scim.http.get("/Groups", params={"filter": 'externalId eq "G-1"'}).json()
    assert [g["id"] for g in found["Resources"]] == [group["id"]]


def test_if_match_is_a_compare_and_set(scim: Scim) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from flowloom.auth.scim.service import PreconditionFailedError

    created = scim.user("race@example.org", displayName="Before")
    provisioning = scim.world.server.provisioning
    assert provisioning is not None
    # Two writers read the same version and both pass the ETag comparison; the claim in
    # the UPDATE lets only the first go on.
    seen = provisioning._user_and_stamp(created["id"], "base")
    etag = seen[0]["meta"]["version"]
    provisioning._check_version(seen, etag, "user")
    with pytest.raises(PreconditionFailedError):
        provisioning._check_version(seen, etag, "user")
    # Over HTTP, concurrent PATCHes with one If-Match: exactly one succeeds.
    url = f"/Users/{created['id']}"
    current = scim.http.get(url).headers["etag"]

    def rename(n: int) -> int:
        body = {
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "path": "displayName", "value": f"Writer {n}"}],
        }
        return scim.http.patch(url, json=body, headers={"If-Match": current}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(rename, range(4)))
    assert statuses == [200, 412, 412, 412], statuses
