"""Auto-commit: each file the agent writes is committed, linked to its decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.capture.autocommit import SUBJECT_LIMIT, commit_message
from flowloom.capture.state import PendingLink, read_pending, write_pending
from tests.capture.agent_sandbox import AgentSandbox


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


def prompt(box: AgentSandbox, text: str) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=text))


def agent_writes(box: AgentSandbox, name: str, text: str, tool_use_id: str) -> None:
    """What Claude Code does for a Write: PreToolUse, the write, PostToolUse."""
    path = box.repo / name
    tool_input = {"file_path": str(path), "content": text}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id=tool_use_id, tool_input=tool_input),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id=tool_use_id,
            tool_input=tool_input,
            tool_response={"filePath": str(path)},
        ),
    )


def trailer(box: AgentSandbox, key: str, rev: str = "HEAD") -> str | None:
    values = [v for k, v in box.trailers(rev) if k == key]
    return values[0] if values else None


def test_only_the_agents_file_is_committed(box: AgentSandbox) -> None:
    box.write("staged.txt", "the developer's staged work\n")
    box.git("add", "staged.txt")
    box.write("README.md", "project\nan unstaged edit\n")
    prompt(box, "Add the config loader")
    agent_writes(box, "loader.py", "def load():\n    pass\n", "t1")
    box.settled()
    assert box.git("show", "--name-only", "--format=", "HEAD").split() == ["loader.py"]
    assert box.git("status", "--porcelain").splitlines() == [" M README.md", "A  staged.txt"]
    artifact = box.events("artifact.write")[0]
    assert trailer(box, "FlowLoom-Entry") == str(artifact["index"])
    assert trailer(box, "FlowLoom-Session") == box.session


def test_one_decision_per_prompt_and_one_commit_per_write(box: AgentSandbox) -> None:
    prompt(box, "Split the module in two")
    agent_writes(box, "a.py", "A = 1\n", "t1")
    agent_writes(box, "b.py", "B = 2\n", "t2")
    prompt(box, "Now document both")
    agent_writes(box, "docs.md", "# a and b\n", "t3")
    box.settled()
    decisions = box.events("decision.record")
    assert len(decisions) == 2
    first, second = (d["subject"] for d in decisions)
    commits = box.commits()[1:]
    assert [trailer(box, "FlowLoom-Decision", c) for c in commits] == [first, first, second]
    prompts = box.events("agent.prompt")
    assert [d["refs"]["prompt_entry"] for d in decisions] == [p["index"] for p in prompts]
    assert decisions[0]["refs"]["files"] == ["a.py"]
    # the pending link names the last write (no git hooks installed here to consume it)
    pending = read_pending(box.state_dir.parent)
    assert pending == PendingLink(
        decision=second,
        session=box.session,
        entry=box.events("artifact.write")[-1]["index"],
        agent="claude-code",
    )


def test_a_decision_recorded_during_the_exchange_is_used(box: AgentSandbox) -> None:
    prompt(box, "Use the decision I am about to record")
    box.settled()
    index = box.record_decision("D-00000000aa", session=box.session)
    write_pending(
        box.state_dir.parent,
        PendingLink(decision="D-00000000aa", session=box.session, entry=index, agent="mcp"),
    )
    agent_writes(box, "x.py", "x = 1\n", "t1")
    box.settled()
    assert trailer(box, "FlowLoom-Decision") == "D-00000000aa"
    assert len(box.events("decision.record")) == 1  # only the explicit one


def test_a_pending_decision_from_before_the_prompt_is_not_reused(box: AgentSandbox) -> None:
    index = box.record_decision("D-00000000bb", session=box.session)
    write_pending(
        box.state_dir.parent,
        PendingLink(decision="D-00000000bb", session=box.session, entry=index, agent="mcp"),
    )
    prompt(box, "Something new")
    agent_writes(box, "y.py", "y = 1\n", "t1")
    box.settled()
    assert trailer(box, "FlowLoom-Decision") != "D-00000000bb"
    assert len(box.events("decision.record")) == 2


def test_policy_can_turn_auto_commit_off(box: AgentSandbox) -> None:
    (box.repo / ".flowloom").mkdir()
    (box.repo / ".flowloom" / "config.toml").write_text("[policy]\nauto_commit = false\n")
    prompt(box, "Write it but do not commit")
    agent_writes(box, "z.py", "z = 1\n", "t1")
    box.settled()
    assert len(box.commits()) == 1
    assert box.kinds() == ["agent.prompt", "artifact.write"]


def test_a_broken_policy_stops_auto_commit_and_says_why(box: AgentSandbox) -> None:
    (box.repo / ".flowloom").mkdir()
    (box.repo / ".flowloom" / "config.toml").write_text("[policy]\nauto_comit = true\n")
    path = box.repo / "z.py"
    path.write_text("z = 1\n")
    tool_input = {"file_path": str(path), "content": "z = 1\n"}
    done = box.hook(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t1",
            tool_input=tool_input,
            tool_response={"filePath": str(path)},
        ),
    )
    told = json.loads(done.stdout)["systemMessage"]  # the user is told, not only the log
    assert "auto-commit skipped" in told and "auto_comit" in told
    box.settled()
    assert len(box.commits()) == 1
    error = box.events("capture.error")[0]
    assert "auto-commit skipped" in error["refs"]["error"]
    assert "auto_comit" in error["refs"]["error"]


def test_no_commit_during_a_merge(box: AgentSandbox) -> None:
    (box.repo / ".git" / "MERGE_HEAD").write_text(box.head() + "\n")
    prompt(box, "Fix the conflict")
    agent_writes(box, "m.py", "m = 1\n", "t1")
    box.settled()
    assert len(box.commits()) == 1
    error = box.events("capture.error")[0]
    assert error["refs"]["error"] == "auto-commit skipped: a merge is in progress"
    assert box.kinds()[:2] == ["agent.prompt", "artifact.write"]


def test_a_failing_pre_commit_hook_is_reported_and_the_pending_link_restored(
    box: AgentSandbox,
) -> None:
    hook = box.repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lint failed: trailing whitespace' >&2\nexit 1\n")
    hook.chmod(0o755)
    prompt(box, "Add a file the linter dislikes")
    agent_writes(box, "bad.py", "x = 1   \n", "t1")
    box.settled()
    assert len(box.commits()) == 1
    error = box.events("capture.error")[0]
    assert "lint failed: trailing whitespace" in error["refs"]["error"]
    assert error["refs"]["files"] == ["bad.py"]
    assert read_pending(box.state_dir.parent) is None


def test_a_file_outside_the_repository_is_recorded_not_committed(box: AgentSandbox) -> None:
    outside = box.root / "elsewhere.txt"
    tool_input = {"file_path": str(outside), "content": "x\n"}
    outside.write_text("x\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t",
            tool_input=tool_input,
            tool_response={},
        ),
    )
    box.settled()
    assert box.events("artifact.write")[0]["subject"] == str(outside)
    assert len(box.commits()) == 1


def test_a_file_holding_a_secret_is_not_committed(box: AgentSandbox) -> None:
    prompt(box, "Add the deploy settings")
    agent_writes(
        box, "deploy.env", "REGION=eu-west-1\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "t1"
    )
    agent_writes(box, "deploy.md", "Deploy with the settings in deploy.env.\n", "t2")
    box.settled()
    assert box.git("show", "--name-only", "--format=", "HEAD").split() == ["deploy.md"]
    error = box.events("capture.error")[0]
    assert error["refs"]["error"].startswith("auto-commit skipped for deploy.env")
    assert "aws_access_key_id" in error["refs"]["error"]
    assert "AKIAIOSFODNN7EXAMPLE" not in box.git("log", "-p")


def test_an_ignored_file_is_recorded_not_committed(box: AgentSandbox) -> None:
    box.write(".gitignore", "build/\n")
    box.git("add", ".gitignore")
    box.git("commit", "-q", "-m", "ignore build")
    agent_writes(box, "build/out.txt", "generated\n", "t1")
    box.settled()
    assert box.events("artifact.write")[0]["subject"] == "build/out.txt"
    assert box.events("capture.error") == []
    assert len(box.commits()) == 2


def test_the_commit_subject_is_the_prompts_first_line_at_most_72_chars() -> None:
    long_prompt = "Please " + "refactor the payment retry logic " * 5 + "\nsecond line"
    subject, body = commit_message(long_prompt, ["pay.py"], "claude-code")
    assert len(subject) == SUBJECT_LIMIT and subject.endswith("…")
    assert body == "Written by Claude Code: pay.py\nAuto-committed by FlowLoom."
    assert commit_message("\n\n  \n", ["a.py", "b.py"], "codex")[0] == "Update a.py, b.py"


def test_auto_commits_pass_enforcing_git_hooks_and_are_linked(box: AgentSandbox) -> None:
    """With `flowloom init` (enforcement on), the auto-commit is accepted and linked."""
    box.init("--agent", "claude-code")
    prompt(box, "Add the retry helper (PAY-7)")
    agent_writes(box, "retry.py", "def retry():\n    pass\n", "t1")
    box.settled()
    decision = box.events("decision.record")[0]["subject"]
    assert trailer(box, "FlowLoom-Decision") == decision
    links = box.events("commit.link")
    assert links and links[-1]["subject"] == box.head()
    assert links[-1]["refs"]["decision"] == decision
    assert read_pending(box.state_dir.parent) is None  # post-commit consumed it
