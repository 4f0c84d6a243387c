"""`flowloom record`: any other tool's events, redacted like the hooks'."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    return AgentSandbox(tmp_path)


def test_record_redacts_and_prints_the_index(box: AgentSandbox) -> None:
    body = (
        "deployed with OPENAI_API_KEY=sk-"
        + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6l"
        + "\n"
    )
    result = box.flowloom(
        "record",
        "--kind",
        "agent.response",
        "--body-file",
        "-",
        "--session",
        "copilot-42",
        "--subject",
        "deploy",
        "--agent",
        "copilot",
        input=body,
    )
    assert result.returncode == 0, result.stderr
    index = int(result.stdout)
    assert result.stderr == "flowloom: redacted before storing: openai_key ×1\n"
    event = box.events()[index]
    assert event["kind"] == "agent.response"
    assert event["session"] == "copilot-42" and event["subject"] == "deploy"
    assert event["actor"] == {"type": "agent", "id": "copilot", "name": "copilot"}
    assert box.body(event) == "deployed with OPENAI_API_KEY=[REDACTED:openai_key]\n"
    applied = box.events("redaction.apply")[0]
    assert applied["refs"] == {
        "entry": index,
        "kind": "agent.response",
        "counts": {"openai_key": 1},
        "total": 1,
    }


def test_record_refuses_an_unknown_kind_in_one_line(box: AgentSandbox) -> None:
    result = box.flowloom("record", "--kind", "agent.thought")
    assert result.returncode == 3
    assert result.stderr.startswith("flowloom: error: unknown event kind")
    assert result.stderr.count("\n") == 1
    assert box.kinds() == []


def test_hook_typed_at_a_terminal_says_what_it_is_for(box: AgentSandbox) -> None:
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "flowloom", "hook", "claude-code"],
            stdin=secondary,
            capture_output=True,
            cwd=box.repo,
            env=box.env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("flowloom: error: no hook payload on stdin")
    assert not box.spool_dir.exists()
