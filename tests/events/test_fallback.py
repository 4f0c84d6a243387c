"""Never silent, never lost: an unusable outbox falls back to a second durable place,
and when nothing can be written the agent is told (and blocked under fail_closed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowloom.events import outbox
from tests.capture.agent_sandbox import AgentSandbox


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.env["XDG_STATE_HOME"] = str(tmp_path / "state")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # for fallback_dir here
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    box.init("--agent", "claude-code")
    return box


def _break(path: Path) -> None:
    """Make `path` unusable as a directory, even for root: a regular file in its place."""
    if path.is_dir():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a directory\n")


def _drained_from(box: AgentSandbox, fallback: str, timeout: float = 60.0) -> None:
    """Wait until the drainer has emptied the fallback (its lock is not the spool's)."""
    deadline = time.monotonic() + timeout
    while outbox.waiting(fallback) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.waiting(fallback) == []
    box.drained()


def _prompts(box: AgentSandbox) -> list[str]:
    return [box.body(e) for e in box.events("agent.prompt")]


def test_an_unusable_outbox_falls_back_says_so_and_is_drained(
    box: AgentSandbox, tmp_path: Path
) -> None:
    _break(box.spool_dir)
    result = box.hook("claude-code", box.claude("UserPromptSubmit", prompt="kept elsewhere"))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "kept in" in answer["systemMessage"]
    fallback = outbox.fallback_dir(str(box.spool_dir))
    assert fallback.startswith(str(tmp_path / "state"))
    _drained_from(box, fallback)
    assert _prompts(box) == ["kept elsewhere"]

    # Repaired: the outbox is used again, in order after what the fallback held.
    box.spool_dir.unlink()
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="back home"))
    box.settled()
    assert _prompts(box) == ["kept elsewhere", "back home"]


def test_nothing_writable_warns_the_user_and_is_recorded_after_repair(
    box: AgentSandbox, tmp_path: Path
) -> None:
    _break(box.spool_dir)
    _break(tmp_path / "state")
    result = box.hook("claude-code", box.claude("UserPromptSubmit", prompt="lost"))
    assert result.returncode == 0  # not fail_closed: the session goes on, warned
    assert "was NOT recorded" in json.loads(result.stdout)["systemMessage"]

    box.spool_dir.unlink()
    (tmp_path / "state").unlink()
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="after"))
    box.settled()
    errors = [e for e in box.events("capture.error") if "lost_events" in e["refs"]]
    assert len(errors) == 1
    assert errors[0]["refs"]["lost_events"] == 1
    assert "capture could write nothing" in errors[0]["refs"]["error"]
    assert _prompts(box) == ["after"]
    # the loss keeps the time it happened, before the prompt that found it out
    prompt = box.events("agent.prompt")[0]
    assert errors[0]["ts"] <= prompt["ts"] and errors[0]["index"] < prompt["index"]


def test_fail_closed_blocks_the_agent_when_nothing_can_be_written(
    box: AgentSandbox, tmp_path: Path
) -> None:
    box.set_policy(fail_closed=True)
    assert "fail_closed = true" in (box.repo / ".flowloom" / "config.toml").read_text()
    _break(box.spool_dir)
    _break(tmp_path / "state")
    result = box.hook("claude-code", box.claude("UserPromptSubmit", prompt="blocked"))
    assert result.returncode == 2  # Claude Code blocks the prompt and shows stderr
    assert b"NOT recorded" in result.stderr and b"fail_closed" in result.stderr


def test_write_durably_prefers_the_outbox_and_keeps_notes_of_losses(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    event = {"kind": "agent.prompt", "meta": {}, "body": "x"}
    written = outbox.write_durably(str(spool), "cli", [event], "2026-01-01T00:00:00.000000Z")
    assert not written.fallback and written.directory == str(spool) and written.offset == 0
    notes, claimed = outbox.take_failure_notes(str(spool))
    assert notes == [] and claimed is None
    assert outbox.note_failure(str(spool), "cli", "2026-01-01T00:00:01.000000Z", 3, "EROFS")
    again = outbox.write_durably(str(spool), "cli", [event], "2026-01-01T00:00:02.000000Z")
    assert again.offset == 1
    record = outbox.read_record(again.directory, again.name)
    assert [e["kind"] for e in record["events"]] == ["capture.error", "agent.prompt"]
    assert record["events"][0]["ts"] == "2026-01-01T00:00:01.000000Z"
    assert outbox.take_failure_notes(str(spool)) == ([], None)  # taken once


def test_the_hook_path_stays_light(box: AgentSandbox) -> None:
    """The outbox with its fallback adds nothing heavy to a hook run (`-X importtime`).

    The worktree is clean (what `init` wrote is committed): a prompt then hashes nothing
    (with changed files it digests them, to tell bypassed edits at Stop).
    """
    box.git("add", "-A")
    box.git("-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "flowloom init")
    payload = json.dumps(box.claude("UserPromptSubmit", prompt="light")).encode()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flowloom", "hook", "claude-code"],
        input=payload,
        cwd=box.repo,
        env=box.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "flowloom.events.outbox" in imported
    for heavy in ("hashlib", "tempfile", "flowloom.sinks", "flowloom.ledger", "flowloom.drainer"):
        assert heavy not in imported, heavy
    box.settled()
    assert _prompts(box) == ["light"]


def test_status_says_the_fallback_is_in_use_and_exits_non_zero(
    box: AgentSandbox, tmp_path: Path
) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="first"))
    box.settled()
    assert box.flowloom("status").returncode == 0
    _break(box.spool_dir)
    result = box.hook("claude-code", box.claude("UserPromptSubmit", prompt="kept elsewhere"))
    assert result.returncode == 0, result.stderr
    fallback = outbox.fallback_dir(str(box.spool_dir))
    _drained_from(box, fallback)
    status = box.flowloom("status")
    assert status.returncode == 1, status.stdout
    assert "fallback outbox" in status.stdout and fallback in status.stdout, status.stdout
    assert "is not a directory" in status.stdout
    data = json.loads(box.flowloom("status", "--json").stdout)
    assert data["capture"]["spool"]["fallback"]["in_use"] is True

    box.spool_dir.unlink()  # repaired
    assert box.flowloom("status").returncode == 0
