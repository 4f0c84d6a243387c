"""`flowloom status` counts the auto-commits waiting in `<state>/commits/` and is loud
when one is stuck (no drainer made it): the agent's write would stay uncommitted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowloom.capture.health import STUCK_COMMIT_S
from flowloom.events import outbox
from tests.capture.agent_sandbox import AgentSandbox
from tests.capture.test_autocommit import agent_writes, prompt


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    box.init("--agent", "claude-code")
    box.settled()
    return box


def _age(box: AgentSandbox, name: str, seconds: float) -> str:
    """Make commit request `name` as old as `seconds` (its written time); that time."""
    path = box.state_dir / "commits" / name
    record = json.loads(path.read_text("utf-8"))
    then = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - seconds))
    record["created"] = then
    path.write_text(json.dumps(record), "utf-8")
    return then


def test_a_waiting_commit_is_counted_and_a_stuck_one_is_loud(box: AgentSandbox) -> None:
    prompt(box, "Add a greeting")
    box.settled()
    # The test holds the drainers' lock: the hooks start no drainer, as when one died.
    lock = outbox.drain_lock(str(box.spool_dir))
    assert lock.acquired
    try:
        agent_writes(box, "hello.py", "print('hi')\n", "t1")
        [request] = box.commit_requests()

        young = box.flowloom("status", "--json")
        assert young.returncode == 0, young.stdout  # waiting a moment is normal
        queue = json.loads(young.stdout)["capture"]["commits"]
        assert queue["requests"] == 1 and queue["stuck"] is False
        assert "commit queue: 1 auto-commits waiting" in box.ok("status")

        then = _age(box, request, STUCK_COMMIT_S + 600)
        data = json.loads(box.flowloom("status", "--json").stdout)
        assert data["ok"] is False
        assert data["capture"]["commits"]["oldest"] == then
        assert data["capture"]["commits"]["stuck"] is True
        warned = box.warned()
        assert "1 auto-commit requests are waiting" in warned
        assert f"the oldest since {then}" in warned
    finally:
        lock.__exit__()

    box.flowloom("drain", str(box.spool_dir), str(box.repo))
    box.settled()
    assert box.commit_requests() == []
    assert len(box.commits()) == 3  # initial, init's, the agent's write
    assert "commit queue: empty" in box.ok("status")
