"""bench/bench_server.py runs small and prints the figures it promises, as JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.server.support import ROOT


def test_bench_server_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_server.py"),
            "--store",
            "sqlite",
            "--n",
            "60",
            "--batch",
            "20",
            "--clients",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = {r["metric"]: r for r in map(json.loads, out.stdout.splitlines())}
    for mode in ("single", "batch"):
        figure = figures[f"server_append_throughput_{mode}"]
        assert figure["unit"] == "events/s" and figure["value"] > 0
        assert figure["peer_value"] > 0 and figure["ratio"] > 0
    assert figures["server_log_verified"]["value"] is True
