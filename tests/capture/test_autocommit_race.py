"""A commit given up after the turn's end returned is still told to the agent's user.

The race: at the turn's end (Stop) a drainer holds the outbox lock, so the hook leaves
the commit to it and answers at once; the drainer then fails (the ledger cannot be
written) and a later hook, maybe one whose answer nobody sees, gives the commit up. The
drainer at work is simulated by holding its lock here; its failure by freezing the
ledger and logging as it does.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowloom.capture.agents.common import Capture, locate
from flowloom.capture.autocommit import defer_if_busy, jobs_dir
from flowloom.events.outbox import SpoolLock, drain_lock, pending
from tests.capture.agent_sandbox import AgentSandbox
from tests.capture.test_autocommit import agent_writes, prompt


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


@pytest.fixture
def drainer_at_work(box: AgentSandbox) -> Iterator[SpoolLock]:
    """The outbox lock, held as a drainer at work holds it (hooks then start none)."""
    prompt(box, "Add the module")
    box.settled()  # the ledger exists
    lock = drain_lock(str(box.spool_dir))
    assert lock.acquired
    try:
        yield lock
    finally:
        lock.__exit__()


def _freeze(box: AgentSandbox) -> Callable[[], None]:
    """Make the ledger's files unwritable, for root too (`chattr +i`); the undo."""
    paths = [str(p) for p in sorted(box.state_dir.glob("ledger.db*"))]
    if os.geteuid() != 0:
        for path in paths:
            os.chmod(path, 0o400)
        return lambda: [os.chmod(path, 0o600) for path in paths] and None
    done = subprocess.run(["chattr", "+i", *paths], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
    return lambda: subprocess.run(["chattr", "-i", *paths], check=True) and None


def _notice(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().strip()
    return str(json.loads(out).get("systemMessage", "")) if out else ""


def _fail_drain(box: AgentSandbox, lock: SpoolLock) -> None:
    """What the drainer at work does when the ledger cannot be written: log, let go."""
    with open(box.state_dir / "capture.log", "a", encoding="utf-8") as fh:
        fh.write("2026-01-01T00:00:00Z drain stopped: cannot write the ledger\n")
    lock.__exit__()


def test_a_turn_end_does_not_leave_its_commit_to_a_drainer_bound_to_fail(
    box: AgentSandbox, drainer_at_work: SpoolLock
) -> None:
    agent_writes(box, "a.py", "a = 1\n", "t1")
    jobs = jobs_dir(str(box.state_dir))
    assert len(pending(jobs)) == 1  # the commit waits for the drainer at work
    place = locate(str(box.repo))
    thaw = _freeze(box)
    try:
        # The ledger visibly cannot be written: the turn's end finishes the commits
        # itself (and so tells its user), rather than leave them to the drainer.
        assert defer_if_busy(place, "claude-code", Capture(box.session), None) is False
        assert len(pending(jobs)) == 1
    finally:
        thaw()
    # A healthy ledger: the turn's end waits, durably, behind the drainer at work.
    assert defer_if_busy(place, "claude-code", Capture(box.session), None) is True
    assert len(pending(jobs)) == 2


def test_a_commit_lost_after_a_deferred_turn_end_is_told_by_the_sessions_next_hook(
    box: AgentSandbox, drainer_at_work: SpoolLock
) -> None:
    agent_writes(box, "a.py", "a = 1\n", "t1")
    stop = box.hook("claude-code", box.claude("Stop", last_assistant_message="Added."))
    assert _notice(stop) == ""  # deferred: nothing has gone wrong yet
    assert len(box.commit_requests()) == 2  # the commit, then the turn's end behind it
    thaw = _freeze(box)
    try:
        _fail_drain(box, drainer_at_work)
        # The session's end (its answer is shown to nobody) gives the commit up.
        end = box.hook("claude-code", box.claude("SessionEnd", reason="other"))
        assert "cannot open the ledger" in _notice(end)
        assert box.commit_requests() == []
        box.drained()
    finally:
        thaw()
    # Resumed, the session's next prompt tells its user; once.
    resumed = box.hook("claude-code", box.claude("UserPromptSubmit", prompt="Go on"))
    assert "auto-commit skipped: cannot open the ledger" in _notice(resumed)
    assert _notice(box.hook("claude-code", box.claude("Stop", last_assistant_message="."))) == ""
    box.settled()
    assert len(box.commits()) == 1  # not committed under another prompt
    errors = [e["refs"] for e in box.events("capture.error")]
    assert [e.get("files") for e in errors if "auto-commit" in e["error"]] == [["a.py"]], errors
    assert "agent.response" in box.kinds()


def test_a_commit_the_drainer_cannot_make_is_told_by_the_sessions_next_hook(
    box: AgentSandbox,
) -> None:
    (box.repo / ".git" / "MERGE_HEAD").write_text(box.head() + "\n")
    prompt(box, "Fix the conflict")
    agent_writes(box, "m.py", "m = 1\n", "t1")
    box.settled()  # the drainer found the merge and made no commit
    stop = box.hook("claude-code", box.claude("Stop", last_assistant_message="Fixed."))
    assert "auto-commit skipped: a merge is in progress" in _notice(stop)
    assert _notice(box.hook("claude-code", box.claude("Stop", last_assistant_message="."))) == ""


def test_a_commit_asked_for_as_a_drainer_finds_nothing_to_do_is_still_made(
    box: AgentSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: a drainer holding the lock finds no commit waiting; the agent's write
    hook then asks for one and finds the lock held (so it starts no drainer); the
    drainer lets the lock go and must look again rather than end. The hook is run, for
    real, right after the drainer's look at the queue, so the interleaving is fixed."""
    import flowloom.events.outbox as outbox
    from flowloom import drainer

    prompt(box, "Add the module")
    box.settled()
    for name, value in box.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(box.repo)
    jobs = jobs_dir(str(box.state_dir))
    real_pending = outbox.pending
    hooked: list[bool] = []

    def hook_after_the_look(directory: str) -> list[str]:
        seen = real_pending(directory)
        if directory == jobs and not hooked:
            hooked.append(True)
            agent_writes(box, "a.py", "a = 1\n", "t1")
            assert real_pending(jobs), "the hook asked for no commit"
        return seen

    monkeypatch.setattr(outbox, "pending", hook_after_the_look)
    lock = drain_lock(str(box.spool_dir))  # as `kick` hands it to the drainer
    assert lock.acquired and lock._fd is not None
    fd, lock._fd = lock._fd, None
    code = drainer.main([str(box.spool_dir), str(box.repo), "--lock-fd", str(fd)])
    log = box.state_dir / "capture.log"
    assert code == 0, log.read_text() if log.exists() else "-"
    assert hooked
    assert box.commit_requests() == []  # not left for the next hook
    box.settled()
    assert len(box.commits()) == 2
    assert box.git("status", "--porcelain") == ""
