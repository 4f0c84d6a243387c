"""`flowloom mcp` launched with a dropped environment (no FLOWLOOM_HOME): the same log,
read without writing, and no second key — it says so when it needs the missing one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.cli.test_log_keys import digest, listing
from tests.mcp.world import World, data, make_world


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    database = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    built = make_world(tmp_path, database=database)
    built.box.ok("log", "checkpoint")  # with the log's key, in FLOWLOOM_HOME
    return built


def test_read_tools_with_a_dropped_environment(world: World) -> None:
    box = world.box
    database = box.env.get("FLOWLOOM_DATABASE") or str(world.repo / ".git/flowloom/ledger.db")
    own_home = Path(box.env["FLOWLOOM_HOME"])
    default_home = Path(box.env["HOME"]) / ".local" / "share" / "flowloom"
    dropped = {k: v for k, v in box.env.items() if k != "FLOWLOOM_HOME"}
    params = StdioServerParameters(
        command=world.stdio().command, args=["-m", "flowloom", "mcp"], env=dropped,
        cwd=str(world.repo),
    )  # fmt: skip

    def state() -> tuple[str, list[str], list[str]]:
        return digest(database), listing(own_home), listing(default_home)

    before = state()
    assert before[1] and not before[2]

    async def main() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            why = data(await client.call_tool("why", {"file": "prices.py", "line": 1}))
            assert why["decision"]["id"] == world.decision.id and why["verified"] is True
            assert state() == before
            found = data(await client.call_tool("get_decision", {"id": world.decision.id}))
            assert found["title"] == "Cache price lookups"
            resources = await client.list_resources()
            assert any(world.decision.id in str(r.uri) for r in resources.resources)
            hits = data(await client.call_tool("search_memory", {"query": "cache"}))
            assert hits["hits"]
            data(await client.call_tool("recent_activity", {}))
            assert state() == before
            # A plain record needs no key: it goes to the same log and adds none.
            recorded = await client.call_tool("record_decision", {"title": "Keep it"})
            assert not recorded.is_error, recorded.content

    asyncio.run(main())
    after = state()
    assert after[0] != before[0] and after[1:] == before[1:]
    shown = box.ok("log", "show", "--kind", "key.generated")
    assert len(shown.splitlines()) == 1
    assert "Keep it" in box.ok("decision", "list")
