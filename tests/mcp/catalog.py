"""The SDK server's opening answers, as `flowloom.mcp.handshake` keeps them (catalog.json).

`python -m tests.mcp.catalog` asks the SDK server (the command line without the fast
front) in a scratch repository and writes `src/flowloom/mcp/catalog.json`; run it when
a tool, a resource or the instructions change (`tests/mcp/test_fast_start.py` fails
until then). The messages are what Claude Code 2.1.337 sends (recorded from its stdio),
and the same lists asked after an `initialize`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from flowloom.mcp import handshake
from tests.capture.git_sandbox import Sandbox

SDK_ONLY = [sys.executable, "-c", "from flowloom.cli.main import main; main(['mcp'])"]
"""The server without the front: the command line called directly."""

CATALOG = Path(handshake.__file__).with_name("catalog.json")

CLIENT_INFO = {
    "name": "claude-code",
    "title": "Claude Code",
    "version": "2.1.337",
    "description": "Anthropic's agentic coding tool",
    "websiteUrl": "https://claude.com/claude-code",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {
        "roots": {"listChanged": True},
        "elicitation": {"form": {}, "url": {}},
    },
}
LISTEN_FILTER = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}


def request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def claude_code_opening() -> list[dict[str, Any]]:
    """Claude Code 2.1.337's first messages to a stdio server, in order."""
    meta = {"_meta": ENVELOPE}
    return [
        request("server-discover-probe-1", "server/discover", meta),
        request("listen:0", "subscriptions/listen", {**meta, "notifications": LISTEN_FILTER}),
        request(0, "server/discover", meta),
        request(1, "prompts/list", meta),
        request(2, "resources/list", meta),
        request(3, "tools/list", meta),
    ]


def legacy_opening(version: str = handshake.HANDSHAKE_VERSIONS[-1]) -> list[dict[str, Any]]:
    """An `initialize` client's first messages."""
    return [
        request(
            0,
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "catalog", "version": "0"},
            },
        ),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        request(1, "prompts/list"),
        request(2, "resources/list"),
        request(3, "tools/list"),
    ]


def exchange(
    command: list[str], messages: list[dict[str, Any]], answers: int, cwd: Path, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Send `messages` (one line each), read until `answers` of them are answered (the
    notifications in between are kept too), then close stdin."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        process.stdin.flush()
        replies: list[dict[str, Any]] = []
        while sum("id" in r for r in replies) < answers:
            line = process.stdout.readline()
            assert line, f"the server stopped after {replies}"
            replies.append(json.loads(line))
        process.stdin.close()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return replies


def by_id(replies: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {r["id"]: r for r in replies if "id" in r}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flowloom-catalog-") as scratch:
        box = Sandbox(Path(scratch))
        box.write("README.md", "catalog\n")
        box.git("add", ".")
        box.git("commit", "-q", "-m", "initial")
        env = {**box.env, "PYTHONPATH": str(Path(handshake.__file__).parents[2])}
        modern = by_id(exchange(SDK_ONLY, claude_code_opening(), 5, box.repo, env))
        legacy = by_id(exchange(SDK_ONLY, legacy_opening(), 4, box.repo, env))
    catalog = {
        handshake.LEGACY: {m: legacy[i]["result"] for i, m in enumerate(handshake.LIST_METHODS, 1)},
        handshake.MODERN: {
            "server/discover": modern[0]["result"],
            **{m: modern[i]["result"] for i, m in enumerate(handshake.LIST_METHODS, 1)},
        },
    }
    CATALOG.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {CATALOG}")


if __name__ == "__main__":
    main()
