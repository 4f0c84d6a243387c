"""bench/bench_gateway.py runs small (FlowLoom against the bare simulator, no LiteLLM) and
prints every figure it promises as JSON lines, with FlowLoom's ledger holding one verified
gateway.exchange per request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "gateway_added_latency_p50",
    "gateway_added_latency_p99",
    "gateway_added_ttft_p50",
    "gateway_simulator_throughput",
    "gateway_throughput_p99_50ms",
    "gateway_rss_idle",
    "gateway_rss_under_load",
    "gateway_soak_rss_growth",
    "gateway_recorded",
)


def test_bench_gateway_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_gateway.py"),
            "--quick",
            "--no-litellm",
            "--steps",
            "1,8",
            "--step-seconds",
            "0.4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    figures = {r["metric"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert figures["gateway_litellm_available"]["value"] is False
    for name in FIGURES:
        figure = figures[name]
        assert figure["value"] is not None, figure
        assert "load" in figure and "cpus" in figure, figure
    assert figures["gateway_added_latency_p50"]["latency"]["flowloom"]["n"] > 0
    assert figures["gateway_throughput_p99_50ms"]["steps"]["flowloom"][0]["rps"] > 0
    assert figures["gateway_simulator_throughput"]["value"] > 0
    assert 0 < figures["gateway_rss_idle"]["value"] < 1024
    streams = figures["gateway_added_ttft_p50"]["streams"]
    # Relayed event by event: as many SSE data lines via the gateway as direct.
    direct = streams["direct@flowloom"]
    assert streams["flowloom"]["events_per_stream"] == direct["events_per_stream"]
    recorded = figures["gateway_recorded"]
    assert recorded["value"] is True, recorded
    assert recorded["exchanges"] == recorded["requests"] > 0 and recorded["verified"] is True


def test_plain_io_hides_uvloop_and_httptools(tmp_path: Path) -> None:
    """--plain-io runs the gateway as where uvloop and httptools are not installed."""
    from bench._gateway_setup import _hide_fast_io

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    _hide_fast_io(tmp_path, env)
    probe = (
        "import uvicorn.loops.auto as l, uvicorn.protocols.http.auto as h\n"
        "print(l.auto_loop_factory()().__class__.__module__, h.AutoHTTPProtocol.__name__)\n"
        "import uvloop\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 1 and "hidden by bench_gateway.py --plain-io" in out.stderr
    loop_module, protocol = out.stdout.split()
    assert loop_module.startswith("asyncio") and protocol == "H11Protocol"


@pytest.mark.postgres
def test_bench_gateway_workers_phase(pg_server_url: str) -> None:
    """--workers 2 on PostgreSQL-backed limits: the figure is printed, every request
    recorded and verified, and the stopped gateway's leases were given back."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "FLOWLOOM_BENCH_PG_URL": pg_server_url,
    }
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_gateway.py"),
            "--quick",
            "--no-litellm",
            "--steps",
            "1",
            "--step-seconds",
            "0.4",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    rows = [r for r in map(json.loads, out.stdout.splitlines()) if r["metric"] == "gateway_workers"]
    [row] = rows
    assert row["workers"] == 2 and row["value"] > 0 and row["cpu_us_per_request"] > 0
    flowloom = row["flowloom"]
    assert flowloom["recorded"] == flowloom["sent"] > 0 and flowloom["verified"] is True
    assert flowloom["quota_counted"]["rpm"] == flowloom["sent"]
