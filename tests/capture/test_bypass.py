"""Edits that bypassed capture, found at Stop (flowloom.capture.agents.worktree).

Replayed hook payloads in a real repository: the work tree is noted at the prompt,
files are changed with no tool hook (as a shell command would), and Stop records them
as artifact.write (`detected: stop`) plus one capture.bypass, then auto-commits them.
The real CLIs doing the same are in tests/e2e/test_real_agents.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox
from tests.capture.test_autocommit import agent_writes, prompt


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.write("notes.txt", "one\n")
    box.git("add", ".")
    box.git("commit", "-q", "-m", "initial")
    return box


def stop(box: AgentSandbox, reply: str = "Done.") -> None:
    box.hook_ok("claude-code", box.claude("Stop", last_assistant_message=reply))


def test_a_file_changed_outside_the_tools_is_recorded_and_committed(box: AgentSandbox) -> None:
    prompt(box, "Append to the notes for PAY-3")
    box.write("notes.txt", "one\ntwo\n")  # `echo two >> notes.txt` in a shell
    box.write("new/made.txt", "made\n")
    stop(box, "I appended a line and made a file.")
    box.settled()
    writes = box.events("artifact.write")
    assert {w["subject"] for w in writes} == {"notes.txt", "new/made.txt"}
    notes = next(w for w in writes if w["subject"] == "notes.txt")
    assert notes["refs"]["detected"] == "stop" and notes["refs"]["tool"] == "unseen"
    assert notes["refs"]["change"] == "modify" and notes["refs"]["added"] == 1
    assert "+two" in box.body(notes)  # diffed against HEAD: the file was clean at the prompt
    [bypass] = box.events("capture.bypass")
    assert bypass["refs"]["count"] == 2
    assert {f["path"]: f["after"] for f in bypass["refs"]["files"]} == {
        w["subject"]: w["refs"]["after"] for w in writes
    }
    # committed, linked, and the reply amends the decision of that commit
    assert box.run(["git", "status", "--porcelain"]).stdout == ""
    assert box.message().splitlines()[0] == "Append to the notes for PAY-3"
    [amend] = box.events("decision.amend")
    assert amend["subject"] == box.events("decision.record")[0]["subject"]
    kinds = box.kinds()
    assert kinds.index("capture.bypass") < kinds.index("agent.response")


def test_work_in_progress_from_before_the_prompt_is_not_the_agents(box: AgentSandbox) -> None:
    box.write("notes.txt", "one\nmine\n")  # the user's uncommitted work
    box.write("draft.txt", "draft\n")
    prompt(box, "Say hello")
    stop(box)
    box.settled()
    assert "capture.bypass" not in box.kinds()
    assert len(box.commits()) == 1


def test_a_file_already_changed_is_recorded_with_before_unknown(box: AgentSandbox) -> None:
    box.write("notes.txt", "one\nmine\n")
    prompt(box, "Fix the notes")
    box.write("notes.txt", "one\nmine\ntheirs\n")
    stop(box)
    box.settled()
    [write] = box.events("artifact.write")
    assert write["refs"]["before"] == "unknown" and write["refs"]["detected"] == "stop"
    assert "was not captured" in box.body(write)


def test_captured_writes_are_not_reported_again(box: AgentSandbox) -> None:
    (box.repo / ".flowloom").mkdir()  # the written file stays changed in the work tree
    (box.repo / ".flowloom" / "config.toml").write_text("[policy]\nauto_commit = false\n")
    prompt(box, "Add a helper")
    agent_writes(box, "helper.py", "def helper(): ...\n", "t1")
    stop(box)
    box.settled()
    assert box.kinds().count("artifact.write") == 1
    assert "capture.bypass" not in box.kinds()


def test_stop_reports_once_and_a_deleted_file_counts(box: AgentSandbox) -> None:
    prompt(box, "Remove the notes")
    (box.repo / "notes.txt").unlink()
    stop(box)
    stop(box)  # Claude Code may run Stop again (stop_hook_active)
    box.settled()
    [write] = box.events("artifact.write")
    assert write["refs"]["change"] == "delete" and write["refs"]["after"] == "absent"
    assert len(box.events("capture.bypass")) == 1
    assert not (box.repo / "notes.txt").exists()
    assert "notes.txt" in box.git("show", "--stat", "HEAD")


def test_a_write_call_that_never_ended_is_recorded_at_stop(box: AgentSandbox) -> None:
    prompt(box, "Patch it")
    tool_input = {"file_path": str(box.repo / "missing.py"), "content": "x = 1\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t9", tool_input=tool_input),
    )
    stop(box)
    box.settled()
    [tool] = box.events("agent.tool")
    assert tool["refs"]["status"] == "unfinished" and tool["refs"]["tool_use_id"] == "t9"
    assert "missing.py" in box.body(tool)
    stop(box)  # not again
    box.settled()
    assert len(box.events("agent.tool")) == 1
