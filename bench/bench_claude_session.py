"""Whole-session overhead of FlowLoom under the real Claude Code CLI (issue 14, item 7).

The same scripted session runs in a plain repository and in a governed one (`flowloom
init --agent claude-code`: hooks, MCP server entry, git hooks): `claude -p PROMPT`
against the scripted Messages API stand-in (`tests/support/scripted_models.py`), the
model asking for one Write and then replying. What the user waits for is the `claude`
process, start to exit; that is the figure, plain vs governed, alternated run by run.
`settled_ms` adds, for the governed runs, the time until the detached drainer has
recorded everything and made the commit (off the agent's path, so not in the figure).

    .venv/bin/python bench/bench_claude_session.py            # 5 runs per mode
    .venv/bin/python bench/bench_claude_session.py --runs 10

Prints `claude_session_overhead` (`ratio` = governed p50 / plain p50; goal ≤ 1.3) and
`mcp_initialize_ms` (how long `flowloom mcp` takes to answer `initialize` to the SDK's
client, p50; goal ≤ 300 ms; peer: the same server without its early answer).
Needs node and npm (`make node`; the pinned Claude Code is installed into the test cache
on first use): without them, or when npm cannot install it, it stops with exit 1 and
says why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import emit, machine, note, ratio  # noqa: E402
from tests.capture.agent_sandbox import AgentSandbox  # noqa: E402
from tests.support.clis import CLAUDE_CODE_VERSION, npm_cli, offline_env  # noqa: E402
from tests.support.scripted_models import Script, ScriptedModels, ToolUse, serve  # noqa: E402

PROMPT = "Add a greeting module for PAY-7"
REPLY = "I added hello.py, which prints a greeting."


def _repository(root: Path, governed: bool, mcp: bool = True) -> AgentSandbox:
    box = AgentSandbox(root)
    box.write("README.md", "# demo\n")
    box.git("add", ".")
    box.git("commit", "-q", "-m", "initial")
    if governed:
        box.init("--agent", "claude-code")
        box.settled()
        if not mcp:  # hooks and git hooks only: Claude Code starts no MCP server
            (box.repo / ".mcp.json").unlink()
    return box


def _session(claude: Path, box: AgentSandbox) -> float:
    """Seconds `claude -p` takes for the scripted session in `box`."""
    write = ToolUse("Write", {"file_path": str(box.repo / "hello.py"), "content": "print(1)\n"})
    models = ScriptedModels(anthropic=Script([write], reply=REPLY))
    with serve(models):
        env = {
            **box.env,
            **offline_env(
                Path(box.env["HOME"]),
                ANTHROPIC_BASE_URL=models.url,
                ANTHROPIC_API_KEY="local",
                CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                DISABLE_AUTOUPDATER="1",
            ),
        }
        env["PATH"] = box.env["PATH"]
        started = time.perf_counter()
        done = subprocess.run(
            [str(claude), "-p", PROMPT, "--permission-mode", "acceptEdits"],
            cwd=box.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        elapsed = time.perf_counter() - started
    if done.returncode != 0 or not (box.repo / "hello.py").exists():
        raise SystemExit(f"the session failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return elapsed


async def _initialize_once(box: AgentSandbox, command: list[str]) -> float:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=command[0], args=command[1:], env=box.env, cwd=str(box.repo)
    )
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=60, mode="legacy"):
        return time.perf_counter() - started


def _mcp_start(box: AgentSandbox, runs: int) -> None:
    front = [sys.executable, "-m", "flowloom", "mcp"]
    sdk_only = [sys.executable, "-c", "from flowloom.cli.main import main; main(['mcp'])"]
    early, late = [], []
    for _ in range(runs):
        early.append(asyncio.run(_initialize_once(box, front)))
        late.append(asyncio.run(_initialize_once(box, sdk_only)))
    p50, peer = statistics.median(early) * 1000, statistics.median(late) * 1000
    emit(
        "mcp_initialize_ms",
        p50,
        "ms",
        max_ms=max(early) * 1000,
        peer="the same server answering initialize through the SDK (no early answer)",
        peer_value=peer,
        ratio=ratio(p50, peer),
        ratio_def="flowloom mcp / SDK-only, p50 time to the initialize answer",
        goal="<= 300 ms",
        goal_met=p50 <= 300,
        n=runs,
        **machine(),
    )


def _claude() -> Path:
    """The pinned `claude`, installed on first use; exit 1 with the reason when it cannot be."""
    import pytest

    try:
        return npm_cli("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION, "claude")
    except (pytest.skip.Exception, pytest.fail.Exception, OSError) as exc:
        raise SystemExit(
            f"bench_claude_session: cannot install Claude Code {CLAUDE_CODE_VERSION}, which "
            f"this bench drives: {str(exc).strip() or type(exc).__name__} "
            "(install node and npm: make node)"
        ) from None


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    claude = _claude()
    times: dict[str, list[float]] = {"plain": [], "governed": [], "hooks_only": []}
    settled: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flowloom-bench-claude-") as scratch:
        base = Path(scratch)
        for i in range(args.runs + 1):  # the first round warms caches and is not counted
            for mode in times:
                box = _repository(base / f"{mode}-{i}", mode != "plain", mode == "governed")
                started = time.perf_counter()
                elapsed = _session(claude, box)
                if mode != "plain":
                    box.settled()
                    if len(box.commits()) != 3:
                        raise SystemExit("the governed session's write was not committed")
                    if i and mode == "governed":
                        settled.append(time.perf_counter() - started)
                if i:
                    times[mode].append(elapsed)
                note(f"run {i} {mode}: {elapsed * 1000:.0f} ms")
        plain, governed = times["plain"], times["governed"]
        plain_p50, governed_p50 = statistics.median(plain), statistics.median(governed)
        hooks_p50 = statistics.median(times["hooks_only"])
        emit(
            "claude_session_overhead",
            governed_p50 * 1000,
            "ms",
            peer="the same scripted Claude Code session in a plain repository",
            peer_value=plain_p50 * 1000,
            ratio=ratio(governed_p50, plain_p50),
            ratio_def="governed / plain, p50 wall time of `claude -p` (one Write, one reply)",
            goal="<= 1.3",
            goal_met=governed_p50 / plain_p50 <= 1.3,
            governed_ms=[round(s * 1000) for s in governed],
            plain_ms=[round(s * 1000) for s in plain],
            settled_ms=round(statistics.median(settled) * 1000),
            hooks_only_ms=round(hooks_p50 * 1000),
            hooks_only_ratio=ratio(hooks_p50, plain_p50),
            hooks_only_def="the same, governed but without the MCP server entry (.mcp.json)",
            n=args.runs,
            claude_code=CLAUDE_CODE_VERSION,
            **machine(),
        )
        _mcp_start(_repository(base / "mcp", True), args.mcp_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="sessions per mode (default 5)")
    parser.add_argument("--mcp-runs", type=int, default=5, help="initialize handshakes")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
