"""docs/ci.md: every command in it is the real CLI's, and runs as the page says."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from flowloom.cli.main import cli
from tests.capture.git_sandbox import DECISION, Sandbox
from tests.ci import NO_PLUGINS

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def _resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = args[1:]
    context = click.Context(cli)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(context, rest[0])
        assert found is not None, f"no command {rest[0]!r} in {' '.join(args)}"
        command, rest = found, rest[1:]
    return command, rest


def test_every_flowloom_command_in_the_page_parses() -> None:
    commands = [c for c in _commands() if c[0] == "flowloom"]
    assert len(commands) >= 4
    for args in commands:
        command, rest = _resolve(args)
        context = command.make_context(args[0], list(rest), resilient_parsing=True)
        assert context is not None
        known = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (args, word)


def test_the_pages_commands_run(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit")
    box.init()
    (box.repo / ".gitignore").write_text("test-results/\ntest-reports/\n__pycache__/\n")
    (box.repo / "test_app.py").write_text("def test_ok():\n    assert True\n")
    box.git("add", "-A")
    box.git("commit", "-q", "-m", "tests", env={"FLOWLOOM_OVERRIDE": "tests"})
    box.git("branch", "-q", "base")
    box.git("update-ref", "refs/remotes/origin/main", "base")
    box.record_decision()
    box.commit_ok(f"linked\n\nFlowLoom-Decision: {DECISION}")
    env = {"PATH": f"{box.bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", **NO_PLUGINS}
    for args in _commands():
        if args[:3] == ["flowloom", "init", "--ci"] and "--ci-install" not in args:
            continue  # derives the pin from this FlowLoom's install: tests/ci/test_templates.py
        if args[0] == "python":
            args = [sys.executable, *args[1:]]
        elif args[0] == "flowloom":
            args = [sys.executable, "-m", "flowloom", *args[1:]]
        if "check" in args:
            args.insert(args.index("check") + 1, "--branch=topic")  # no approval needed
        done = subprocess.run(
            args, cwd=box.repo, env={**box.env, **env}, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert len(box.events("test.result")) == 1
    assert len(box.events("ci.result")) == 1
    assert (box.repo / "test-reports" / "flowloom-gate.xml").exists()
    assert (box.repo / ".gitlab-ci.yml").exists()


@pytest.mark.parametrize("path", ["docs/capture.md", "docs/compliance.md", "README.md"])
def test_the_other_pages_point_here(path: str) -> None:
    text = (DOC.parents[1] / path).read_text("utf-8")
    assert "ci.md" in text or "flowloom ci record" in text
