"""`flowloom mcp` over stdio, as Claude Code launches it, driven by the SDK's own client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from flowloom.mcp.server import TOOL_NAMES
from tests.capture.git_sandbox import Sandbox
from tests.mcp.world import World, data, error_text, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("mcp-stdio"))


def session(world: World, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(world.stdio(), read_timeout_seconds=60) as client:
            await body(client)

    asyncio.run(main())


def test_exactly_the_fourteen_tools_with_input_schemas(world: World) -> None:
    async def body(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == set(TOOL_NAMES) and len(TOOL_NAMES) == 14
        for tool in tools.values():
            assert tool.description, tool.name
            assert tool.input_schema["type"] == "object"
        why = tools["why"].input_schema
        assert set(why["required"]) == {"file", "line"}
        assert why["properties"]["line"]["minimum"] == 1
        assert tools["get_decision"].input_schema["required"] == ["id"]
        assert tools["record_decision"].input_schema["required"] == ["title"]
        assert "ctx" not in tools["record_decision"].input_schema["properties"]
        assert tools["search_memory"].input_schema["required"] == ["query"]
        # The reference memory server's argument shapes, so assistants' habits carry over.
        entities = json.dumps(tools["create_entities"].input_schema)
        assert '"entityType"' in entities and '"observations"' in entities
        relations = json.dumps(tools["create_relations"].input_schema)
        assert '"from"' in relations and '"relationType"' in relations
        assert '"entityName"' in json.dumps(tools["add_observations"].input_schema)
        assert tools["why"].annotations is not None and tools["why"].annotations.read_only_hint
        record = tools["record_decision"].annotations
        assert record is not None and record.read_only_hint is False

    session(world, body)


def test_why_gives_the_decision_behind_a_committed_line(world: World) -> None:
    async def body(client: Client) -> None:
        answer = data(await client.call_tool("why", {"file": "prices.py", "line": 1}))
        assert answer["decision"]["id"] == world.decision.id
        assert answer["decision"]["title"] == "Cache price lookups"
        assert answer["blame"]["commit"] == world.commit
        assert answer["linked_by"] == "trailer"
        assert answer["verified"] is True
        prompt = next(e for e in answer["entries"] if e["role"] == "prompt")
        assert prompt["excerpt"].startswith("Add a cache to the price lookup")
        # An absolute path inside the repository is the same file.
        again = data(
            await client.call_tool("why", {"file": str(world.repo / "prices.py"), "line": 1})
        )
        assert again["decision"]["id"] == world.decision.id

    session(world, body)


def test_why_refuses_bad_paths_and_lines_with_tool_errors(world: World) -> None:
    outside = world.repo.parent / "secret.txt"
    outside.write_text("not yours\n")

    async def body(client: Client) -> None:
        async def refused(arguments: dict[str, Any]) -> str:
            return error_text(await client.call_tool("why", arguments))

        assert "past the end of prices.py (3 lines)" in await refused(
            {"file": "prices.py", "line": 4}
        )
        assert "outside the repository" in await refused({"file": "../secret.txt", "line": 1})
        assert "outside the repository" in await refused({"file": str(outside), "line": 1})
        assert "no file missing.py" in await refused({"file": "missing.py", "line": 1})
        assert "inside .git" in await refused({"file": ".git/config", "line": 1})
        assert "line" in await refused({"file": "prices.py", "line": 0})
        assert "file" in await refused({"file": "x" * 5000, "line": 1})
        assert "line" in await refused({"file": "prices.py"})
        # A line committed before any decision: not found, said plainly.
        world.box.write("plain.txt", "no decision here\n")
        world.box.git("add", "plain.txt")
        world.box.git("commit", "-q", "-m", "plain")
        assert "no decision is linked" in await refused({"file": "plain.txt", "line": 1})
        # Still serving after all of that.
        assert data(await client.call_tool("why", {"file": "prices.py", "line": 1}))

    session(world, body)


def test_get_decision_and_unknown_or_malformed_ids(world: World) -> None:
    async def body(client: Client) -> None:
        found = data(await client.call_tool("get_decision", {"id": world.decision.id}))
        assert found["id"] == world.decision.id
        assert found["choice"] == "functools.lru_cache"
        assert found["requested_by"] == "bob"
        assert found["uri"] == f"flowloom://decisions/{world.decision.id}"
        assert "no decision D-0000000000" in error_text(
            await client.call_tool("get_decision", {"id": "D-0000000000"})
        )
        assert "pattern" in error_text(await client.call_tool("get_decision", {"id": "nope"}))
        assert "id" in error_text(await client.call_tool("get_decision", {}))

    session(world, body)


def test_record_decision_is_a_ledger_event_then_readable_and_searchable(world: World) -> None:
    before = len(world.box.events("decision.record"))

    async def body(client: Client) -> None:
        recorded = data(
            await client.call_tool(
                "record_decision",
                {
                    "title": "Use SQLite FTS5 for memory search",
                    "context": "Search must stay under 20 ms at a million observations",
                    "options": ["FTS5", "a vector index"],
                    "choice": "FTS5",
                    "rationale": "It ships with Python and ranks with bm25",
                    "risk": "medium",
                    "tickets": ["MEM-7"],
                },
            )
        )
        decision_id = recorded["id"]
        assert recorded["links_next_commit"] is True
        got = data(await client.call_tool("get_decision", {"id": decision_id}))
        assert got["title"] == "Use SQLite FTS5 for memory search"
        assert got["options"] == ["FTS5", "a vector index"]
        assert got["risk"] == "medium" and got["tickets"] == ["MEM-7"]
        assert got["recorded_by"]["type"] == "agent"
        hits = data(await client.call_tool("search_memory", {"query": "bm25"}))["hits"]
        assert any(h["kind"] == "decision" and h["id"] == decision_id for h in hits)
        # Oversize and malformed inputs are refused before anything is recorded.
        assert "title" in error_text(
            await client.call_tool("record_decision", {"title": "x" * 201})
        )
        assert "risk" in error_text(
            await client.call_tool("record_decision", {"title": "ok", "risk": "extreme"})
        )
        assert "options" in error_text(
            await client.call_tool("record_decision", {"title": "ok", "options": ["o"] * 21})
        )
        assert "prompt_entry 9999 does not exist" in error_text(
            await client.call_tool("record_decision", {"title": "ok", "prompt_entry": 9999})
        )

    session(world, body)
    records = world.box.events("decision.record")
    assert len(records) == before + 1
    assert records[-1]["actor"]["type"] == "agent"
    state = json.loads((world.repo / ".git" / "flowloom" / "state.json").read_text())
    assert state["decision"] == records[-1]["subject"]  # the next commit links to it


def test_record_decision_redacts_secrets(world: World) -> None:
    secret = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8" * 5

    async def body(client: Client) -> None:
        recorded = data(
            await client.call_tool(
                "record_decision",
                {"title": "Rotate the provider key", "context": f"the old key was {secret}"},
            )
        )
        assert secret not in json.dumps(recorded)
        # memory writes are redacted by the memory service, as from the CLI and imports
        await client.call_tool(
            "create_entities",
            {
                "entities": [
                    {
                        "name": "provider-key",
                        "entityType": "component",
                        "observations": [f"was {secret}", f"commit {'ab12' * 10} rotated it"],
                    }
                ]
            },
        )
        await client.call_tool(
            "add_observations",
            {"observations": [{"entityName": "provider-key", "contents": [f"also {secret}"]}]},
        )

    session(world, body)
    assert secret not in json.dumps(world.box.events("decision.record"))
    with world.box.services() as services:
        bodies = [services.ledger.read_body(e["body"]) for e in world.box.events() if e.get("body")]
    stored = b"".join(b for b in bodies if b is not None).decode("utf-8", "replace")
    assert "provider-key" in stored and secret not in stored
    assert "ab12" * 10 in stored  # a commit id is not a secret (no entropy rule here)


def test_memory_graph_tools_then_search(world: World) -> None:
    async def body(client: Client) -> None:
        created = data(
            await client.call_tool(
                "create_entities",
                {
                    "entities": [
                        {
                            "name": "pricing-service",
                            "entityType": "component",
                            "observations": ["owns the price lookup"],
                        },
                        {"name": "redis", "entityType": "component", "observations": []},
                    ]
                },
            )
        )
        assert [e["name"] for e in created["entities"]] == ["pricing-service", "redis"]
        again = data(
            await client.call_tool(
                "create_entities",
                {"entities": [{"name": "redis", "entityType": "component", "observations": []}]},
            )
        )
        assert again["entities"] == []  # existing names are skipped
        relations = data(
            await client.call_tool(
                "create_relations",
                {"relations": [{"from": "pricing-service", "to": "redis", "relationType": "uses"}]},
            )
        )
        assert relations["relations"] == [
            {"from": "pricing-service", "to": "redis", "relationType": "uses"}
        ]
        added = data(
            await client.call_tool(
                "add_observations",
                {
                    "observations": [
                        {"entityName": "redis", "contents": ["evicts with allkeys-lfu"]}
                    ]
                },
            )
        )
        assert added["results"] == [
            {"entityName": "redis", "addedObservations": ["evicts with allkeys-lfu"]}
        ]
        hits = data(await client.call_tool("search_memory", {"query": "allkeys"}))["hits"]
        assert any(h["kind"] == "observation" and h["id"] == "redis" for h in hits)
        only = data(
            await client.call_tool("search_memory", {"query": "price", "kinds": ["decision"]})
        )
        assert only["hits"] and {h["kind"] for h in only["hits"]} == {"decision"}
        # Refusals: an unknown entity, an unknown kind, a malformed entity, an empty list.
        assert error_text(
            await client.call_tool(
                "add_observations",
                {"observations": [{"entityName": "nobody", "contents": ["x"]}]},
            )
        )
        assert "kinds" in error_text(
            await client.call_tool("search_memory", {"query": "x", "kinds": ["tweets"]})
        )
        # Schema errors are one readable line per field, not the validator's dump.
        missing = error_text(
            await client.call_tool("create_entities", {"entities": [{"name": "x"}]})
        )
        assert "invalid arguments for create_entities" in missing
        assert "entities.0.entityType: Field required" in missing
        assert "pydantic" not in missing and "input_value" not in missing
        # An argument the tool does not take is refused by name, not ignored.
        unknown = error_text(await client.call_tool("search_nodes", {"query": "x", "limit": 5}))
        assert "search_nodes takes no argument 'limit'; it takes query" in unknown
        extra = error_text(
            await client.call_tool(
                "create_relations",
                {"relations": [{"from": "a", "to": "b", "relationType": "r", "weight": 2}]},
            )
        )
        assert "relations.0.weight: Extra inputs are not permitted" in extra
        assert data(await client.call_tool("create_entities", {"entities": []})) == {"entities": []}
        assert "query" in error_text(await client.call_tool("search_memory", {"query": ""}))

    session(world, body)
    kinds = {e["kind"] for e in world.box.events() if e["kind"].startswith("memory.")}
    assert kinds, "memory changes are ledger events"


def test_recent_activity_lists_the_latest_events(world: World) -> None:
    listed: list[dict[str, Any]] = []

    async def body(client: Client) -> None:
        recent = data(await client.call_tool("recent_activity", {"limit": 3}))["events"]
        listed.extend(recent)
        assert "limit" in error_text(await client.call_tool("recent_activity", {"limit": 0}))

    session(world, body)
    newest = [e["index"] for e in world.box.events()][-3:][::-1]
    assert [e["entry"] for e in listed] == newest  # newest first
    assert all(e["kind"] and e["ts"] for e in listed)


def test_decisions_are_resources(world: World) -> None:
    async def body(client: Client) -> None:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        uri = f"flowloom://decisions/{world.decision.id}"
        assert "flowloom://decisions" in listed and uri in listed
        assert listed[uri].title == "Cache price lookups"
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["flowloom://decisions/{decision_id}"]
        one = (await client.read_resource(uri)).contents[0]
        assert one.mime_type == "application/json"
        assert json.loads(getattr(one, "text", ""))["id"] == world.decision.id
        every = (await client.read_resource("flowloom://decisions")).contents[0]
        ids = [d["id"] for d in json.loads(getattr(every, "text", ""))["decisions"]]
        assert world.decision.id in ids
        with pytest.raises(MCPError, match="no decision D-0000000000"):
            await client.read_resource("flowloom://decisions/D-0000000000")

    session(world, body)


def test_stdout_carries_only_the_protocol(world: World) -> None:
    """Raw JSON-RPC on stdin: every stdout line is a JSON-RPC message; logs go to stderr."""
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "why", "arguments": {"file": "../../etc/passwd", "line": 1}},
        },
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "flowloom", "mcp"],
        cwd=world.repo,
        env={**world.box.env, "FLOWLOOM_DEBUG": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        process.stdin.flush()
        replies = [json.loads(process.stdout.readline()) for _ in range(2)]

        rest, stderr = process.communicate(timeout=60)  # closes stdin: the server stops
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, stderr
    assert rest == ""
    assert [r.get("id") for r in replies] == [1, 2]
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    assert replies[1]["result"]["isError"] is True
    assert "outside the repository" in replies[1]["result"]["content"][0]["text"]
    assert "flowloom mcp:" in stderr  # the debug log went to stderr


def test_a_server_outside_a_repository_still_answers(tmp_path: Path, world: World) -> None:
    """No repository: why says what to do; the decision tools keep working."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = world.stdio()
    params.cwd = str(elsewhere)
    params.env = {**world.box.env, "FLOWLOOM_DATABASE": str(tmp_path / "ledger.db")}

    async def main() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            assert "needs a git repository" in error_text(
                await client.call_tool("why", {"file": "a.py", "line": 1})
            )
            recorded = data(await client.call_tool("record_decision", {"title": "Outside"}))
            assert recorded["links_next_commit"] is False

    asyncio.run(main())


