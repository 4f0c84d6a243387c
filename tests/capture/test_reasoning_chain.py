"""The reasoning chain: a turn's final reply amends the decision the turn produced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.capture.state import PendingLink, write_pending
from tests.capture.agent_sandbox import AgentSandbox
from tests.capture.test_autocommit import agent_writes, prompt


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


def stop(box: AgentSandbox, reply: str, event: str = "Stop") -> None:
    """The turn ends: Claude Code's transcript holds the reply; the hook reads it."""
    lines = [
        {"type": "user", "message": {"role": "user", "content": "the prompt"}},
        {
            "type": "assistant",
            "message": {"id": f"msg-{len(reply)}", "role": "assistant", "content": reply},
        },
    ]
    (box.root / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    box.hook_ok("claude-code", box.claude(event, stop_hook_active=False))


def scratch_path(box: AgentSandbox) -> Path:
    return box.state_dir / "sessions" / box.session / "session.json"


def test_only_the_final_reply_of_the_turn_that_wrote_amends_its_decision(
    box: AgentSandbox,
) -> None:
    prompt(box, "Add a helper")
    agent_writes(box, "helper.py", "def helper(): ...\n", "t1")
    stop(box, "A subagent looked around.", event="SubagentStop")
    box.settled()
    assert box.events("decision.amend") == []  # a subagent's reply is not the turn's

    stop(box, "Added helper(). It does nothing yet.")
    box.settled()
    [decision] = box.events("decision.record")
    [amendment] = box.events("decision.amend")
    assert amendment["refs"]["record"] == decision["index"]
    assert amendment["refs"]["choice"] == "Added helper()."

    # A later turn that writes nothing leaves the earlier decision alone.
    prompt(box, "What does helper do?")
    stop(box, "Nothing yet.")
    box.settled()
    assert len(box.events("decision.amend")) == 1
    assert len(box.events("agent.response")) == 3


def test_a_decision_recorded_during_the_exchange_gains_only_the_reply(box: AgentSandbox) -> None:
    prompt(box, "Use the decision I am about to record")
    box.settled()
    with box.services() as services:
        ack = services.ledger.record(
            "decision.record",
            meta={
                "session": box.session,
                "subject": "D-00000000aa",
                "refs": {
                    "title": "Keep it",
                    "requested_by": "ann",
                    "choice": "Mine",
                    "rationale": "Because.",
                },
            },
        )
    write_pending(
        box.state_dir.parent,
        PendingLink(decision="D-00000000aa", session=box.session, entry=ack.index, agent="mcp"),
    )
    agent_writes(box, "x.py", "x = 1\n", "t1")
    stop(box, "Done as asked. The agent's own view.")
    box.settled()
    [amendment] = box.events("decision.amend")
    response = box.events("agent.response")[0]
    assert amendment["subject"] == "D-00000000aa"
    assert amendment["refs"] == {
        "record": ack.index,
        "source": "reply",
        "response_entry": response["index"],
    }
    shown = json.loads(box.ok("decision", "show", "D-00000000aa", "--json"))
    assert (shown["choice"], shown["response_entry"]) == ("Mine", response["index"])
    text = box.ok("decision", "show", "D-00000000aa")
    assert f"amended:      entry {amendment['index']}\n" in text
    assert f"reply:        entry {response['index']}\n" in text


def test_the_drainer_checks_the_record_the_scratch_names(box: AgentSandbox) -> None:
    prompt(box, "Add a helper")
    agent_writes(box, "helper.py", "def helper(): ...\n", "t1")
    box.settled()
    [decision] = box.events("decision.record")
    scratch = json.loads(scratch_path(box).read_text())
    assert scratch["decision"]["entry"] == decision["index"]
    # A wrong entry in the scratch: the drainer finds the record by its id instead.
    scratch["decision"]["entry"] = 0
    scratch_path(box).write_text(json.dumps(scratch))
    stop(box, "Added helper().")
    box.settled()
    [amendment] = box.events("decision.amend")
    assert amendment["refs"]["record"] == decision["index"]

    # A decision the ledger does not hold: the gap is recorded, never silently skipped.
    scratch["decision"]["id"] = "D-ffffffffff"
    scratch_path(box).write_text(json.dumps(scratch))
    stop(box, "Added it again.")
    box.settled()
    assert len(box.events("decision.amend")) == 1
    error = box.events("capture.error")[-1]
    response = box.events("agent.response")[-1]
    assert error["refs"]["entry"] == response["index"]
    assert "could not amend decision D-ffffffffff" in error["refs"]["error"]
