"""docs/sync.md: every command it names is the real CLI's, and each is exercised.

The page's commands are run by the tests named here (two clones against a real server,
the outbox, the sync CLI, CI recording, the serverless one-writer check); this test
keeps the page and the CLI from drifting apart: each ``flowloom ...`` it shows resolves
to a command, and each option it shows is that command's.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from flowloom.cli.main import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "sync.md"

EXERCISED_BY = {
    "sync": "tests/client/test_sync_cli.py",
    "sync status": "tests/client/test_sync_cli.py",
    "record": "tests/client/test_record.py",
    "decide": "tests/client/test_team_record.py",
    "decision approve": "tests/client/test_team_record.py",
    "decision show": "tests/client/test_team_record.py",
    "decision list": "tests/decisions/test_decide_cli.py",
    "decision export": "tests/decisions/test_decide_cli.py",
    "ci record": "tests/ci/test_record_cli.py",
    "check": "tests/ci/test_record_cli.py",
    "memory import": "tests/client/test_team_record.py",
    "memory export": "tests/client/test_team_record.py",
    "init": "tests/client/test_team_record.py",
    "mcp": "tests/client/test_team_record.py",
    "why": "tests/client/test_team_record.py",
    "search": "tests/client/test_team_record.py",
    "log verify": "tests/capture/test_replicate.py",
    "status": "tests/capture/test_capture_health.py",
    "retention hold": "tests/client/test_team_reads.py",
    "retention release": "tests/client/test_team_reads.py",
    "retention holds": "tests/client/test_team_reads.py",
    "retention plan": "tests/compliance/test_cli_retention.py",
    "retention purge": "tests/client/test_team_reads.py",
    "report respond": "tests/client/test_team_reads.py",
    "anchor tsa": "tests/client/test_team_reads.py",
    "anchor s3": "tests/compliance/test_anchors_cli.py",
    "anchor witness": "tests/compliance/test_anchors_cli.py",
    "anchor list": "tests/client/test_team_reads.py",
    "anchor verify": "tests/compliance/test_anchors_cli.py",
    "serve": "tests/client/conftest.py",
    "admin": "tests/cli/test_admin.py",
}


def _mentions() -> list[list[str]]:
    text = DOC.read_text("utf-8")
    found = re.findall(r"`(flowloom [^`]+)`", text)
    return [m.replace("[", " ").replace("]", " ").split() for m in found]


def _resolve(words: list[str]) -> tuple[click.Command, list[str], str]:
    command: click.Command = cli
    rest = words[1:]
    path: list[str] = []
    context = click.Context(cli)
    while isinstance(command, click.Group) and rest and rest[0].isidentifier():
        found = command.get_command(context, rest[0])
        if found is None:
            break
        path.append(rest[0])
        command, rest = found, rest[1:]
    return command, rest, " ".join(path)


def test_every_command_the_page_names_exists_with_its_options() -> None:
    mentions = _mentions()
    assert len(mentions) >= 8
    for words in mentions:
        command, rest, path = _resolve(words)
        assert path, f"no flowloom command in {' '.join(words)!r}"
        known = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (words, word)


def test_every_command_the_page_names_is_exercised_by_a_test() -> None:
    root = DOC.parents[1]
    for words in _mentions():
        _, _, path = _resolve(words)
        assert path in EXERCISED_BY, f"docs/sync.md names 'flowloom {path}': add its test"
        test_file = root / EXERCISED_BY[path]
        assert test_file.exists()
        assert path.split()[0] in test_file.read_text("utf-8"), (path, test_file)
