"""Deprovisioning end to end: an identity provider's SCIM `active: false` (Entra's form,
the string "False") or DELETE, and on the very next request the person's web session,
API key, gateway virtual key and MCP HTTP session are all refused, and the ledger says so.

Everything is real and on loopback: `flowloom serve --gateway` (the team server serving
the gateway's provider routes) and `flowloom mcp --transport http` as processes over one
SQLite database, the provider simulator upstream, the SCIM token made with
`flowloom admin scim-token create`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.directory import INSTANCE_PROJECT, Directory
from flowloom.config import load_settings
from flowloom.gateway.access import Access
from flowloom.gateway.mock import MockConfig, MockServer, start_in_thread
from flowloom.ledger.keys import KeyStore
from flowloom.services import open_store
from tests.mcp.world import World, http_server, make_world
from tests.server.support import ROOT, free_port, stop, wait_ready

PASSWORD = "correct horse battery staple"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
GATEWAY = """
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"

[models.claude]
targets = [{{ provider = "anthropic", model = "claude-upstream" }}]
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    server = start_in_thread(MockConfig())
    try:
        yield server
    finally:
        server.stop()


class Deployment:
    """The repository's database, a team server with the gateway, and a SCIM token."""

    def __init__(self, world: World, base: str, token: str) -> None:
        self.world = world
        self.base = base
        self.settings = load_settings(world.repo, world.box.env)
        self.scim = httpx.Client(
            base_url=base + "/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def directory(self) -> Directory:
        return Directory(self.settings.database)

    def instance_events(self) -> list[dict[str, Any]]:
        store = open_store(self.settings.database)
        try:
            return [json.loads(e.envelope) for e in store.entries(INSTANCE_PROJECT)]
        finally:
            store.close()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, upstream: MockServer
) -> Iterator[Deployment]:
    tmp_path = tmp_path_factory.mktemp("deprovision")
    world = make_world(tmp_path / "w")
    settings = load_settings(world.repo, world.box.env)
    directory = Directory(settings.database)
    try:
        directory.create_project(settings.project)
    finally:
        directory.close()
    env = {**world.box.env, "PYTHONPATH": str(ROOT / "src")}
    created = subprocess.run(
        [sys.executable, "-m", "flowloom", "admin", "scim-token", "create", "--name", "entra"],
        cwd=world.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    config = tmp_path / "gateway.toml"
    config.write_text(GATEWAY.format(url=upstream.url))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowloom",
            "serve",
            "--database",
            settings.database,
            "--port",
            str(port),
            "--public-url",
            "http://flowloom.test",
            "--home",
            env["FLOWLOOM_HOME"],
            "--gateway",
            str(config),
            "--log-level",
            "warning",
        ],
        cwd=world.repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        deployed = Deployment(world, base, token)
        yield deployed
        deployed.scim.close()
    finally:
        stop(process)


class Person:
    """One provisioned person and the four ways they reach FlowLoom."""

    def __init__(self, deployment: Deployment, user_name: str, mcp_url: str) -> None:
        self.deployment = deployment
        self.mcp_url = mcp_url
        created = deployment.scim.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "emails": [{"value": user_name, "type": "work", "primary": True}],
                "displayName": user_name.split("@")[0].title(),
                "active": True,
            },
        )
        assert created.status_code == 201, created.text
        self.id = created.json()["id"]
        directory = deployment.directory()
        try:
            directory.set_password(self.id, PASSWORD)  # so that they have a web session
            directory.grant(self.id, deployment.settings.project, "developer")
            _, self.api_key = directory.create_key(self.id, name="laptop")
        finally:
            directory.close()
        database = deployment.settings.database
        home = KeyStore(Path(deployment.world.box.env["FLOWLOOM_HOME"]))
        with Access(database, master_key_loader=home.master_key) as access:
            _, self.vkey = access.create_key(owner_user=user_name)
        self.browser = httpx.Client(base_url=deployment.base, timeout=30)
        login = self.browser.post(
            "/api/v1/auth/login", json={"email": user_name, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        self.mcp = httpx.Client(timeout=60)
        opened = self.mcp.post(
            mcp_url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {self.api_key}"},
        )
        assert opened.status_code == 200, opened.text
        self.mcp_session = opened.headers["mcp-session-id"]

    def reach(self) -> dict[str, int]:
        """The status of one request through each door."""
        base = self.deployment.base
        return {
            "web session": self.browser.get("/api/v1/me").status_code,
            "api key": httpx.get(
                base + "/api/v1/me", headers={"Authorization": f"Bearer {self.api_key}"}
            ).status_code,
            "gateway key": httpx.post(
                base + "/v1/messages",
                headers={"x-api-key": self.vkey, "anthropic-version": "2023-06-01"},
                json={
                    "model": "claude",
                    "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=30,
            ).status_code,
            "mcp session": self.mcp.post(
                self.mcp_url,
                json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                headers={
                    **MCP_HEADERS,
                    "Authorization": f"Bearer {self.api_key}",
                    "Mcp-Session-Id": self.mcp_session,
                    "Mcp-Protocol-Version": "2025-06-18",
                },
            ).status_code,
        }

    def close(self) -> None:
        self.browser.close()
        self.mcp.close()


ALL_OPEN = {"web session": 200, "api key": 200, "gateway key": 200, "mcp session": 200}
ALL_REFUSED = {"web session": 401, "api key": 401, "gateway key": 401, "mcp session": 401}


@pytest.fixture(scope="module")
def mcp_url(deployment: Deployment) -> Iterator[str]:
    with http_server(deployment.world) as mcp:
        yield mcp.url


@pytest.mark.parametrize("how", ["active-false", "delete"])
def test_deprovisioning_closes_every_door_on_the_next_request(
    deployment: Deployment, mcp_url: str, how: str
) -> None:
    person = Person(deployment, f"leaver-{how}@example.org", mcp_url)
    try:
        assert person.reach() == ALL_OPEN
        if how == "active-false":
            # Entra ID's form: a capitalised op and the boolean as a string.
            body = {
                "schemas": [PATCH],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
            }
            answer = deployment.scim.patch(f"/Users/{person.id}", json=body)
            assert answer.status_code == 200 and answer.json()["active"] is False
        else:
            assert deployment.scim.delete(f"/Users/{person.id}").status_code == 204
        assert person.reach() == ALL_REFUSED
    finally:
        person.close()
    token_events = [e for e in deployment.instance_events() if e.get("subject") == person.id]
    kinds = [e["kind"] for e in token_events]
    ended = "auth.user_disabled" if how == "active-false" else "auth.user_deleted"
    assert ended in kinds
    ending = next(e for e in token_events if e["kind"] == ended)
    assert ending["actor"]["name"] == "SCIM provisioning (entra)"
    assert ending["refs"]["sessions_ended"]  # the web session, ended in the same change
    revoked = [
        e
        for e in deployment.instance_events()
        if e["kind"] == "auth.vkey_revoked" and e["refs"]["user_id"] == person.id
    ]
    assert len(revoked) == 1 and revoked[0]["refs"]["owner"] == f"leaver-{how}@example.org"
    assert revoked[0]["actor"] == ending["actor"]
    assert revoked[0]["refs"]["reason"] == (
        "user disabled" if how == "active-false" else "user deleted"
    )
    key_revoked = [
        e
        for e in deployment.instance_events()
        if e["kind"] == "auth.key_revoked" and e["refs"].get("user_id") == person.id
    ]
    assert len(key_revoked) == 1 and key_revoked[0]["actor"] == ending["actor"]
