"""Codex CLI: hooks (apply_patch edits) and notify, replayed into `flowloom hook codex`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from flowloom.capture.agents.codex import patch_paths
from tests.capture.agent_sandbox import AgentSandbox

MODEL = "gpt-5-codex"


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.session = "019a2f4e-7c1d-7b42-9e3a-5d6c7b8a9f01"
    return box


def codex(box: AgentSandbox, event: str, **fields: Any) -> dict[str, Any]:
    """A Codex hook payload: Claude Code's common fields plus model and turn_id."""
    payload: dict[str, Any] = {
        "session_id": box.session,
        "transcript_path": str(box.root / "rollout.jsonl"),
        "cwd": str(box.repo),
        "hook_event_name": event,
        "model": MODEL,
        "turn_id": "019a2f4e-8000-7000-8000-000000000001",
    }
    payload.update(fields)
    return payload


PATCH = """*** Begin Patch
*** Add File: src/new_module.py
+def answer():
+    return 42
*** Update File: app.py
@@
-print("hello")
+print("hello, world")
*** Delete File: obsolete.txt
*** Update File: old_name.py
*** Move to: new_name.py
@@
-x = 1
+x = 2
*** End Patch
"""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_patch_paths_reads_every_header() -> None:
    assert patch_paths(PATCH) == [
        "src/new_module.py",
        "app.py",
        "obsolete.txt",
        "old_name.py",
        "new_name.py",
    ]


def test_an_apply_patch_session_is_recorded_and_committed(box: AgentSandbox) -> None:
    for name, text in {
        "app.py": 'print("hello")\n',
        "obsolete.txt": "old\n",
        "old_name.py": "x = 1\n",
        "unrelated.txt": "mine\n",
    }.items():
        box.write(name, text)
    box.git("add", "app.py", "obsolete.txt", "old_name.py")
    box.git("commit", "-q", "-m", "base")
    box.write("unrelated.txt", "staged but not the agent's\n")
    box.git("add", "unrelated.txt")

    box.hook_ok("codex", codex(box, "SessionStart", source="startup"))
    box.hook_ok("codex", codex(box, "UserPromptSubmit", prompt="Tidy up the app (OPS-7)"))
    tool_input = {"command": PATCH}
    box.hook_ok(
        "codex",
        codex(
            box, "PreToolUse", tool_name="apply_patch", tool_use_id="call_1", tool_input=tool_input
        ),
    )
    # Codex applies the patch
    box.write("src/new_module.py", "def answer():\n    return 42\n")
    box.write("app.py", 'print("hello, world")\n')
    (box.repo / "obsolete.txt").unlink()
    (box.repo / "old_name.py").unlink()
    box.write("new_name.py", "x = 2\n")
    box.hook_ok(
        "codex",
        codex(
            box,
            "PostToolUse",
            tool_name="apply_patch",
            tool_use_id="call_1",
            tool_input=tool_input,
            tool_response="Success. Updated the following files:\nA src/new_module.py\nM app.py\n"
            "D obsolete.txt\nM new_name.py\n",
        ),
    )
    box.hook_ok(
        "codex",
        codex(
            box,
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="call_2",
            tool_input={"command": "python -m pytest -q"},
            tool_response="3 passed in 0.02s",
        ),
    )
    box.hook_ok(
        "codex",
        codex(box, "Stop", stop_hook_active=False, last_assistant_message="Tidied: 4 files."),
    )
    box.settled()

    events = box.events()
    kinds = box.kinds(events)
    # The commit (and its decision.record) is made by the detached drainer, off the
    # agent's path: after the writes, before the turn's reply, and so anywhere around
    # the next tool call.
    assert kinds.index("artifact.write") + 5 <= kinds.index("decision.record")
    assert kinds.index("decision.record") < kinds.index("agent.response")
    assert [k for k in kinds if k != "decision.record"] == [
        "session.start",
        "agent.prompt",
        "artifact.write",
        "artifact.write",
        "artifact.write",
        "artifact.write",
        "artifact.write",
        "agent.tool",
        "agent.response",
        "decision.amend",
    ]
    artifacts = {e["subject"]: e for e in events if e["kind"] == "artifact.write"}
    assert artifacts["src/new_module.py"]["refs"]["change"] == "create"
    assert artifacts["app.py"]["refs"]["before"] == sha(b'print("hello")\n')
    assert artifacts["obsolete.txt"]["refs"]["change"] == "delete"
    assert artifacts["obsolete.txt"]["refs"]["after"] == "absent"
    assert artifacts["old_name.py"]["refs"]["change"] == "delete"
    assert artifacts["new_name.py"]["refs"]["change"] == "create"
    assert all(a["refs"]["tool"] == "apply_patch" for a in artifacts.values())
    assert '-print("hello")\n+print("hello, world")' in box.body(artifacts["app.py"])
    assert all(e["actor"]["id"] == "codex" for e in events if e["kind"] != "key.generated")

    decision = box.events("decision.record")[0]
    assert decision["refs"]["tickets"] == ["OPS-7"]
    assert decision["refs"]["model"] == MODEL
    response = box.events("agent.response")[0]
    assert box.body(response) == "Tidied: 4 files."
    amendment = box.events("decision.amend")[0]
    assert amendment["refs"] == {
        "record": decision["index"],
        "source": "reply",
        "response_entry": response["index"],
        "choice": "Tidied: 4 files.",
        "risk": "medium",  # five files
    }

    # one commit with exactly the agent's five paths; the staged file stays staged
    assert len(box.commits()) == 2
    changed = box.git("show", "--no-renames", "--name-status", "--format=", "HEAD").split("\n")
    assert sorted(line for line in changed if line) == [
        "A\tnew_name.py",
        "A\tsrc/new_module.py",
        "D\tobsolete.txt",
        "D\told_name.py",
        "M\tapp.py",
    ]
    assert box.git("status", "--porcelain") == "A  unrelated.txt\n"
    assert ("FlowLoom-Decision", decision["subject"]) in box.trailers()
    why = box.ok("why", "app.py:1")
    assert "choice:   Tidied: 4 files." in why
    assert f"reply:    entry {response['index']} (agent.response), verified" in why
    assert "“Tidy up the app (OPS-7)”" in why


