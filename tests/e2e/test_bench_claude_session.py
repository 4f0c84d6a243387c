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
