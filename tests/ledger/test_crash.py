"""SIGKILL at random moments loses nothing that was acknowledged (200+ trials)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.crash import check_after_crash, run_trial

TRIALS = int(os.environ.get("FLOWLOOM_CRASH_TRIALS", "200"))


@pytest.mark.slow
def test_sqlite_survives_sigkill(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    acked: dict[int, str] = {}
    sizes = []
    for trial in range(TRIALS):
        result = run_trial(database, tmp_path / "home", seed=trial, max_delay=0.15)
        acked.update(result.acked)
        sizes.append(check_after_crash(database, tmp_path / "home", acked))
    assert sizes == sorted(sizes)
    assert len(acked) > TRIALS  # the children really were appending when killed


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_survives_sigkill(pg_url: str, tmp_path: Path) -> None:
    acked: dict[int, str] = {}
    for trial in range(25):
        result = run_trial(pg_url, tmp_path / "home", seed=trial, max_delay=0.3)
        acked.update(result.acked)
        check_after_crash(pg_url, tmp_path / "home", acked)
    assert len(acked) > 25
