"""Nothing an agent sends breaks its session, and nothing captured is lost.

Each bad payload still exits 0 with nothing on stdout, and leaves a capture.error event
with the error and the payload's digest, never the payload. When the ledger itself is
unavailable, events wait in the spool and the next hook run records them first, in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    return AgentSandbox(tmp_path)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


BAD_PAYLOADS = {
    "not json": (
        b'{"session_id": "s", "hook_event_name": "UserPromptSubmit", "prompt": "unterminated'
    ),
    "empty": b"",
    "whitespace": b"  \n",
    "json array": b'[{"hook_event_name": "Stop"}]',
    "json string": b'"UserPromptSubmit"',
    "no event name": b'{"session_id": "s-1", "prompt": "hi"}',
    "prompt is a number": (
        b'{"session_id": "s-1", "hook_event_name": "UserPromptSubmit", "prompt": 42}'
    ),
    "tool input not an object": (
        b'{"session_id": "s-1", "hook_event_name": "PostToolUse", "tool_name": "Write",'
        b' "tool_input": "file.txt", "tool_response": {}}'
    ),
    "unknown event": b'{"session_id": "s-1", "hook_event_name": "TimeTravel"}',
    "invalid utf-8": (
        b'{"session_id": "s-1", "hook_event_name": "UserPromptSubmit", "prompt": "\xff\xfe"}'
    ),
    "deeply nested": b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    "binary noise": os.urandom(4096),
}


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_a_bad_payload_is_recorded_as_a_capture_error(box: AgentSandbox, name: str) -> None:
    raw = BAD_PAYLOADS[name]
    result = box.hook_ok("claude-code", raw)
    assert b"Traceback" not in result.stderr
    box.settled()
    events = box.events()
    assert box.kinds(events) == ["capture.error"]
    error = events[-1]
    assert error["subject"] == "claude-code"
    assert error["refs"]["error"]
    assert error["refs"]["payload_digest"] == digest(raw)
    assert error["refs"]["payload_bytes"] == len(raw)
    assert "body" not in error
    if len(raw) > 16:
        assert raw[:64] not in box.database_bytes()


def test_a_lone_surrogate_in_the_prompt_is_kept_as_a_replacement_character(
    box: AgentSandbox,
) -> None:
    raw = json.dumps(box.claude("UserPromptSubmit", prompt="bad \ud800 char")).encode()
    box.hook_ok("claude-code", raw)
    box.settled()
    assert box.body(box.events("agent.prompt")[0]) == "bad \ufffd char"


def test_a_huge_tool_output_is_cut_not_lost(box: AgentSandbox) -> None:
    output = "line of build output\n" * 200_000  # 4 MB
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="t",
            tool_input={"command": "make"},
            tool_response={"stdout": output, "stderr": ""},
        ),
    )
    box.settled()
    body = json.loads(box.body(box.events("agent.tool")[0]))
    assert body["response"]["stdout"].endswith("more characters not recorded]")
    assert body["input"] == {"command": "make"}


def test_an_unknown_agent_name_exits_0_and_says_so_once(box: AgentSandbox) -> None:
    result = box.hook("claude", box.claude("UserPromptSubmit", prompt="hi"))
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr.decode().count("\n") == 1
    assert "unknown agent 'claude'" in result.stderr.decode()
    box.settled()
    assert box.events("capture.error")[0]["refs"]["error"] == "unknown agent 'claude'"


def test_events_wait_in_the_spool_while_the_ledger_is_unavailable(box: AgentSandbox) -> None:
    broken = {"FLOWLOOM_DATABASE": str(box.root)}  # a directory: the store cannot open it
    prompts = [f"prompt number {i}" for i in range(5)]
    for prompt in prompts[:3]:
        box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=prompt), env=broken)
    box.drained()
    assert len(box.spooled()) == 3
    assert "drain failed" in (box.state_dir / "capture.log").read_text()

    # the ledger is back: the next hook run records the waiting events first, in order
    for prompt in prompts[3:]:
        box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=prompt))
    box.settled()
    recorded = [box.body(e) for e in box.events("agent.prompt")]
    assert recorded == prompts


def test_a_damaged_spool_file_is_set_aside_and_reported(box: AgentSandbox) -> None:
    box.spool_dir.mkdir(parents=True)
    damaged = box.spool_dir / "00000000000000000001-0000001-001.json"
    damaged.write_bytes(b'{"v": 1, "events": [')
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="after the damage"))
    box.settled()
    assert box.kinds() == ["capture.error", "agent.prompt"]
    error = box.events("capture.error")[0]
    assert "is unreadable" in error["refs"]["error"]
    assert error["refs"]["payload_digest"] == digest(b'{"v": 1, "events": [')
    assert (box.spool_dir / "bad" / damaged.name).exists()


def test_an_event_the_ledger_refuses_becomes_a_capture_error(box: AgentSandbox) -> None:
    box.spool_dir.mkdir(parents=True)
    record = {
        "v": 1,
        "agent": "claude-code",
        "created": "2026-11-22T00:00:00.000000Z",
        "events": [
            {"kind": "no.such.kind", "meta": {"session": "s"}, "body": "text"},
            {"kind": "agent.prompt", "meta": {"session": "s"}, "body": "fine"},
        ],
    }
    (box.spool_dir / "00000000000000000001-0000001-001.json").write_text(json.dumps(record))
    box.hook_ok("claude-code", box.claude("SessionEnd", reason="other"))
    box.settled()
    assert box.kinds() == ["capture.error", "agent.prompt", "session.end"]
    error = box.events("capture.error")[0]
    assert "could not record a no.such.kind event" in error["refs"]["error"]
    assert error["refs"]["payload_digest"] == digest(b"text")
    assert error["session"] == "s"


def test_a_recorded_spool_file_left_behind_by_a_crash_is_not_recorded_twice(
    box: AgentSandbox,
) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="once"))
    box.settled()
    journal = (box.spool_dir / "journal").read_text().split()
    name = journal[0]
    # a drainer died after recording, before deleting its file
    record = {
        "v": 1,
        "agent": "claude-code",
        "created": "x",
        "events": [{"kind": "agent.prompt", "meta": {}, "body": "once"}],
    }
    (box.spool_dir / name).write_text(json.dumps(record))
    box.hook_ok("claude-code", box.claude("SessionEnd", reason="other"))
    box.settled()
    assert box.kinds() == ["agent.prompt", "session.end"]


def test_a_hook_run_outside_any_repository_still_records(tmp_path: Path) -> None:
    box = AgentSandbox(tmp_path)
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    payload = box.claude("UserPromptSubmit", prompt="no repo here", cwd=str(elsewhere))
    box.hook_ok("claude-code", payload, cwd=elsewhere)
    home = Path(box.env["FLOWLOOM_HOME"])
    deadline = time.monotonic() + 60
    while list((home / "spool").glob("*.json")) or not (home / "ledger.db").exists():
        assert time.monotonic() < deadline, "the spool outside a repository was not drained"
        time.sleep(0.02)
    shown = box.run([sys.executable, "-m", "flowloom", "log", "show"], cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert "agent.prompt" in shown.stdout
