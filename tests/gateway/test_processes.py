"""Past one process: gateways (and a gateway's workers) share one key's limits through the
database; /metrics sums every worker and names no key; SIGTERM stops workers cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from flowloom.gateway.mock import MockServer
from tests.gateway.processes import recorded_exchanges, served_gateway

RPM = 40
LEASE_FRACTION = AccessSettings().lease_fraction


def _make_key(database: str, **limits: int) -> str:
    access = Access(
        database, master_key_loader=lambda: bytes(32), settings=AccessSettings(background=False)
    )
    try:
        _, secret = access.create_key(owner_user="load", **limits)
        return secret
    finally:
        access.close()


def _counted(database: str, scope: str) -> float:
    access = Access(
        database, master_key_loader=lambda: bytes(32), settings=AccessSettings(background=False)
    )
    try:
        with access.engine.connect() as conn:
            total = conn.execute(
                text("SELECT COALESCE(SUM(amount), 0) FROM gateway_quota_use WHERE scope LIKE :s"),
                {"s": scope},
            ).scalar()
        return float(total or 0)
    finally:
        access.close()


async def _hammer(urls: list[str], secret: str, calls: int, concurrency: int) -> dict[int, int]:
    """`calls` chat completions spread over `urls`, `concurrency` at a time: count by status."""
    statuses: dict[int, int] = {}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {secret}"}
    todo = iter(range(calls))
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            for i in todo:
                url = urls[i % len(urls)] + "/v1/chat/completions"
                response = await client.post(url, json=body, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


@pytest.mark.postgres
def test_two_gateways_on_postgres_never_exceed_one_keys_rpm(
    tmp_path: Path, pg_url: str, mock_provider: MockServer
) -> None:
    secret = _make_key(pg_url, rpm=RPM)
    upstream = ("--upstream", f"openai={mock_provider.url}")
    home = {"FLOWLOOM_HOME": str(tmp_path / "home")}  # one set of signing keys, as documented
    with (
        served_gateway(tmp_path / "a", *upstream, database=pg_url, env=home) as (one, _),
        served_gateway(tmp_path / "b", *upstream, database=pg_url, env=home) as (two, _),
    ):
        statuses = asyncio.run(_hammer([one, two], secret, calls=6 * RPM, concurrency=16))
    assert set(statuses) <= {200, 429}, statuses
    granted = statuses.get(200, 0)
    # The documented allowance for requests is zero: never more than the limit. Each
    # process may hold at most one lease (lease_fraction of the limit) unused at the end.
    assert granted <= RPM, statuses
    assert granted >= RPM - 2 * max(1, int(RPM * LEASE_FRACTION)), statuses
    # Stopped gracefully, both gave their unused leases back: what is counted was used.
    assert _counted(pg_url, "rpm:%") == granted
    assert len(recorded_exchanges(pg_url)) == sum(statuses.values())


def test_workers_share_limits_metrics_and_stop_cleanly(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    database = str(tmp_path / "gateway.db")
    tmp_path.joinpath("home").mkdir()
    secret = _make_key(database, rpm=RPM)
    args = ("--upstream", f"openai={mock_provider.url}", "--workers", "2")
    with served_gateway(tmp_path, *args, database=database) as (url, process):
        statuses = asyncio.run(_hammer([url], secret, calls=3 * RPM, concurrency=8))
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.get(200, 0) <= RPM, statuses
        metrics = httpx.get(url + "/metrics", timeout=30).text
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        errors = process.stderr.read().decode() if process.stderr else ""
    assert code == 0, errors[-3000:]
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("flowloom_gateway_requests_total{")
    )
    assert total == sum(statuses.values())  # both workers' counts, whichever answered
    assert 'status="429"' in metrics and 'provider="openai"' in metrics
    assert secret not in metrics and "load" not in metrics and "gpt-4o-mini" not in metrics
    assert len(recorded_exchanges(Path(database))) == sum(statuses.values())


def test_a_bad_configuration_stops_before_any_worker_starts(tmp_path: Path) -> None:
    import os
    import sys

    from tests.server.support import ROOT

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowloom",
            "--database",
            str(tmp_path / "gateway.db"),
            "gateway",
            "serve",
            "--workers",
            "2",
            "--config",
            str(tmp_path / "missing.toml"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLOWLOOM_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "missing.toml" in done.stderr and "Traceback" not in done.stderr
    assert "workers" not in done.stderr.lower()  # nothing was started
