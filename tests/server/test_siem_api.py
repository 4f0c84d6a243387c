"""SIEM destinations and scanner results over the API, on a real server build."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowloom.server.app import create_app
from tests.server.support import OWN, World, make_world
from tests.siem.standins import SplunkHec

FIXTURES = Path(__file__).parents[1] / "scanners" / "fixtures"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("siem-api")
    built = make_world(str(tmp / "server.db"), tmp / "home")
    yield built
    built.close()


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    return TestClient(create_app(world.server), raise_server_exceptions=True)


@pytest.fixture
def hec() -> Iterator[SplunkHec]:
    server = SplunkHec("api-token")
    server.start()
    yield server
    server.stop()


def test_configure_test_and_remove_a_destination(
    world: World, client: TestClient, hec: SplunkHec
) -> None:
    url = f"/api/v1/projects/{OWN}/siem/soc"
    body = {"kind": "hec", "target": hec.url, "secret": "api-token", "index": "security"}
    put = client.put(url, json=body, headers=world.headers("admin"))
    assert put.status_code == 200, put.text
    assert put.json()["secret"] == "set" and "api-token" not in put.text
    sent = client.post(url + "/test", headers=world.headers("owner"))
    assert sent.status_code == 200, sent.text
    assert [e["event"]["metadata"]["event_code"] for e in hec.events] == ["siem.test"]
    assert hec.events[0]["index"] == "security"
    listed = client.get(f"/api/v1/projects/{OWN}/siem", headers=world.headers("auditor"))
    [row] = listed.json()["destinations"]
    assert row["name"] == "soc" and row["secret"] == "set" and "api-token" not in listed.text
    # the change is in the project's ledger, by the authenticated admin, without the token
    store = world.server.store
    [change] = [
        json.loads(e.envelope)
        for e in store.entries(OWN, kind="config.change")
        if b"siem.destination" in e.envelope
    ]
    assert change["actor"]["id"] == world.user_ids["admin"]
    assert b"api-token" not in json.dumps(change).encode()
    hec.stop()
    down = client.post(url + "/test", headers=world.headers("owner"))
    assert down.status_code == 502 and "cannot reach" in down.json()["error"]["message"]
    hec.start()
    gone = client.delete(url, headers=world.headers("admin"))
    assert gone.status_code == 200
    assert client.get(f"/api/v1/projects/{OWN}/siem", headers=world.headers("admin")).json() == {
        "destinations": []
    }


def test_bad_destination_is_a_clear_400(world: World, client: TestClient) -> None:
    bad = client.put(
        f"/api/v1/projects/{OWN}/siem/x",
        json={"kind": "syslog", "target": "udp://127.0.0.1:514"},
        headers=world.headers("admin"),
    )
    assert bad.status_code == 400 and "not a syslog target" in bad.json()["error"]["message"]


def test_scan_results_over_the_api(world: World, client: TestClient) -> None:
    sarif = json.loads((FIXTURES / "bandit.sarif").read_text())
    body = {"sarif": sarif, "commit": "c" * 40, "tree": "d" * 40, "name": "bandit.sarif"}
    done = client.post(
        f"/api/v1/projects/{OWN}/scans", json=body, headers=world.headers("developer")
    )
    assert done.status_code == 200, done.text
    out = done.json()
    assert out["tree"] == "d" * 40 and out["tree_verified"] is False and out["total"] == 4
    entry = world.server.store.entry(OWN, out["entry"])
    assert entry is not None and entry.kind == "scan.result"
    assert json.loads(entry.envelope)["actor"]["id"] == world.user_ids["developer"]
    sarif["runs"][0]["results"][0]["level"] = "fatal"
    bad = client.post(
        f"/api/v1/projects/{OWN}/scans", json=body, headers=world.headers("developer")
    )
    assert bad.status_code == 400 and "SARIF 2.1.0 schema" in bad.json()["error"]["message"]


def test_the_web_siem_page_configures_and_tests(world: World, hec: SplunkHec) -> None:
    import httpx

    from tests.server.support import live_server
    from tests.web.support import PASSWORD, csrf_of, sign_in

    world.server.directory.set_password(world.user_ids["owner"], PASSWORD)
    world.server.directory.set_password(world.user_ids["auditor"], PASSWORD)
    page = f"/ui/projects/{OWN}/siem"
    with live_server(world.server) as base:
        with httpx.Client(base_url=base, timeout=60) as owner:
            sign_in(owner, "owner@example.org")
            form = owner.get(page)
            assert form.status_code == 200 and "Add or change a destination" in form.text
            saved = owner.post(
                page,
                data={
                    "csrf_token": csrf_of(form.text),
                    "name": "web-soc",
                    "kind": "hec",
                    "target": hec.url,
                    "secret": "api-token",
                },
                follow_redirects=True,
            )
            assert saved.status_code == 200 and "web-soc" in saved.text
            assert "api-token" not in saved.text
            sent = owner.post(
                f"{page}/web-soc/test",
                data={"csrf_token": csrf_of(saved.text)},
                follow_redirects=True,
            )
            assert sent.status_code == 200 and "Sent " in sent.text
            assert hec.events[-1]["event"]["metadata"]["event_code"] == "siem.test"
            bad = owner.post(
                page,
                data={
                    "csrf_token": csrf_of(sent.text),
                    "name": "x",
                    "kind": "syslog",
                    "target": "udp://h:1",
                },
            )
            assert bad.status_code == 400 and "not a syslog target" in bad.text
        with httpx.Client(base_url=base, timeout=60) as auditor:
            sign_in(auditor, "auditor@example.org")
            seen = auditor.get(page)
            assert seen.status_code == 200 and "web-soc" in seen.text
            assert "Add or change a destination" not in seen.text  # reading only
