"""`flowloom mcp --transport http`: streamable HTTP on loopback, behind FlowLoom API keys.

Keys are made with the real Directory in the repository's ledger database, the server
runs as a subprocess, and the SDK's own streamable HTTP client talks to it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from flowloom.auth.directory import Directory
from flowloom.config import load_settings
from flowloom.mcp.server import TOOL_NAMES
from tests.mcp.world import (
    HttpServer,
    World,
    data,
    error_text,
    http_client,
    http_server,
    make_world,
)


@dataclass
class Keys:
    developer: str
    auditor: str
    outsider: str
    revoked: str
    developer_id: str
    read_scoped: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("mcp-http"))


@pytest.fixture(scope="module")
def keys(world: World) -> Iterator[Keys]:
    settings = load_settings(world.repo, world.box.env)
    directory = Directory(settings.database)
    try:
        directory.create_project(settings.project)
        dev = directory.create_user("dev@example.com", "Dana Developer")
        directory.grant(dev.id, settings.project, "developer")
        auditor = directory.create_user("audit@example.com", "Avery Auditor")
        directory.grant(auditor.id, settings.project, "auditor")
        outsider = directory.create_user("out@example.com", "Olli Outsider")
        _, developer_key = directory.create_key(dev.id, name="mcp")
        _, auditor_key = directory.create_key(auditor.id, name="mcp")
        _, outsider_key = directory.create_key(outsider.id, name="mcp")
        revoked, revoked_key = directory.create_key(dev.id, name="old")
        directory.revoke_key(revoked.id)
        _, read_scoped = directory.create_key(dev.id, name="read-only", scopes=["ledger.read"])
        yield Keys(developer_key, auditor_key, outsider_key, revoked_key, dev.id, read_scoped)
    finally:
        directory.close()


@pytest.fixture(scope="module")
def server(world: World, keys: Keys) -> Iterator[HttpServer]:
    with http_server(world) as running:
        yield running


def test_a_valid_key_lists_the_tools_and_answers_why(server: HttpServer, keys: Keys) -> None:
    async def main() -> None:
        async with http_client(server.url, keys.developer) as client:
            tools = (await client.list_tools()).tools
            assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)
            answer = data(await client.call_tool("why", {"file": "prices.py", "line": 1}))
            assert answer["decision"]["title"] == "Cache price lookups"
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            assert "flowloom://decisions" in resources

    asyncio.run(main())


def test_record_decision_over_http_is_recorded_as_the_keys_user(
    server: HttpServer, keys: Keys, world: World
) -> None:
    async def main() -> str:
        async with http_client(server.url, keys.developer) as client:
            recorded = data(
                await client.call_tool(
                    "record_decision",
                    {"title": "Serve MCP over HTTP behind API keys", "rationale": "teams"},
                )
            )
            assert recorded["requested_by"] == keys.developer_id
            assert recorded["links_next_commit"] is False  # a remote caller does not commit here
            got = data(await client.call_tool("get_decision", {"id": recorded["id"]}))
            assert got["recorded_by"]["id"] == keys.developer_id
            hits = data(await client.call_tool("search_memory", {"query": "API keys"}))["hits"]
            assert any(h["id"] == recorded["id"] for h in hits)
            created = data(
                await client.call_tool(
                    "create_entities",
                    {
                        "entities": [
                            {"name": "gateway", "entityType": "component", "observations": []}
                        ]
                    },
                )
            )
            assert created["entities"][0]["name"] == "gateway"
            return str(recorded["id"])

    decision_id = asyncio.run(main())
    record = next(e for e in world.box.events("decision.record") if e["subject"] == decision_id)
    assert record["actor"] == {"type": "human", "id": keys.developer_id, "name": "Dana Developer"}
    memory = [e for e in world.box.events() if e["kind"].startswith("memory.")]
    assert memory and memory[-1]["actor"]["id"] == keys.developer_id


def test_a_read_only_role_may_read_but_not_record(server: HttpServer, keys: Keys) -> None:
    async def main() -> None:
        async with http_client(server.url, keys.auditor) as client:
            assert data(await client.call_tool("why", {"file": "prices.py", "line": 1}))
            refused = error_text(await client.call_tool("record_decision", {"title": "Nope"}))
            assert "lacks permission ledger.append" in refused
            refused = error_text(
                await client.call_tool(
                    "create_entities",
                    {"entities": [{"name": "x", "entityType": "y", "observations": []}]},
                )
            )
            assert "ledger.append" in refused

    asyncio.run(main())


def test_a_key_scoped_to_reading_may_not_record(server: HttpServer, keys: Keys) -> None:
    async def main() -> None:
        async with http_client(server.url, keys.read_scoped) as client:
            assert data(await client.call_tool("recent_activity", {"limit": 1}))
            refused = error_text(await client.call_tool("record_decision", {"title": "Nope"}))
            assert "scopes do not include it" in refused

    asyncio.run(main())


@pytest.mark.parametrize("which", ["none", "revoked", "malformed", "wrong"])
def test_without_a_valid_key_the_answer_is_401(server: HttpServer, keys: Keys, which: str) -> None:
    secret = {
        "none": None,
        "revoked": keys.revoked,
        "malformed": "not-a-key",
        "wrong": keys.developer[:-4] + "AAAA",
    }[which]
    headers = {"Accept": "application/json, text/event-stream"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    response = httpx2.post(server.url, json=initialize, headers=headers, timeout=30)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    if secret is not None:
        assert secret not in response.text

    async def main() -> None:
        async with http_client(server.url, secret):
            pass

    # The SDK client gives up at the handshake; its task groups wrap the error.
    with pytest.raises(ExceptionGroup) as raised:
        asyncio.run(main())
    assert raised.group_contains(MCPError)


def test_a_key_without_a_role_on_the_project_gets_403(server: HttpServer, keys: Keys) -> None:
    response = httpx2.post(
        server.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={
            "Authorization": f"Bearer {keys.outsider}",
            "Accept": "application/json, text/event-stream",
        },
        timeout=30,
    )
    assert response.status_code == 403
    assert "lacks permission ledger.read" in response.json()["error"]["message"]


def test_a_key_revoked_while_the_server_runs_stops_working(
    server: HttpServer, world: World, keys: Keys
) -> None:
    settings = load_settings(world.repo, world.box.env)
    directory = Directory(settings.database)
    try:
        key, secret = directory.create_key(keys.developer_id, name="short-lived")

        async def works() -> None:
            async with http_client(server.url, secret) as client:
                assert data(await client.call_tool("get_decision", {"id": world.decision.id}))

        asyncio.run(works())
        directory.revoke_key(key.id)
    finally:
        directory.close()
    response = httpx2.post(
        server.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 401
    assert json.loads(response.text)["error"]["code"] == "unauthorized"


def test_debug_logs_go_to_stderr_and_never_show_the_key(world: World, keys: Keys) -> None:
    with http_server(world, env={"FLOWLOOM_DEBUG": "1"}) as debug:

        async def main() -> None:
            async with http_client(debug.url, keys.developer) as client:
                assert data(await client.call_tool("recent_activity", {"limit": 1}))

        asyncio.run(main())
        httpx2.post(debug.url, json={}, headers={"Authorization": f"Bearer {keys.revoked}"})
    logs = "".join(debug.stderr)
    assert '"POST /mcp HTTP/1.1" 401' in logs  # the access log, on stderr
    assert keys.developer not in logs and keys.revoked not in logs


@pytest.mark.postgres
def test_over_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same server with the ledger, the memory and the directory in PostgreSQL."""
    world = make_world(tmp_path, database=pg_url)
    settings = load_settings(world.repo, world.box.env)
    assert settings.database == pg_url
    directory = Directory(pg_url)
    try:
        directory.create_project(settings.project)
        user = directory.create_user("pg@example.com", "Pat Postgres")
        directory.grant(user.id, settings.project, "developer")
        _, secret = directory.create_key(user.id, name="mcp")
    finally:
        directory.close()

    async def main() -> None:
        async with http_client(server.url, secret) as client:
            answer = data(await client.call_tool("why", {"file": "prices.py", "line": 1}))
            assert answer["decision"]["id"] == world.decision.id
            recorded = data(await client.call_tool("record_decision", {"title": "Shard by tenant"}))
            hits = data(await client.call_tool("search_memory", {"query": "tenant"}))["hits"]
            assert [h["id"] for h in hits if h["kind"] == "decision"] == [recorded["id"]]

    with http_server(world) as server:
        asyncio.run(main())
        response = httpx2.post(server.url, json={}, timeout=30)
        assert response.status_code == 401


