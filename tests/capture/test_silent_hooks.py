"""Agent hooks installed but never fired: `flowloom status` warns (health.silent_agents)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowloom.capture import health
from tests.capture.agent_sandbox import AgentSandbox


def _setup(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", ".")
    box.git("commit", "-q", "-m", "initial")
    box.init("--agent", "claude-code")
    return box


def _silent(box: AgentSandbox, later_s: float) -> list[str]:
    with box.services() as services:
        found = health.silent_agents(
            services.ledger, ["claude-code"], str(box.state_dir), now=time.time() + later_s
        )
    return [s.agent for s in found]


def test_hooks_that_never_fired_are_silent_after_an_hour_and_not_once_they_fire(
    tmp_path: Path,
) -> None:
    box = _setup(tmp_path)
    assert _silent(box, 60) == []  # just installed
    assert _silent(box, health.SILENT_AFTER_S + 60) == ["claude-code"]
    assert box.flowloom("status").returncode == 0
    box.hook_ok("claude-code", box.claude("SessionStart", source="startup"))
    assert _silent(box, health.SILENT_AFTER_S + 60) == []  # waiting in the spool counts
    box.settled()
    assert _silent(box, health.SILENT_AFTER_S + 60) == []


def test_status_warns_about_hooks_installed_hours_ago_that_never_fired(tmp_path: Path) -> None:
    box = _setup(tmp_path)
    # Two hours pass: the last init that wrote Claude Code's settings is stamped then.
    ts = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    refs = {"action": "init", "agents": [".claude/settings.json"]}
    with box.services() as services:
        ledger = services.ledger
        entry = ledger.prepare("config.change", meta={"subject": "x", "refs": refs}, ts=ts)
        ledger.writer.append_many([entry.entry])
    out = box.warned()
    assert "claude-code hooks were installed 2.0 h ago" in out and "never fired" in out
    data = json.loads(box.flowloom("status", "--json").stdout)
    assert [s["agent"] for s in data["capture"]["silent_agents"]] == ["claude-code"]
    box.hook_ok("claude-code", box.claude("SessionStart", source="startup"))
    box.settled()
    assert box.flowloom("status").returncode == 0
