"""bench/bench_claude_session.py runs small and prints the figures it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_session_bench_prints_its_figures(claude_code: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_claude_session.py"),
            "--runs",
            "1",
            "--mcp-runs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = {f["metric"]: f for f in map(json.loads, done.stdout.splitlines())}
    session = figures["claude_session_overhead"]
    assert session["ratio"] > 0 and session["hooks_only_ratio"] > 0 and session["n"] == 1
    assert figures["mcp_initialize_ms"]["value"] > 0


def test_without_npm_the_session_bench_says_why_and_fails(tmp_path: Path) -> None:
    """`make bench` installs node first (the `node` target); run by hand without npm, the
    bench stops at once with the reason, under CI or not."""
    empty = tmp_path / "bin"
    empty.mkdir()
    for ci in ("", "true"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bench_claude_session.py"), "--runs", "1"],
            env={"PATH": str(empty), "HOME": str(tmp_path), "CI": ci},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, done.stderr[-3000:]
        assert done.stdout == ""
        assert "cannot install Claude Code" in done.stderr
        assert "node or npm is not on PATH" in done.stderr
        assert "make node" in done.stderr
        assert "Traceback" not in done.stderr


def test_make_bench_installs_node_first() -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    [target] = [line for line in makefile.splitlines() if line.startswith("bench:")]
    assert "node" in target.split(":", 1)[1].split()
