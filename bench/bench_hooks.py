#!/usr/bin/env python3
"""Wall time of the commit-msg git hook, against the floor of starting Python at all.

What it measures: a real repository set up with `flowloom init` (policy, hooks, a
SQLite ledger under .git/flowloom/) holding `--decisions` recorded decisions; a message
naming one of them. Each sample runs the installed `.git/hooks/commit-msg MSGFILE` the
way git does (a new process, cwd = the work tree), from fork to exit: the sh script,
the interpreter, the imports and the ledger lookup. This is the common case, paid on
every commit. `--n` samples, after one warm-up run (which fills the hook cache, as the
first commit after `flowloom init` does).

The peer, interleaved with the samples so both see the same machine: `python -c
"import sqlite3, json, hashlib"` with the same interpreter, the least any Python hook
that reads a SQLite ledger can cost. Goal: median <= 1.3 x floor, p95 <= 2 x floor.

For context it also times `python -m flowloom git-hook commit-msg` without the sh
wrapper, and the refusal of an unlinked message (the full path: policy file, settings,
Store; no cache shortcut).

An installed package has its bytecode compiled (pip does it), so the run first compiles
the flowloom package with `compileall`, even where PYTHONDONTWRITEBYTECODE is set:
otherwise every sample would compile FlowLoom's modules from source while the floor's
standard-library modules come precompiled.
"""

from __future__ import annotations

import argparse
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

from bench._common import emit, machine, note, percentile  # noqa: E402

GOAL_MEDIAN_RATIO = 1.3
GOAL_P95_RATIO = 2.0
DECISION = "D-0123456789"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLOOM_", "GIT_"))}
    env.update(
        {
            "HOME": str(home),
            "FLOWLOOM_HOME": str(home / "flowloom"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
            "GIT_AUTHOR_NAME": "Bench",
            "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "Bench",
            "GIT_COMMITTER_EMAIL": "bench@example.com",
        }
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], *, ok: bool = True) -> None:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, check=False)
    if ok and result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr.decode().strip()}")


def _compile_bytecode() -> None:
    import flowloom

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    package = str(Path(flowloom.__file__).parent)
    _run([sys.executable, "-m", "compileall", "-q", package], Path.cwd(), env)


def _setup(directory: Path, decisions: int) -> tuple[Path, dict[str, str]]:
    from flowloom.config import load_settings
    from flowloom.services import build_services

    repo = directory / "repo"
    repo.mkdir()
    env = _env(directory)
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run([sys.executable, "-m", "flowloom", "init", "--agent", "none"], repo, env)
    services = build_services(load_settings(repo, env))
    try:
        for i in range(decisions - 1):
            services.ledger.record(
                "decision.record",
                meta={"subject": f"D-{i:010x}", "refs": {"title": f"decision {i}"}},
            )
        services.ledger.record(
            "decision.record", meta={"subject": DECISION, "refs": {"title": "the one"}}
        )
    finally:
        services.close()
    return repo, env


def _time(args: list[str], cwd: Path, env: dict[str, str], expect: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != expect:
        raise SystemExit(
            f"{' '.join(args)}: exit {result.returncode}, expected {expect}: "
            f"{result.stderr.decode().strip()}"
        )
    return elapsed


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="samples of each (default 30)")
    parser.add_argument("--decisions", type=int, default=1000, help="decisions in the ledger")
    parser.add_argument("--quick", action="store_true", help="--n 15 --decisions 100")
    args = parser.parse_args()
    if args.quick:
        args.n, args.decisions = 15, 100

    _compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="flowloom-bench-hooks-") as scratch:
        directory = Path(scratch)
        note(f"setting up a repository with {args.decisions} decisions")
        repo, env = _setup(directory, args.decisions)
        linked = directory / "linked.msg"
        linked.write_text(f"Add the cache\n\nFlowLoom-Decision: {DECISION}\n")
        unlinked = directory / "unlinked.msg"
        unlinked.write_text("A manual change\n")
        hook = [str(repo / ".git" / "hooks" / "commit-msg"), str(linked)]
        direct = [sys.executable, "-m", "flowloom", "git-hook", "commit-msg", str(linked)]
        refused = [str(repo / ".git" / "hooks" / "commit-msg"), str(unlinked)]
        floor = [sys.executable, "-c", "import sqlite3, json, hashlib"]

        _time(hook, repo, env, 0)  # warm-up: fills the hook cache, as a first commit does
        samples: dict[str, list[float]] = {"hook": [], "direct": [], "floor": [], "refused": []}
        note(f"timing {args.n} runs of each, interleaved")
        for _ in range(args.n):
            samples["floor"].append(_time(floor, repo, env, 0))
            samples["hook"].append(_time(hook, repo, env, 0))
            samples["direct"].append(_time(direct, repo, env, 0))
            samples["refused"].append(_time(refused, repo, env, 1))

    hook_s, floor_s = _summary(samples["hook"]), _summary(samples["floor"])
    median_ratio = hook_s["median_ms"] / floor_s["median_ms"]
    p95_ratio = hook_s["p95_ms"] / floor_s["p95_ms"]
    emit(
        "hook_commit_msg_wall_time",
        hook_s["median_ms"],
        "ms",
        p95_ms=hook_s["p95_ms"],
        peer='python -c "import sqlite3, json, hashlib"',
        peer_median_ms=floor_s["median_ms"],
        peer_p95_ms=floor_s["p95_ms"],
        ratio=median_ratio,
        ratio_p95=p95_ratio,
        ratio_def="hook / floor (lower is better)",
        goal=f"median <= {GOAL_MEDIAN_RATIO} x floor, p95 <= {GOAL_P95_RATIO} x floor",
        goal_met=median_ratio <= GOAL_MEDIAN_RATIO and p95_ratio <= GOAL_P95_RATIO,
        python_m_flowloom=_summary(samples["direct"]),
        refused_full_path=_summary(samples["refused"]),
        n=args.n,
        decisions=args.decisions,
        **machine(),
    )


if __name__ == "__main__":
    main()
