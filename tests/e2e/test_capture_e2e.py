"""Whole flows in real git repositories, one per agent, as issue 3 asks:

prompt → file write → auto-commit with trailers → `check` passes → `why` shows the
prompt; an unlinked manual commit is refused; an override is accepted and recorded;
`check` fails on a commit made with --no-verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.capture.agent_sandbox import AgentSandbox

PROMPT = "Add a retry helper for PAY-42"


def _claude(box: AgentSandbox) -> None:
    target = box.repo / "retry.py"
    content = "def retry(times):\n    return times\n"
    tool_input = {"file_path": str(target), "content": content}
    box.hook_ok("claude-code", box.claude("SessionStart", source="startup"))
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=PROMPT))
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=tool_input),
    )
    target.write_text(content)
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t1",
            tool_input=tool_input,
            tool_response={"type": "create", "filePath": str(target), "content": content},
        ),
    )


def _codex(box: AgentSandbox) -> None:
    def payload(event: str, **fields: Any) -> dict[str, Any]:
        return {
            "session_id": box.session,
            "transcript_path": str(box.root / "rollout.jsonl"),
            "cwd": str(box.repo),
            "hook_event_name": event,
            "model": "gpt-5-codex",
            "turn_id": "turn-1",
            **fields,
        }

    patch = (
        "*** Begin Patch\n*** Add File: retry.py\n"
        "+def retry(times):\n+    return times\n*** End Patch\n"
    )
    box.hook_ok("codex", payload("SessionStart", source="startup"))
    box.hook_ok("codex", payload("UserPromptSubmit", prompt=PROMPT))
    tool_input = {"command": patch}
    box.hook_ok(
        "codex",
        payload("PreToolUse", tool_name="apply_patch", tool_use_id="c1", tool_input=tool_input),
    )
    box.write("retry.py", "def retry(times):\n    return times\n")
    box.hook_ok(
        "codex",
        payload(
            "PostToolUse",
            tool_name="apply_patch",
            tool_use_id="c1",
            tool_input=tool_input,
            tool_response="Success. Updated the following files:\nA retry.py\n",
        ),
    )


def _cursor(box: AgentSandbox) -> None:
    def payload(event: str, **fields: Any) -> dict[str, Any]:
        return {
            "conversation_id": box.session,
            "generation_id": "gen-1",
            "model": "claude-4.5-sonnet",
            "hook_event_name": event,
            "cursor_version": "2.0.77",
            "workspace_roots": [str(box.repo)],
            "user_email": "ann@example.com",
            **fields,
        }

    target = box.repo / "retry.py"
    box.hook_ok("cursor", payload("sessionStart", session_id=box.session))
    box.hook_ok(
        "cursor", payload("beforeSubmitPrompt", prompt=PROMPT), stdout='{"continue": true}\n'
    )
    target.write_text("def retry(times):\n    return times\n")
    box.hook_ok(
        "cursor",
        payload(
            "afterFileEdit",
            file_path=str(target),
            edits=[{"old_string": "", "new_string": "def retry(times):\n    return times\n"}],
        ),
    )


FLOWS: dict[str, Callable[[AgentSandbox], None]] = {
    "claude-code": _claude,
    "codex": _codex,
    "cursor": _cursor,
}


@pytest.mark.parametrize("agent", sorted(FLOWS))
def test_agent_change_is_captured_committed_gated_and_explained(agent: str, tmp_path: Path) -> None:
    box = AgentSandbox(tmp_path)
    box.init("--agent", agent)
    box.allow_signers("reviewer@example.com")

    FLOWS[agent](box)
    box.settled()

    # Auto-commit with the three trailers.
    head = box.head()
    trailers = dict(box.trailers())
    decision = trailers["FlowLoom-Decision"]
    assert decision.startswith("D-")
    assert trailers["FlowLoom-Session"] == box.session
    assert int(trailers["FlowLoom-Entry"]) >= 0
    assert any(e["subject"] == head for e in box.events("commit.link"))

    # On the protected branch the decision needs someone else's approval.
    box.approve(decision, "reviewer@example.com")
    checked = box.flowloom("check", "--all")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # why shows the prompt behind the line.
    why = box.flowloom("why", "retry.py:1", "--json")
    assert why.returncode == 0, why.stdout + why.stderr
    answer = json.loads(why.stdout)
    assert decision in why.stdout
    assert "retry helper" in json.dumps(answer)

    # An unlinked manual commit is refused, and says how to link or override.
    refused = box.commit("manual change")
    assert refused.returncode != 0
    assert "FLOWLOOM_OVERRIDE" in refused.stderr

    # An override is accepted and recorded with its reason and actor.
    box.commit_ok("hotfix", env={"FLOWLOOM_OVERRIDE": "prod outage INC-7"})
    grants = box.events("override.grant")
    assert any(g["refs"].get("reason") == "prod outage INC-7" for g in grants)

    # A commit that skipped the hooks is caught by the gate.
    sneaky = box.commit_without_hooks("sneaky")
    gated = box.flowloom("check", "--all")
    assert gated.returncode == 1
    assert sneaky[:12] in gated.stdout
