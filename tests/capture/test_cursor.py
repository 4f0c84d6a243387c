"""Cursor: `.cursor/hooks.json` payloads replayed into `flowloom hook cursor`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.capture.agent_sandbox import AgentSandbox

CONTINUE = '{"continue": true}\n'


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.session = "c9d1a8f0-55aa-4d1e-8b7e-0f2d3c4b5a69"
    return box


def cursor(box: AgentSandbox, event: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "conversation_id": box.session,
        "generation_id": "gen-0001",
        "model": "claude-4.5-sonnet",
        "hook_event_name": event,
        "cursor_version": "2.0.77",
        "workspace_roots": [str(box.repo)],
        "user_email": "ann@example.com",
    }
    payload.update(fields)
    return payload


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


REPLY = """Set foo to 2 as a constant. A constant keeps the bundle static.

Options I weighed:
- a constant
- an environment variable
"""


def test_a_cursor_session_is_recorded_and_its_edit_committed(box: AgentSandbox) -> None:
    target = box.repo / "src" / "main.ts"
    target.parent.mkdir()
    target.write_text("const foo = 1\nexport default foo\n")
    box.git("add", ".")
    box.git("commit", "-q", "-m", "base")

    box.hook_ok("cursor", cursor(box, "sessionStart", session_id=box.session))
    box.hook_ok(
        "cursor",
        cursor(
            box,
            "beforeSubmitPrompt",
            prompt="Bump foo to 2 (WEB-19)",
            attachments=[{"type": "file", "filePath": str(target)}],
        ),
        stdout=CONTINUE,
    )
    target.write_text("const foo = 2\nexport default foo\n")
    box.hook_ok(
        "cursor",
        cursor(
            box,
            "afterFileEdit",
            file_path=str(target),
            edits=[{"old_string": "const foo = 1", "new_string": "const foo = 2"}],
        ),
    )
    box.hook_ok(
        "cursor",
        cursor(
            box,
            "afterShellExecution",
            command="npm test",
            cwd=str(box.repo),
            output="1 passing",
            duration=1530,
        ),
    )
    box.hook_ok(
        "cursor",
        cursor(
            box,
            "afterMCPExecution",
            tool_name="search_docs",
            tool_input=json.dumps({"query": "foo"}),
            result_json='{"hits": 0}',
            duration=20,
        ),
    )
    box.hook_ok("cursor", cursor(box, "afterAgentResponse", text=REPLY))
    box.hook_ok("cursor", cursor(box, "stop", status="completed", loop_count=0))
    box.hook_ok("cursor", cursor(box, "sessionEnd", reason="user_close"))
    box.settled()

    events = box.events()
    kinds = box.kinds(events)
    # The commit is made off the agent's path: its decision is recorded after the write
    # and before the turn's reply, and the tool events spooled meanwhile may precede it.
    assert [k for k in kinds if k != "decision.record"] == [
        "session.start",
        "agent.prompt",
        "artifact.write",
        "agent.tool",
        "agent.tool",
        "agent.response",
        "decision.amend",
        "session.end",
    ]
    assert kinds.count("decision.record") == 1
    assert kinds.index("artifact.write") < kinds.index("decision.record")
    assert kinds.index("decision.record") < kinds.index("agent.response")
    assert all(
        e["session"] == box.session and e["actor"]["id"] == "cursor"
        for e in events
        if e["kind"] != "key.generated"
    )
    prompt = box.events("agent.prompt")[0]
    assert box.body(prompt) == "Bump foo to 2 (WEB-19)"
    assert prompt["refs"]["attachments"] == [str(target)]
    artifact = box.events("artifact.write")[0]
    assert artifact["subject"] == "src/main.ts"
    assert artifact["refs"]["before"] == sha(b"const foo = 1\nexport default foo\n")
    assert artifact["refs"]["tool"] == "afterFileEdit"
    assert "-const foo = 1\n+const foo = 2\n" in box.body(artifact)
    shell, mcp = box.events("agent.tool")
    assert shell["subject"] == "shell"
    assert json.loads(box.body(shell))["input"]["command"] == "npm test"
    assert mcp["subject"] == "search_docs"
    response = box.events("agent.response")[0]
    assert box.body(response) == REPLY
    decision = box.events("decision.record")[0]
    assert decision["refs"]["tickets"] == ["WEB-19"]
    assert ("FlowLoom-Decision", decision["subject"]) in box.trailers()
    assert box.message().startswith("Bump foo to 2 (WEB-19)\n")

    # The reply (afterAgentResponse) amends the turn's decision with its reasoning.
    amendment = box.events("decision.amend")[0]
    assert amendment["subject"] == decision["subject"]
    assert amendment["refs"] == {
        "record": decision["index"],
        "source": "reply",
        "response_entry": response["index"],
        "options": ["a constant", "an environment variable"],
        "choice": "Set foo to 2 as a constant.",
        "rationale": "A constant keeps the bundle static.",
    }
    shown = json.loads(box.ok("why", "src/main.ts:1", "--json"))
    assert shown["verified"] is True
    assert shown["decision"]["options"] == ["a constant", "an environment variable"]
    assert shown["decision"]["choice"] == "Set foo to 2 as a constant."
    assert shown["decision"]["response_entry"] == response["index"]
    assert shown["decision"]["amendments"] == [amendment["index"]]
    roles = {e["role"]: e for e in shown["entries"]}
    assert roles["prompt"]["excerpt"] == "Bump foo to 2 (WEB-19)"
    assert roles["response"]["excerpt"].startswith("Set foo to 2 as a constant.")
    assert roles["amendment"]["index"] == amendment["index"]
    text = box.ok("why", "src/main.ts:1")
    assert "options:  1. a constant\n          2. an environment variable\n" in text


def test_before_submit_prompt_is_answered_even_when_the_payload_is_broken(
    box: AgentSandbox,
) -> None:
    # the prompt is missing: recorded as a capture.error, but Cursor still reads "continue"
    box.hook_ok("cursor", cursor(box, "beforeSubmitPrompt"), stdout=CONTINUE)
    truncated = json.dumps(cursor(box, "beforeSubmitPrompt", prompt="hi"))[:-5]
    box.hook_ok("cursor", truncated, stdout=CONTINUE)
    box.settled()
    assert box.kinds() == ["capture.error", "capture.error"]


def test_an_edit_that_cannot_be_undone_records_the_new_content(box: AgentSandbox) -> None:
    target = box.repo / "a.txt"
    target.write_text("changed again by hand\n")
    box.hook_ok(
        "cursor",
        cursor(
            box,
            "afterFileEdit",
            file_path="a.txt",
            edits=[{"old_string": "x", "new_string": "not in the file"}],
        ),
    )
    box.settled()
    artifact = box.events("artifact.write")[0]
    assert artifact["refs"]["before"] == "unknown"
    assert "+changed again by hand" in box.body(artifact)
