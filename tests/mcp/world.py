"""A real repository with a ledger, a decision and a commit linked to it, for MCP tests.

The repository is a `Sandbox` (isolated HOME, git config and FLOWLOOM_HOME); the
decision is recorded through `DecisionBook` with a prompt and a reply, and the commit
that changes `prices.py` names it in its FlowLoom-Decision trailer. The MCP server runs
in a subprocess (`python -m flowloom mcp`) started in the repository, and is talked to
with the SDK's own client.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from flowloom.decisions.records import Decision, DecisionBook
from tests.capture.git_sandbox import Sandbox

PROMPT = "Add a cache to the price lookup. It takes 300 ms on every request."
REPLY = "I'll wrap the lookup in functools.lru_cache. It is bounded and needs no server."


@dataclass
class World:
    box: Sandbox
    decision: Decision
    commit: str

    @property
    def repo(self) -> Path:
        return self.box.repo

    def stdio(self) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "flowloom", "mcp"],
            env=self.box.env,
            cwd=str(self.repo),
        )


def make_world(root: Path, *, database: str | None = None) -> World:
    """The repository; `database` puts its ledger elsewhere (a PostgreSQL URL)."""
    box = Sandbox(root)
    if database is not None:
        box.env["FLOWLOOM_DATABASE"] = database
    box.write("prices.py", "def price(sku):\n    return db(sku)\n")
    box.git("add", "prices.py")
    box.git("commit", "-q", "-m", "initial")
    with box.services() as services:
        ledger = services.ledger
        prompt = ledger.record("agent.prompt", body=PROMPT.encode(), meta={"session": "s-1"})
        reply = ledger.record("agent.response", body=REPLY.encode(), meta={"session": "s-1"})
        decision = DecisionBook(ledger).record(
            title="Cache price lookups",
            requested_by="bob",
            session="s-1",
            choice="functools.lru_cache",
            rationale="bounded and needs no server",
            files=["prices.py"],
            prompt_entry=prompt.index,
            response_entry=reply.index,
        )
    box.write("prices.py", "@lru_cache\ndef price(sku):\n    return db(sku)\n")
    box.git("add", "prices.py")
    box.git("commit", "-q", "-m", f"Cache prices\n\nFlowLoom-Decision: {decision.id}\n")
    return World(box=box, decision=decision, commit=box.head())


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful tool call."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The message of a tool error result (isError), which must be one."""
    assert result.is_error, result.structured_content
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert "Traceback" not in text
    return text


# -- HTTP ---------------------------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    process: subprocess.Popen[str]
    stderr: list[str]


@contextmanager
def http_server(
    world: World, *extra: str, env: dict[str, str] | None = None
) -> Iterator[HttpServer]:
    """`flowloom mcp --transport http --port 0` in the repository, until the block ends.

    Fails if the server wrote anything to stdout (logs belong on stderr).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "flowloom", "mcp", "--transport", "http", "--port", "0", *extra],
        cwd=world.repo,
        env={**world.box.env, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and not url:
                url.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found.wait(60)
        assert url, f"the server did not start: {''.join(lines)}"
        yield HttpServer(url=url[0], process=process, stderr=lines)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(10)
        # SIGTERM is a clean stop: exit status 0, after the server's own cleanup
        assert process.returncode == 0, f"exit {process.returncode}: {''.join(lines)[-2000:]}"
        assert process.stdout is not None
        stdout = process.stdout.read()
        process.stdout.close()
        assert stdout == "", f"the HTTP server wrote to stdout: {stdout!r}"


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
