"""bench/bench_web.py runs small and prints the figures it promises, as JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.server.support import ROOT


def test_bench_web_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_web.py"), "--n", "600", "--repeat", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    pages = {r["page"]: r for r in records if r["metric"] == "web_page_p95_ms"}
    assert {"overview", "timeline", "decision", "ledger", "usage", "compliance"} <= set(pages)
    for figure in pages.values():
        assert figure["unit"] == "ms" and figure["value"] > 0 and figure["peer_p95_ms"] > 0
    worst = next(r for r in records if r["metric"] == "web_pages_worst_p95_ms")
    assert worst["goal_ms"] == 200 and isinstance(worst["meets_goal"], bool)
