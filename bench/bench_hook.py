#!/usr/bin/env python3
"""Hook wall time: what one `flowloom hook claude-code` costs the agent, per event.

What it measures: the wall time of the whole process an agent starts for a hook
(`python -m flowloom hook claude-code`, payload on stdin, exit), for UserPromptSubmit
(a prompt) and PostToolUse (a Bash tool use), median and p95 over `--n` runs each.
The floor, measured in the same run and interleaved with the hooks: `python -c "import
sqlite3, json, hashlib"`, the least a Python hook that records anything can cost.
Goal: median <= 1.3x the floor's median, p95 <= 2x the floor's p95.

How: a fresh git repository in a temporary directory, an isolated FLOWLOOM_HOME and git
config. Every process gets the same private bytecode cache (PYTHONPYCACHEPREFIX, warmed
before timing): an installed FlowLoom, like the standard library, has compiled
bytecode, so no run pays for compiling sources. After each hook run the benchmark waits,
untimed, until the detached drainer has recorded the spool and exited, so no
measurement shares the CPU with the previous event's drain; the events are then checked
to be in the ledger (`hook_events_recorded`).

Also printed, without a goal: PostToolUse for a Write with auto-commit on, which
spools its events and a commit request and leaves the commit to the detached drainer
(`hook_wall_post_tool_use_write_autocommit`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import emit, machine, note, percentile  # noqa: E402

GOAL_MEDIAN_RATIO = 1.3
GOAL_P95_RATIO = 2.0
FLOOR = "import sqlite3, json, hashlib"


class Workspace:
    """A repository, its environment, and ways to run hooks in it and wait for drains."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.repo = directory / "repo"
        self.repo.mkdir()
        home = directory / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLOOM_", "GIT_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            {
                "HOME": str(home),
                "FLOWLOOM_HOME": str(directory / "flowloom-home"),
                "PYTHONPYCACHEPREFIX": str(directory / "pycache"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                "GIT_AUTHOR_NAME": "Bench",
                "GIT_AUTHOR_EMAIL": "bench@example.com",
                "GIT_COMMITTER_NAME": "Bench",
                "GIT_COMMITTER_EMAIL": "bench@example.com",
            }
        )
        self.env = env
        self.git("init", "-q", "-b", "main")
        self.spool = self.repo / ".git" / "flowloom" / "spool"
        self.session = "5b1f0a52-9c3e-4e57-8d3a-2f6b7c8d9e01"

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.repo, env=self.env, check=True, capture_output=True)

    def payload(self, event: str, **fields: Any) -> bytes:
        data = {
            "session_id": self.session,
            "transcript_path": str(self.directory / "transcript.jsonl"),
            "cwd": str(self.repo),
            "permission_mode": "default",
            "hook_event_name": event,
            **fields,
        }
        return json.dumps(data).encode()

    def timed(self, argv: list[str], payload: bytes = b"") -> float:
        started = time.perf_counter()
        result = subprocess.run(
            argv, input=payload, cwd=self.repo, env=self.env, capture_output=True, check=False
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0 or result.stdout or result.stderr:
            raise SystemExit(f"{argv} failed: {result.returncode} {result.stderr.decode()}")
        return elapsed

    def _drainer_running(self) -> bool:
        """A forked drainer is alive (`flowloom drain`; before its exec, the hook)."""
        repo = os.path.realpath(self.repo)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path("/proc", pid, "cmdline").read_bytes()
                if b"flowloom\0hook\0" not in cmdline and b"flowloom\0drain\0" not in cmdline:
                    continue
                if os.path.realpath(os.readlink(f"/proc/{pid}/cwd")) == repo:
                    return True
            except OSError:
                continue
        return False

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until no drainer is running and the spool is empty (untimed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self._drainer_running() or any(self.spool.glob("*.json"))
            lock = self.spool / ".lock"
            if not busy and lock.exists():
                fd = os.open(lock, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy = True
                finally:
                    os.close(fd)
            if not busy:
                return
            time.sleep(0.005)
        raise SystemExit("the drainer did not finish; see .git/flowloom/capture.log")

    def counts(self) -> dict[str, int]:
        from flowloom.config import load_settings
        from flowloom.services import build_services

        services = build_services(load_settings(self.repo, self.env))
        try:
            counts: dict[str, int] = {}
            for entry in services.store.entries(services.ledger.log):
                counts[entry.kind] = counts.get(entry.kind, 0) + 1
            return counts
        finally:
            services.close()


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95), "max_ms": max(ms)}


def run(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="flowloom-bench-hook-", dir=args.dir))
    try:
        ws = Workspace(directory)
        python = sys.executable
        hook = [python, "-m", "flowloom", "hook", "claude-code"]
        floor = [python, "-c", FLOOR]
        prompt = ws.payload(
            "UserPromptSubmit",
            prompt="Refactor the payment retry loop so it backs off exponentially, "
            "and add tests for the edge cases (PAY-42).",
        )
        tool = ws.payload(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="toolu_01",
            tool_input={"command": "python -m pytest -q tests/payments", "description": "Run"},
            tool_response={"stdout": "12 passed in 0.84s\n", "stderr": "", "interrupted": False},
        )
        note(f"warming up in {directory}")
        for _ in range(3):
            ws.timed(floor)
            ws.timed(hook, prompt)
            ws.settle()
            ws.timed(hook, tool)
            ws.settle()
        before = ws.counts()

        runs: dict[str, list[float]] = {"floor": [], "prompt": [], "tool": []}
        order = list(runs)
        rng = random.Random(7)
        note(f"timing {args.n} runs of each")
        for _ in range(args.n):
            rng.shuffle(order)  # no position in the cycle favours one command
            for name in order:
                if name == "floor":
                    runs[name].append(ws.timed(floor))
                else:
                    runs[name].append(ws.timed(hook, prompt if name == "prompt" else tool))
                    ws.settle()

        writes: list[float] = []
        note(f"timing {args.writes} auto-committed writes")
        for i in range(args.writes):
            path = ws.repo / f"module_{i}.py"
            tool_input = {"file_path": str(path), "content": f"VALUE = {i}\n"}
            ws.timed(
                hook,
                ws.payload(
                    "PreToolUse", tool_name="Write", tool_use_id=f"w{i}", tool_input=tool_input
                ),
            )
            ws.settle()
            path.write_text(f"VALUE = {i}\n")
            writes.append(
                ws.timed(
                    hook,
                    ws.payload(
                        "PostToolUse",
                        tool_name="Write",
                        tool_use_id=f"w{i}",
                        tool_input=tool_input,
                        tool_response={},
                    ),
                )
            )
            ws.settle()

        after = ws.counts()
        floor_stats = summary(runs["floor"])
        context = {"n": args.n, **machine()}
        for name, metric in (("prompt", "user_prompt_submit"), ("tool", "post_tool_use")):
            stats = summary(runs[name])
            ratio = stats["median_ms"] / floor_stats["median_ms"]
            ratio_p95 = stats["p95_ms"] / floor_stats["p95_ms"]
            emit(
                f"hook_wall_{metric}",
                stats["median_ms"],
                "ms",
                **context,
                **stats,
                peer=f'python -c "{FLOOR}"',
                peer_value=floor_stats["median_ms"],
                peer_p95_ms=floor_stats["p95_ms"],
                ratio=ratio,
                ratio_p95=ratio_p95,
                ratio_def="hook / floor (median; p95 against the floor's p95)",
                goal=f"median <= {GOAL_MEDIAN_RATIO}x floor, p95 <= {GOAL_P95_RATIO}x floor",
                goal_met=ratio <= GOAL_MEDIAN_RATIO and ratio_p95 <= GOAL_P95_RATIO,
            )
        if writes:
            emit(
                "hook_wall_post_tool_use_write_autocommit",
                summary(writes)["median_ms"],
                "ms",
                **{**context, "n": len(writes)},
                **summary(writes),
                note="spools, asks the drainer for the commit and starts it; no goal",
            )
        recorded = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        expected = {"agent.prompt": args.n, "agent.tool": args.n, "artifact.write": args.writes}
        emit(
            "hook_events_recorded",
            all(recorded.get(k, 0) == v for k, v in expected.items()),
            "bool",
            expected=expected,
            recorded=recorded,
        )
    finally:
        if args.keep:
            note(f"keeping {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="timed runs per event and floor")
    parser.add_argument("--writes", type=int, default=10, help="auto-committed writes timed")
    parser.add_argument("--quick", action="store_true", help="n=15, writes=3")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary repo goes")
    parser.add_argument("--keep", action="store_true", help="keep the repository")
    args = parser.parse_args()
    if args.quick:
        args.n, args.writes = 15, 3
    run(args)


if __name__ == "__main__":
    main()
