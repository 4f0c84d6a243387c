"""SARIF 2.1.0: real Bandit and Semgrep outputs parse; bad files are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.errors import InputError
from flowloom.scanners.sarif import parse_sarif

FIXTURES = Path(__file__).parent / "fixtures"


def test_bandit_output_is_read() -> None:
    tools, results = parse_sarif((FIXTURES / "bandit.sarif").read_bytes(), "bandit.sarif")
    assert [(t.name, t.version) for t in tools] == [("Bandit", "1.9.4")]
    assert [(r.rule_id, r.level, r.path, r.start_line) for r in results] == [
        ("B404", "note", "app.py", 3),
        ("B602", "error", "app.py", 7),
        ("B307", "warning", "app.py", 11),  # no level: SARIF's default
        ("B105", "note", "app.py", 14),
    ]


def test_semgrep_output_is_read() -> None:
    tools, results = parse_sarif((FIXTURES / "semgrep.sarif").read_bytes(), "semgrep.sarif")
    assert [(t.name, t.version) for t in tools] == [("Semgrep OSS", "1.185.0")]
    assert {(r.rule_id, r.start_line) for r in results} == {
        ("subprocess-shell-true", 7),
        ("python-eval", 11),
    }


def _broken(edit: str) -> bytes:
    log = json.loads((FIXTURES / "bandit.sarif").read_text())
    if edit == "level":
        log["runs"][0]["results"][0]["level"] = "fatal"
    elif edit == "version":
        log["version"] = "2.0.0"
    elif edit == "runs":
        del log["runs"]
    return json.dumps(log).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "is not JSON"),
        (_broken("version"), "is not a SARIF 2.1.0 log"),
        (_broken("level"), "schema at runs/0/results/0/level"),
        (_broken("runs"), "schema at (root): 'runs' is a required property"),
    ],
)
def test_bad_sarif_is_refused_with_where(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_sarif(data, "x.sarif")
    assert message in caught.value.message
