"""Auto-push through the durable, ordered retry queue, against a real bare remote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox

POLICY = "[policy]\nauto_commit = true\nauto_push = true\n"


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    remote = tmp_path / "remote.git"
    box.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)])
    box.run(["git", "-C", str(remote), "config", "core.logAllRefUpdates", "always"])
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    box.git("remote", "add", "origin", str(remote))
    box.git("push", "-q", "-u", "origin", "main")
    (box.repo / ".flowloom").mkdir()
    (box.repo / ".flowloom" / "config.toml").write_text(POLICY)
    return box


def agent_writes(box: AgentSandbox, name: str, tool_use_id: str) -> None:
    path = box.repo / name
    tool_input = {"file_path": str(path), "content": f"{name}\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id=tool_use_id, tool_input=tool_input),
    )
    path.write_text(f"{name}\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id=tool_use_id,
            tool_input=tool_input,
            tool_response={},
        ),
    )


def remote_head(box: AgentSandbox) -> str:
    return box.git("ls-remote", "origin", "refs/heads/main").split()[0]


def queue(box: AgentSandbox) -> list[dict[str, object]]:
    directory = box.state_dir / "push-queue"
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def test_each_auto_commit_is_pushed(box: AgentSandbox) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="Add one file"))
    agent_writes(box, "one.txt", "t1")
    box.settled()
    assert remote_head(box) == box.head()
    assert queue(box) == []


def test_pushes_wait_while_the_remote_is_away_and_go_out_in_order(
    box: AgentSandbox, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    away = tmp_path / "remote-away.git"
    pushed_before = remote_head(box)
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="Add three files"))

    remote.rename(away)  # the remote is unreachable
    agent_writes(box, "one.txt", "t1")
    agent_writes(box, "two.txt", "t2")
    box.settled()
    waiting = queue(box)
    assert [entry["sha"] for entry in waiting] == box.commits()[1:]
    # the drainer retried the head of the queue; nothing behind it was tried out of order
    assert int(str(waiting[0]["attempts"])) >= 1 and waiting[1]["attempts"] == 0
    assert "does not appear to be a git repository" in str(waiting[0]["last_error"])

    agent_writes(box, "three.txt", "t3")  # still away: queued behind the others
    box.settled()
    assert len(queue(box)) == 3

    away.rename(remote)  # back: the next hook run of any kind pushes the queue, in order
    box.hook_ok("claude-code", box.claude("Stop", last_assistant_message="done"))
    box.settled()
    assert queue(box) == []
    assert remote_head(box) == box.head()
    updates = box.run(
        ["git", "-C", str(remote), "reflog", "show", "--format=%H", "refs/heads/main"]
    ).stdout.split()
    assert list(reversed(updates)) == [pushed_before, *box.commits()[1:]]


def test_a_rejected_push_is_set_aside_and_reported(box: AgentSandbox, tmp_path: Path) -> None:
    other = tmp_path / "other"
    box.run(["git", "clone", "-q", str(tmp_path / "remote.git"), str(other)])
    (other / "theirs.txt").write_text("someone else's work\n")
    box.run(["git", "-C", str(other), "add", "theirs.txt"])
    box.run(["git", "-C", str(other), "commit", "-q", "-m", "theirs"])
    box.run(["git", "-C", str(other), "push", "-q", "origin", "main"])

    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="Add mine"))
    agent_writes(box, "mine.txt", "t1")
    box.settled()
    assert queue(box) == []
    failed = list((box.state_dir / "push-queue" / "failed").glob("*.json"))
    assert len(failed) == 1
    error = next(e for e in box.events("capture.error") if e["subject"] == "auto-push")
    assert "rejected" in error["refs"]["error"]
    assert error["refs"]["queue_entry"] == failed[0].name


def test_without_a_remote_auto_push_says_why(tmp_path: Path) -> None:
    box = AgentSandbox(tmp_path)
    (box.repo / ".flowloom").mkdir()
    (box.repo / ".flowloom" / "config.toml").write_text(POLICY)
    agent_writes(box, "one.txt", "t1")
    box.settled()
    assert len(box.commits()) == 1
    error = box.events("capture.error")[0]
    assert error["refs"]["error"].startswith("auto-push skipped: the branch has no upstream")