def test_a_taken_port_is_a_one_line_error(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = world.box.flowloom("mcp", "--transport", "http", "--port", str(port))
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_session_answers_only_to_the_user_who_opened_it(
    server: HttpServer, keys: Keys, world: World
) -> None:
    """Another user's key naming the session is refused, and writes stay the key's own."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "create_entities",
            "arguments": {
                "entities": [{"name": "hijacked", "entityType": "t", "observations": []}]
            },
        },
    }
    with httpx2.Client(timeout=60) as http:
        opened = http.post(
            server.url,
            json=initialize,
            headers={**headers, "Authorization": f"Bearer {keys.developer}"},
        )
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        stolen = http.post(
            server.url,
            json=call,
            headers={
                **headers,
                "Authorization": f"Bearer {keys.auditor}",
                "Mcp-Session-Id": session,
            },
        )
        assert stolen.status_code == 404, stolen.text
        assert stolen.json()["error"]["message"] == "no such MCP session"
    assert not [
        e
        for e in world.box.events()
        if e["kind"] == "memory.add" and "hijacked" in json.dumps(e.get("refs", {}))
    ]


def test_requested_by_cannot_name_another_user_over_http(server: HttpServer, keys: Keys) -> None:
    async def main() -> str:
        async with http_client(server.url, keys.developer) as client:
            return error_text(
                await client.call_tool(
                    "record_decision", {"title": "Spoofed", "requested_by": "someone-else"}
                )
            )

    assert "is not the API key's user" in asyncio.run(main())
