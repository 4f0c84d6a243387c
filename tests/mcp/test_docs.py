"""Every command docs/mcp.md shows, run as written, against a real repository.

The shell blocks are read from the document itself, so a command edited there is the
command tested here. The HTTP server's documented port is swapped for `--port 0` (the
document says it picks a free one); the project is the document's (`myproject`).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from tests.capture.git_sandbox import Sandbox
from tests.mcp.world import World, data, http_client, http_server
from tests.support.clis import offline_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


def doc_commands() -> list[list[str]]:
    """The `flowloom …` lines of the document's plain code blocks, in order."""
    commands: list[list[str]] = []
    fence: str | None = None
    for line in DOC.read_text("utf-8").splitlines():
        if line.startswith("```"):
            fence = line[3:] if fence is None else None
        elif fence == "" and line.startswith("flowloom "):
            commands.append(shlex.split(line))
    return commands


def test_the_documented_commands_work_as_written(tmp_path: Path) -> None:
    commands = doc_commands()
    assert [c[:3] for c in commands] == [
        ["flowloom", "mcp", "--transport"],
        ["flowloom", "admin", "create-project"],
        ["flowloom", "admin", "create-user"],
        ["flowloom", "admin", "grant"],
        ["flowloom", "admin", "create-key"],
    ]
    box = Sandbox(tmp_path)
    box.write("README", "hello\n")
    box.git("add", "README")
    box.git("commit", "-q", "-m", "initial")
    box.env["FLOWLOOM_PROJECT"] = "myproject"
    key = ""
    for command in commands[1:]:
        out = box.ok(*command[1:])
        key = out.strip() if command[2] == "create-key" else key
    assert key.startswith("flk_")

    serve = commands[0][1:]
    assert serve[serve.index("--host") + 1] == "127.0.0.1"
    port = serve.index("--port") + 1
    serve[port] = "0"
    world = World(box=box, decision=None, commit=box.head())  # type: ignore[arg-type]
    assert serve[:3] == ["mcp", "--transport", "http"]
    with http_server(world, *serve[3:]) as server:

        async def main() -> dict[str, Any]:
            async with http_client(server.url, key) as client:
                await client.call_tool(
                    "create_entities",
                    {"entities": [{"name": "docs", "entityType": "t", "observations": ["ok"]}]},
                )
                return data(await client.call_tool("read_graph", {}))

        graph = asyncio.run(main())
    assert graph["entities"] == [{"name": "docs", "entityType": "t", "observations": ["ok"]}]
    # The memory change is attributed to the key's user.
    (event,) = [e for e in box.events() if e["kind"] == "memory.add"]
    assert event["actor"]["name"] == "Dana Developer"


def test_the_documented_stdio_entry_starts_the_server(tmp_path: Path) -> None:
    """`{"command": "flowloom", "args": ["mcp"], "cwd": <repository>}`, as the doc shows."""
    text = DOC.read_text("utf-8")
    entry = json.loads(re.search(r'```json\n(\{\n  "command".*?)```', text, flags=re.S)[1])  # type: ignore[index]
    assert entry["command"] == "flowloom" and entry["args"] == ["mcp"]
    box = Sandbox(tmp_path)
    params = StdioServerParameters(
        command=str(box.bin_dir / entry["command"]),
        args=entry["args"],
        env=box.env,
        cwd=str(box.repo),
    )

    async def main() -> list[str]:
        async with Client(params, read_timeout_seconds=60) as client:
            return [t.name for t in (await client.list_tools()).tools]

    assert "read_graph" in asyncio.run(main())


def test_the_documented_claude_mcp_add_makes_the_entry_flowloom_init_writes(
    claude_code: Path, tmp_path: Path
) -> None:
    """`claude mcp add --scope project flowloom -- flowloom mcp`, by the pinned Claude Code."""
    found = re.search(r"`(claude mcp add [^`]+)`", DOC.read_text("utf-8"))
    assert found is not None
    command = shlex.split(found[1])
    box = Sandbox(tmp_path)
    home = tmp_path / "claude-home"
    home.mkdir()
    result = subprocess.run(
        [str(claude_code), *command[1:]],
        cwd=box.repo,
        env=offline_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads((box.repo / ".mcp.json").read_text("utf-8"))["mcpServers"]["flowloom"]
    assert entry["command"] == "flowloom" and entry["args"] == ["mcp"]
    # `flowloom init` keeps an entry that still runs `flowloom … mcp` as the user wrote it.
    box.init("--agent", "claude-code")
    kept = json.loads((box.repo / ".mcp.json").read_text("utf-8"))["mcpServers"]["flowloom"]
    assert kept == entry