def test_a_patch_through_the_shell_is_an_artifact_too(box: AgentSandbox) -> None:
    box.write("cfg.ini", "a=1\n")
    command = [
        "bash",
        "-lc",
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: cfg.ini\n"
        "@@\n-a=1\n+a=2\n*** End Patch\nEOF",
    ]
    box.hook_ok(
        "codex",
        codex(
            box, "PreToolUse", tool_name="Bash", tool_use_id="c", tool_input={"command": command}
        ),
    )
    box.write("cfg.ini", "a=2\n")
    box.hook_ok(
        "codex",
        codex(
            box,
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="c",
            tool_input={"command": command},
            tool_response="",
        ),
    )
    box.settled()
    artifact = box.events("artifact.write")[0]
    assert artifact["subject"] == "cfg.ini"
    assert artifact["refs"]["before"] == sha(b"a=1\n")


def test_notify_records_the_turn_from_its_argument(box: AgentSandbox) -> None:
    notification = {
        "type": "agent-turn-complete",
        "thread-id": box.session,
        "turn-id": "12345",
        "cwd": str(box.repo),
        "input-messages": ["Rename the helper", "and update the callers"],
        "last-assistant-message": "Renamed helper() to assist() in 3 files.",
    }
    result = box.hook("codex", b"", args=(json.dumps(notification),))
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b""
    # other notifications carry nothing to record
    other = {"type": "approval-requested", "thread-id": box.session}
    assert box.hook("codex", b"", args=(json.dumps(other),)).returncode == 0
    box.settled()
    events = box.events()
    assert box.kinds(events) == ["agent.prompt", "agent.prompt", "agent.response"]
    assert [box.body(e) for e in events if e["kind"] != "key.generated"] == [
        "Rename the helper",
        "and update the callers",
        "Renamed helper() to assist() in 3 files.",
    ]
    assert all(e["session"] == box.session for e in events if e["kind"] != "key.generated")
    assert events[-1]["refs"] == {"chars": 40, "via": "notify", "turn": "12345"}


def test_stop_without_a_reply_in_the_payload_reads_the_rollout(box: AgentSandbox) -> None:
    rollout = box.root / "rollout.jsonl"
    lines = [
        {"timestamp": "t", "type": "session_meta", "payload": {"id": box.session}},
        {
            "timestamp": "t",
            "type": "response_item",
            "payload": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        {
            "timestamp": "t",
            "type": "response_item",
            "payload": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello from the rollout."}],
            },
        },
    ]
    rollout.write_text("".join(json.dumps(line) + "\n" for line in lines))
    box.hook_ok("codex", codex(box, "Stop", stop_hook_active=False))
    box.settled()
    assert box.body(box.events("agent.response")[0]) == "Hello from the rollout."
