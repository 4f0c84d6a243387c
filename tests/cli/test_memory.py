"""`flowloom memory import|export|rebuild`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LINES = [
    '{"type":"entity","name":"Billing","entityType":"component","observations":["owned by Ann"]}',
    '{"type":"entity","name":"Ann","entityType":"person","observations":[]}',
    '{"type":"relation","from":"Ann","to":"Billing","relationType":"owns"}',
]


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.env = {
            **os.environ,
            "FLOWLOOM_HOME": str(tmp_path / "home"),
            "FLOWLOOM_DATABASE": str(tmp_path / "ledger.db"),
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
            "GIT_CEILING_DIRECTORIES": str(tmp_path),
        }

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=self.cwd,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_import_export_round_trip(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "memory.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    imported = cli("memory", "import", str(source))
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 entities, 1 relations, 1 observations" in imported.stdout
    again = cli("memory", "import", "--json", str(source))
    assert json.loads(again.stdout) == {
        "entities": 0,
        "relations": 0,
        "observations": 0,
        "entries": [],
        "problems": [],
    }
    exported = cli("memory", "export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == LINES
    out = tmp_path / "out" / "export.jsonl"
    assert cli("memory", "export", "--out", str(out)).returncode == 0
    assert out.read_text("utf-8") == "\n".join(LINES) + "\n"
    log = cli("log", "show")
    assert "memory.add" in log.stdout
    found = cli("search", "--json", "owned")
    assert json.loads(found.stdout.splitlines()[0])["id"] == "Billing"


def test_import_from_stdin_and_rebuild(cli: Cli) -> None:
    result = cli("memory", "import", "-", input="\n".join(LINES))
    assert result.returncode == 0, result.stderr
    rebuilt = cli("memory", "rebuild")
    assert rebuilt.returncode == 0 and "projected" in rebuilt.stdout
    assert cli("memory", "export").stdout.splitlines() == LINES


def test_a_malformed_line_is_skipped_and_named_the_rest_imported(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(LINES[0] + "\n" + '{"type":"entity","name":' + "\n", encoding="utf-8")
    result = cli("memory", "import", str(bad))
    assert result.returncode == 1, result.stderr
    assert "imported 1 entities" in result.stdout
    assert "flowloom memory import: line 2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("memory", "export").stdout.splitlines() == [LINES[0]]
    missing = cli("memory", "import", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 3 and "no file" in missing.stderr