def test_outside_a_repository_without_a_ledger_named_it_refuses_to_serve(
    tmp_path: Path, world: World
) -> None:
    """Not an empty per-user ledger answering "nothing found": a clear error, exit 3."""
    elsewhere = tmp_path / "nowhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "flowloom", "mcp"],
        cwd=elsewhere,
        env=world.box.env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "outside a git repository" in result.stderr
    assert "--database" in result.stderr and "Traceback" not in result.stderr


def test_a_decision_recorded_over_mcp_links_the_next_commit(tmp_path: Path) -> None:
    """init → record_decision (MCP) → git commit through FlowLoom's hooks → why (MCP)."""
    box = Sandbox(tmp_path)
    box.init("--agent", "claude-code")
    assert json.loads((box.repo / ".mcp.json").read_text())["mcpServers"]["flowloom"] == {
        "command": "flowloom",
        "args": ["mcp"],
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "flowloom", "mcp"], env=box.env, cwd=str(box.repo)
    )

    async def record() -> str:
        async with Client(params, read_timeout_seconds=60) as client:
            recorded = data(
                await client.call_tool(
                    "record_decision",
                    {"title": "Retry payments twice", "files": ["retry.py"], "risk": "high"},
                )
            )
            return str(recorded["id"])

    decision_id = asyncio.run(record())
    sha = box.commit_ok("Add the retry helper", file="retry.py", line="def retry(): ...")
    assert ("FlowLoom-Decision", decision_id) in box.trailers(sha)

    async def ask() -> dict[str, Any]:
        async with Client(params, read_timeout_seconds=60) as client:
            return data(await client.call_tool("why", {"file": "retry.py", "line": 1}))

    answer = asyncio.run(ask())
    assert answer["decision"]["id"] == decision_id
    assert answer["blame"]["commit"] == sha
    assert answer["verified"] is True
