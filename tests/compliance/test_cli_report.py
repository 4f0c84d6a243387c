"""`flowloom report` end to end: the real CLI over a real repository and ledger."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.cli.main import main
from tests.compliance.world import PROJECT, World, build_world, enter


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("cli-world"))
    yield built
    built.close()


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    return enter(world, monkeypatch)


def report(*args: str) -> int:
    try:
        main(["report", "--from", "2026-03-01", "--to", "2026-03-31", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_json_report_is_written_and_exits_zero_despite_flags(
    env: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sox.json"
    assert report("--framework", "sox", "--format", "json", "--out", str(out)) == 0
    data = json.loads(out.read_text())
    assert data["framework"] == "sox" and data["project"] == PROJECT
    assert data["period_from"] == "2026-03-01T00:00:00.000000Z"
    assert data["period_to"] == "2026-04-01T00:00:00.000000Z"
    assert len(data["changes"]) == 7
    whats = {f["what"] for f in data["exceptions"]}
    assert {"unlinked-commit", "unapproved", "untested"} <= whats
    # The command line proves no person yet (no allowed-signers file is read): every
    # approval of the month is shown as unverified and none counts, so none is
    # "self-approved" either.
    assert "self-approved" not in whats
    sod = [f for f in data["exceptions"] if f["check"] == "segregation_of_duties"]
    d1_approval = env.expected["d1"]
    assert any(
        "unverified approval by" in f["message"] and d1_approval in f["message"] for f in sod
    )
    captured = capsys.readouterr()
    assert "evidence for sox controls" in captured.out
    assert "certified" not in captured.out + out.read_text()
    exports = [e for e in env.store.entries(PROJECT, kind="export.generate")]
    assert exports, "the report is itself recorded"


def test_fail_on_flag_exits_one(env: World, tmp_path: Path) -> None:
    out = tmp_path / "soc2.csv"
    code = report("--framework", "soc2", "--format", "csv", "--out", str(out), "--fail-on-flag")
    assert code == 1
    rows = list(csv.reader(out.open(newline="", encoding="utf-8-sig")))
    body = "\n".join(",".join(r) for r in rows)
    assert env.expected["c3"] in body and env.expected["m7"] in body


def test_fail_on_flag_exits_zero_when_nothing_flags(env: World, tmp_path: Path) -> None:
    out = tmp_path / "gdpr.json"
    # In April nothing happened: nothing to flag.
    try:
        main(
            [
                "report", "--framework", "gdpr", "--from", "2026-04-01", "--to", "2026-04-02",
                "--format", "json", "--out", str(out), "--fail-on-flag",
            ]
        )  # fmt: skip
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0
    assert json.loads(out.read_text())["summary"]["flag"] == 0


def test_bad_input_is_a_usage_error(
    env: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    assert report("--framework", "sox", "--format", "docx", "--out", str(out)) == 3
    assert "unknown report format 'docx'" in capsys.readouterr().err
    assert report("--framework", "pci", "--out", str(out)) == 2
    code = report("--framework", "sox", "--out", str(out), "--to", "yesterday")
    assert code == 3
    assert not out.exists()
