"""`flowloom status` is loud about capture that does not work, and quiet otherwise:
agent hooks only for the agents the repository was set up for, the spool backlog,
capture errors since the last acknowledgement; drained events keep their hook's time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from flowloom.events import outbox as spool
from tests.capture.agent_sandbox import AgentSandbox


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


def prompt(box: AgentSandbox, text: str, env: dict[str, str] | None = None) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=text), env=env)


def test_only_the_agents_the_repository_was_set_up_for_are_judged(
    box: AgentSandbox, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for program in ("codex", "cursor"):  # installed on this machine, not used here
        (bindir / program).write_text("#!/bin/sh\nexit 0\n")
        (bindir / program).chmod(0o755)
    path = {"PATH": f"{bindir}{os.pathsep}{box.env['PATH']}"}
    box.init("--agent", "claude-code")
    shown = box.ok("status", env=path)
    assert "agent hooks: claude-code ok, codex not set up, cursor not set up" in shown
    assert "ok: capture is working" in shown
    data = json.loads(box.ok("status", "--json", env=path))
    assert data["agent_setup"] == {"claude-code": "ok", "codex": "absent", "cursor": "absent"}

    # A repository set up for Claude Code whose settings lost a hook is judged.
    settings = box.repo / ".claude" / "settings.json"
    doc = json.loads(settings.read_text())
    del doc["hooks"]["PostToolUseFailure"]
    settings.write_text(json.dumps(doc))
    warned = box.flowloom("status", env=path)
    assert warned.returncode == 1
    assert "WARNING: claude-code hooks are incomplete here: run flowloom init again" in (
        warned.stdout
    )
    assert "codex" not in warned.stdout.split("WARNING", 1)[1]


def test_an_unusable_ledger_is_loud_and_nothing_is_lost(box: AgentSandbox, tmp_path: Path) -> None:
    box.init("--agent", "claude-code")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    broken = {"FLOWLOOM_DATABASE": str(blocker / "ledger.db")}
    for n in range(3):
        prompt(box, f"prompt {n}", env=broken)
    box.drained()
    waiting = box.spooled()
    assert len(waiting) == 3
    spooled = [spool.read_record(str(box.spool_dir), name) for name in waiting]
    happened = [record["events"][0]["ts"] for record in spooled]

    result = box.flowloom("status", env=broken)
    assert result.returncode == 1
    assert "WARNING: the ledger cannot be used: " in result.stdout
    assert "WARNING: 3 events in 3 spool files are waiting to be recorded" in result.stdout
    assert "the drainer says: " in result.stdout and "drain failed" in result.stdout
    # The ledger itself is fine for status: the backlog alone makes it loud.
    assert "3 events in 3 spool files are waiting" in box.warned()

    prompt(box, "after the repair")  # the next hook's drainer records the backlog first
    box.settled()
    prompts = box.events("agent.prompt")
    assert [box.body(p) for p in prompts] == [
        "prompt 0",
        "prompt 1",
        "prompt 2",
        "after the repair",
    ]
    # Each keeps the time its hook ran, not the time the drainer recorded it.
    assert [p["ts"] for p in prompts[:3]] == happened
    assert box.ok("status").rstrip().endswith("ok: capture is working")


def test_a_backlog_older_than_a_minute_is_loud_even_without_a_logged_failure(
    box: AgentSandbox,
) -> None:
    box.init("--agent", "none")
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 3600))
    event = {"kind": "agent.prompt", "ts": hour_ago, "meta": {"session": "s"}, "body": "hi"}
    spool.write(str(box.spool_dir), "claude-code", [event], hour_ago)
    data = json.loads(box.flowloom("status", "--json").stdout)
    assert data["ok"] is False
    assert data["capture"]["spool"]["files"] == 1
    assert data["capture"]["spool"]["oldest"] == hour_ago
    assert data["capture"]["spool"]["stale"] is True
    assert "1 events in 1 spool files are waiting" in box.warned()
    box.flowloom("drain", str(box.spool_dir), str(box.repo))
    [recorded] = box.events("agent.prompt")
    assert recorded["ts"] == hour_ago  # when it happened, an hour before it was recorded
    assert "ok: capture is working" in box.ok("status")


def test_capture_errors_are_loud_until_acknowledged(box: AgentSandbox) -> None:
    box.init("--agent", "none")
    assert box.hook("claude-code", b"{not json").returncode == 0  # never blocks the agent
    box.settled()
    [error] = box.events("capture.error")
    out = box.warned()
    assert "WARNING: 1 capture errors since the last acknowledgement (the ledger began):" in out
    assert f"entry {error['index']} (" in out and "the payload is not valid JSON" in out
    assert "once dealt with: flowloom status --acknowledge" in out

    acknowledged = box.flowloom("status", "--acknowledge")
    assert acknowledged.returncode == 0, acknowledged.stdout
    assert f"acknowledged 1 capture errors (through entry {error['index']})" in (
        acknowledged.stderr
    )
    [ack] = [e for e in box.events("config.change") if e["subject"] == "capture"]
    assert ack["refs"] == {
        "action": "acknowledge-capture-errors",
        "through": error["index"],
        "count": 1,
    }
    assert "capture errors: 0 since entry" in box.ok("status")

    box.hook("claude-code", b"[]")
    box.settled()
    assert f"1 capture errors since the last acknowledgement (entry {error['index']})" in (
        box.warned()
    )
