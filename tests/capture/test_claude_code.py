"""Claude Code: a whole session's hook payloads replayed into `flowloom hook claude-code`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.capture.agent_sandbox import AgentSandbox

MODEL = "claude-sonnet-4-5-20250929"


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    return AgentSandbox(tmp_path)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_transcript(box: AgentSandbox, prompt: str, lines: list[dict[str, Any]]) -> Path:
    """A transcript as Claude Code writes it: one JSON object per line."""
    base = {
        "isSidechain": False,
        "userType": "external",
        "cwd": str(box.repo),
        "sessionId": box.session,
        "version": "2.0.14",
        "gitBranch": "main",
    }
    entries = [
        {
            **base,
            "parentUuid": None,
            "type": "user",
            "uuid": "u-1",
            "timestamp": "2026-11-22T02:40:00.000Z",
            "message": {"role": "user", "content": prompt},
        }
    ]
    for i, line in enumerate(lines):
        entries.append({**base, "parentUuid": f"u-{i}", "uuid": f"x-{i}", **line})
    path = box.root / "transcript.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def assistant(message_id: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "assistant",
        "requestId": f"req_{message_id}",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": list(blocks),
            "stop_reason": None,
            "usage": {"input_tokens": 12, "output_tokens": 30},
        },
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def test_a_whole_session_is_recorded_and_each_write_committed(box: AgentSandbox) -> None:
    box.write("README.md", "readme\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "start")
    greet = box.repo / "greet.py"
    prompt = "Add a greet() helper for PAY-42\n\nKeep it small."

    box.hook_ok("claude-code", box.claude("SessionStart", source="startup", model=MODEL))
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=prompt))

    # Write: a new file
    write_input = {"file_path": str(greet), "content": "def greet():\n    return 'hi'\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="toolu_01", tool_input=write_input),
    )
    greet.write_text(write_input["content"])
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="toolu_01",
            tool_input=write_input,
            tool_response={"type": "create", "filePath": str(greet), "content": "…"},
        ),
    )

    # Edit: a change to it
    edit_input = {"file_path": "greet.py", "old_string": "'hi'", "new_string": "'hello'"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Edit", tool_use_id="toolu_02", tool_input=edit_input),
    )
    greet.write_text("def greet():\n    return 'hello'\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Edit",
            tool_use_id="toolu_02",
            tool_input=edit_input,
            tool_response={"filePath": str(greet), "oldString": "'hi'", "newString": "'hello'"},
        ),
    )

    # Bash: an ordinary tool
    bash_input = {"command": "python -c 'import greet'", "description": "Import it"}
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Bash",
            tool_use_id="toolu_03",
            tool_input=bash_input,
            tool_response={"stdout": "", "stderr": "", "interrupted": False},
        ),
    )

    write_transcript(
        box,
        prompt,
        [
            assistant("msg_01", text("I'll add the helper."), {"type": "tool_use", "id": "t"}),
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
                },
            },
            assistant("msg_02", text("Added greet() in greet.py.")),
            assistant("msg_02", text("It returns 'hello'.")),
            {"type": "system", "content": "Stop hook feedback", "level": "info"},
        ],
    )
    box.hook_ok("claude-code", box.claude("Stop", stop_hook_active=False))
    box.hook_ok("claude-code", box.claude("SessionEnd", reason="prompt_input_exit"))
    box.settled()

    events = box.events()
    kinds = box.kinds(events)
    # The drainer commits off the agent's path: the decision.record comes after the
    # first write and before the turn's reply, wherever the agent's next events fell.
    assert kinds.index("artifact.write") < kinds.index("decision.record")
    assert kinds.index("decision.record") < kinds.index("agent.response")
    assert [k for k in kinds if k != "decision.record"] == [
        "session.start",
        "agent.prompt",
        "artifact.write",
        "artifact.write",
        "agent.tool",
        "agent.response",
        "decision.amend",
        "session.end",
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event["kind"], []).append(event)
        if event["kind"] != "key.generated":
            assert event["actor"] == {"type": "agent", "id": "claude-code", "name": "Claude Code"}
            assert event["session"] == box.session

    start = by_kind["session.start"][0]
    assert start["refs"]["source"] == "startup" and start["refs"]["model"] == MODEL
    assert start["git"] == {"branch": "main", "head": box.commits()[0]}

    prompt_event = by_kind["agent.prompt"][0]
    assert box.body(prompt_event) == prompt

    created, edited = by_kind["artifact.write"]
    assert created["subject"] == "greet.py"
    assert created["refs"]["change"] == "create"
    assert created["refs"]["before"] == "absent"
    assert created["refs"]["after"] == sha(b"def greet():\n    return 'hi'\n")
    assert box.body(created).startswith("--- /dev/null\n+++ b/greet.py\n")
    assert edited["refs"]["before"] == sha(b"def greet():\n    return 'hi'\n")
    assert edited["refs"]["after"] == sha(greet.read_bytes())
    assert (edited["refs"]["added"], edited["refs"]["removed"]) == (1, 1)
    assert "-    return 'hi'\n+    return 'hello'\n" in box.body(edited)

    decision = by_kind["decision.record"][0]
    assert decision["subject"].startswith("D-") and len(decision["subject"]) == 12
    refs = decision["refs"]
    assert refs["title"] == "Add a greet() helper for PAY-42"
    assert refs["requested_by"] == "ann@example.com"
    assert refs["tickets"] == ["PAY-42"]
    assert refs["prompt_entry"] == prompt_event["index"]
    assert refs["model"] == MODEL
    assert refs["session"] == box.session

    tool = by_kind["agent.tool"][0]
    assert tool["subject"] == "Bash"
    assert json.loads(box.body(tool))["input"] == bash_input

    response = by_kind["agent.response"][0]
    assert box.body(response) == "Added greet() in greet.py.\n\nIt returns 'hello'."
    assert response["refs"]["model"] == MODEL
    assert by_kind["session.end"][0]["refs"]["reason"] == "prompt_input_exit"

    # The turn's end gave its decision the reply and the reasoning drawn from it.
    amendment = by_kind["decision.amend"][0]
    assert amendment["subject"] == decision["subject"]
    assert amendment["refs"] == {
        "record": decision["index"],
        "source": "reply",
        "response_entry": response["index"],
        "choice": "Added greet() in greet.py.",
        "rationale": "It returns 'hello'.",
    }
    why = box.ok("why", "greet.py:2")
    assert "choice:   Added greet() in greet.py." in why
    assert "why:      It returns 'hello'." in why
    assert f"amended:  entry {amendment['index']} (decision.amend), verified" in why
    assert f"prompt:   entry {prompt_event['index']} (agent.prompt), verified" in why
    assert f"reply:    entry {response['index']} (agent.response), verified" in why
    assert "“Added greet() in greet.py. It returns 'hello'.”" in why

    # A commit per write, under the prompt's one decision, only the agent's file. The
    # hooks here come back to back, faster than the drainer commits: a write the agent
    # superseded before its commit is folded into a commit of the same decision.
    commits = box.commits()
    assert len(commits) in (2, 3)
    entries = {str(created["index"]), str(edited["index"])}
    for commit in commits[1:]:
        assert box.message(commit).splitlines()[0] == "Add a greet() helper for PAY-42"
        assert ("FlowLoom-Decision", decision["subject"]) in box.trailers(commit)
        assert ("FlowLoom-Session", box.session) in box.trailers(commit)
        assert dict(box.trailers(commit))["FlowLoom-Entry"] in entries
        files = box.git("show", "--name-only", "--format=", commit).split()
        assert files == ["greet.py"]
    assert box.git("show", "HEAD:greet.py") == greet.read_text()
    assert box.git("status", "--porcelain") == ""
    # the session's scratch is gone with the session
    assert not any((box.state_dir / "sessions").iterdir())


def test_multiedit_without_pre_tool_use_is_diffed_by_undoing_the_edits(box: AgentSandbox) -> None:
    target = box.repo / "calc.py"
    target.write_text("a = 1\nb = 2\nc = a + b\n")
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="rename a and b"))
    target.write_text("x = 1\ny = 2\nc = x + y\n")
    edits = [
        {"old_string": "a = 1", "new_string": "x = 1"},
        {"old_string": "b = 2", "new_string": "y = 2"},
        {"old_string": "c = a + b", "new_string": "c = x + y"},
    ]
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="MultiEdit",
            tool_use_id="toolu_9",
            tool_input={"file_path": str(target), "edits": edits},
            tool_response={"filePath": str(target), "edits": edits},
        ),
    )
    box.settled()
    artifact = box.events("artifact.write")[0]
    assert artifact["refs"]["before"] == sha(b"a = 1\nb = 2\nc = a + b\n")
    assert artifact["refs"]["change"] == "modify"
    assert (artifact["refs"]["added"], artifact["refs"]["removed"]) == (3, 3)


def test_write_without_any_before_state_says_so(box: AgentSandbox) -> None:
    target = box.repo / "notes.txt"
    target.write_text("new content\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="toolu_5",
            tool_input={"file_path": str(target), "content": "new content\n"},
            tool_response={"filePath": str(target)},
        ),
    )
    box.settled()
    artifact = box.events("artifact.write")[0]
    assert artifact["refs"]["before"] == "unknown"
    assert box.body(artifact).startswith("(the content before this write was not captured")


def test_a_failed_write_is_a_tool_event_not_an_artifact(box: AgentSandbox) -> None:
    target = box.repo / "locked.txt"
    payload_input = {"file_path": str(target), "content": "x"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=payload_input),
    )
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t1",
            tool_input=payload_input,
            tool_response={"success": False, "error": "Permission denied"},
        ),
    )
    box.settled()
    assert box.kinds() == ["agent.tool"]
    assert box.events("agent.tool")[0]["refs"]["status"] == "error"
    assert box.commits() == []
    assert not list((box.state_dir / "sessions").rglob("*.bin"))


def test_stop_without_a_readable_transcript_records_a_capture_error(box: AgentSandbox) -> None:
    box.hook_ok("claude-code", box.claude("Stop", transcript_path=str(box.root / "missing.jsonl")))
    box.settled()
    error = box.events("capture.error")[0]
    assert error["subject"] == "claude-code"
    assert "cannot read the transcript" in error["refs"]["error"]


def test_stop_reads_only_the_last_reply_of_a_long_transcript(box: AgentSandbox) -> None:
    filler = [assistant(f"msg_{i}", text(f"old reply {i} " + "x" * 400)) for i in range(3000)]
    write_transcript(box, "first", [*filler, assistant("msg_last", text("The final answer."))])
    assert (box.root / "transcript.jsonl").stat().st_size > 1_000_000
    box.hook_ok("claude-code", box.claude("Stop"))
    box.settled()
    assert box.body(box.events("agent.response")[0]) == "The final answer."


def test_the_console_script_and_python_m_both_take_the_light_path(box: AgentSandbox) -> None:
    """`flowloom hook` never imports click, cryptography or psycopg (nor the ledger)."""
    payload = json.dumps(box.claude("UserPromptSubmit", prompt="hello")).encode()
    script = Path(sys.executable).with_name("flowloom")
    for command in ([sys.executable, "-m", "flowloom"], [str(script)]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", *command[1:], "hook", "claude-code"]
            if command[0] == sys.executable
            else [sys.executable, "-X", "importtime", command[0], "hook", "claude-code"],
            input=payload,
            cwd=box.repo,
            env=box.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == b""
        imported = {
            line.split("|")[-1].strip()
            for line in result.stderr.decode().splitlines()
            if line.startswith("import time:")
        }
        assert "flowloom.capture.agents.hookmain" in imported
        for heavy in ("click", "cryptography", "psycopg", "flowloom.ledger.log", "sqlite3"):
            assert heavy not in imported, heavy
    box.settled()
    assert box.kinds() == ["agent.prompt", "agent.prompt"]


def test_the_cli_lists_the_capture_commands(box: AgentSandbox) -> None:
    help_text = box.ok("--help")
    for command in ("hook", "record", "import"):
        assert f"  {command} " in help_text
    usage = box.flowloom("hook", "--help")
    assert usage.returncode == 0 and "usage: flowloom hook AGENT" in usage.stdout
