"""What capture leaves behind: failed tool calls recorded, paths kept readable, no clear
copies of old file contents, private ledger files, scratch cleaned."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from flowloom.capture.agents.common import locate
from flowloom.capture.agents.snapshots import MAX_AGE_S, sweep
from tests.capture.agent_sandbox import AgentSandbox

SECRET = "sk-ant-api03-" + "Zq7Xw2Lm9Pv4Rt8Yb1Nc6Hd3Kf5Gj0" * 3


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_failed_tool_call_is_recorded_with_its_error(box: AgentSandbox) -> None:
    """PostToolUseFailure: what Claude Code sends when a tool fails or is interrupted."""
    tool_input = {"command": "pytest -q", "description": "Run the tests"}
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUseFailure",
            tool_name="Bash",
            tool_use_id="toolu_9",
            tool_input=tool_input,
            error="Command failed with exit code 1: 2 failed, 3 passed",
            is_interrupt=False,
        ),
    )
    target = box.repo / "locked.txt"
    write_input = {"file_path": str(target), "content": "x"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t2", tool_input=write_input),
    )
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUseFailure",
            tool_name="Write",
            tool_use_id="t2",
            tool_input=write_input,
            error="The user interrupted the tool call",
            is_interrupt=True,
        ),
    )
    box.settled()
    failed, interrupted = box.events("agent.tool")
    assert (failed["subject"], failed["refs"]["status"]) == ("Bash", "error")
    assert "interrupted" not in failed["refs"]
    assert json.loads(box.body(failed)) == {
        "tool": "Bash",
        "input": tool_input,
        "response": "Command failed with exit code 1: 2 failed, 3 passed",
    }
    assert interrupted["refs"]["status"] == "error" and interrupted["refs"]["interrupted"] is True
    assert box.events("artifact.write") == [] and len(box.commits()) == 1
    assert not list((box.state_dir / "sessions").rglob("*.bin"))  # its before-image is gone


def test_paths_are_not_taken_for_secrets(box: AgentSandbox) -> None:
    """A transcript path is long and mixed (a project directory, a session UUID); the
    entropy rule must not turn it into `.[REDACTED:high_entropy].jsonl`."""
    transcript = (
        "/home/ann/.claude/projects/-home-Ann-Work2024-PaymentsQ3Refactor/"
        "3f0c9c3e-5b7a-4d1e-9a51-7c2f0e8d4b61.jsonl"
    )
    box.hook_ok(
        "claude-code",
        box.claude("SessionStart", source="startup", transcript_path=transcript),
    )
    box.settled()
    [start] = box.events("session.start")
    assert start["refs"]["transcript_path"] == transcript
    assert start["refs"]["cwd"] == str(box.repo)
    assert box.events("redaction.apply") == []
    # A secret in a path-valued ref is still caught by its known shape.
    box.hook_ok(
        "claude-code",
        box.claude("SessionStart", source="resume", transcript_path=f"/tmp/{SECRET}.jsonl"),
    )
    box.settled()
    assert box.events("session.start")[1]["refs"]["transcript_path"] == (
        "/tmp/[REDACTED:anthropic_key].jsonl"
    )


def test_before_images_are_never_kept_in_clear(box: AgentSandbox) -> None:
    env_file = box.repo / "settings.env"
    env_file.write_text(f"API_KEY={SECRET}\nDEBUG=1\n")
    write_input = {"file_path": str(env_file), "content": "DEBUG=1\n"}
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="Drop the key"))
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=write_input),
    )
    [image] = list((box.state_dir / "sessions").rglob("*.bin"))
    assert SECRET.encode() not in image.read_bytes()
    assert b"DEBUG=1" not in image.read_bytes()
    assert mode(image) == 0o600
    [key] = list((box.runtime_dir / "flowloom").iterdir())
    assert mode(key) == 0o600 and mode(key.parent) == 0o700
    assert not str(key).startswith(str(box.repo))

    env_file.write_text("DEBUG=1\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t1",
            tool_input=write_input,
            tool_response={"filePath": str(env_file)},
        ),
    )
    box.settled()
    # The diff came from the decrypted image (and was redacted like any diff).
    [artifact] = box.events("artifact.write")
    assert artifact["refs"]["change"] == "modify" and artifact["refs"]["removed"] == 1
    assert "-API_KEY=[REDACTED:anthropic_key]" in box.body(artifact)
    assert SECRET.encode() not in box.capture_state_bytes()

    # A PreToolUse whose PostToolUse never comes: Stop deletes the image, shreds the key.
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t2", tool_input=write_input),
    )
    assert list((box.state_dir / "sessions").rglob("*.bin"))
    box.hook_ok("claude-code", box.claude("Stop", stop_hook_active=False))
    box.settled()
    assert not list((box.state_dir / "sessions").rglob("*.bin"))
    assert list((box.runtime_dir / "flowloom").iterdir()) == []


def test_a_before_image_without_its_key_is_not_used(box: AgentSandbox) -> None:
    target = box.repo / "a.txt"
    target.write_text("old\n")
    write_input = {"file_path": str(target), "content": "new\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=write_input),
    )
    for key in (box.runtime_dir / "flowloom").iterdir():
        key.unlink()  # swept, or the machine rebooted (runtime directories are tmpfs)
    target.write_text("new\n")
    box.hook_ok(
        "claude-code",
        box.claude(
            "PostToolUse",
            tool_name="Write",
            tool_use_id="t1",
            tool_input=write_input,
            tool_response={"filePath": str(target)},
        ),
    )
    box.settled()
    [artifact] = box.events("artifact.write")
    assert artifact["refs"]["before"] == "unknown"
    assert not list((box.state_dir / "sessions").rglob("*.bin"))


def test_old_scratch_is_swept_by_age(box: AgentSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    target = box.repo / "a.txt"
    target.write_text("old\n")
    write_input = {"file_path": str(target), "content": "new\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=write_input),
    )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(box.runtime_dir))
    state = locate(str(box.repo)).state_dir
    sweep(state, now=time.time() + 60)
    assert list((box.state_dir / "sessions").rglob("*.bin"))  # young: kept
    sweep(state, now=time.time() + MAX_AGE_S + 60)
    assert not list((box.state_dir / "sessions").rglob("*.bin"))
    assert list((box.runtime_dir / "flowloom").iterdir()) == []


def test_a_shared_key_directory_someone_else_could_enter_is_refused(
    box: AgentSandbox,
) -> None:
    (box.runtime_dir / "flowloom").mkdir(mode=0o755)
    os.chmod(box.runtime_dir / "flowloom", 0o755)
    target = box.repo / "a.txt"
    target.write_text("old secret\n")
    write_input = {"file_path": str(target), "content": "new\n"}
    box.hook_ok(
        "claude-code",
        box.claude("PreToolUse", tool_name="Write", tool_use_id="t1", tool_input=write_input),
    )
    assert not list((box.state_dir / "sessions").rglob("*.bin"))  # nothing kept at all
    assert list((box.runtime_dir / "flowloom").iterdir()) == []


def test_the_ledger_and_capture_state_are_private(box: AgentSandbox) -> None:
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="hello"))
    box.settled()
    for directory in (box.state_dir, box.state_dir / "spool", box.state_dir / "sessions"):
        assert mode(directory) == 0o700, directory
    db = box.state_dir / "ledger.db"
    assert mode(db) == 0o600
    for suffix in ("-wal", "-shm"):
        extra = Path(str(db) + suffix)
        if extra.exists():
            assert mode(extra) == 0o600, extra
