"""`flowloom sync` and the agent hooks with a server configured, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox
from tests.client.conftest import PROJECT, LiveServer


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    return AgentSandbox(tmp_path)


def connect(box: AgentSandbox, server: LiveServer, key: str) -> None:
    box.env.update(
        {"FLOWLOOM_SERVER": server.url, "FLOWLOOM_API_KEY": key, "FLOWLOOM_PROJECT": PROJECT}
    )


def prompts(server: LiveServer, key: str) -> list[str]:
    return [
        server.body(key, int(e["index"]))
        for e in server.entries(key)
        if e["kind"] == "agent.prompt"
    ]


def test_a_claude_code_prompt_goes_to_the_server(server: LiveServer, box: AgentSandbox) -> None:
    _, key = server.provision()
    server.start()
    connect(box, server, key)
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="hello, server"))
    box.settled()
    assert prompts(server, key) == ["hello, server"]
    [entry] = [e for e in server.entries(key) if e["kind"] == "agent.prompt"]
    envelope = entry["envelope"]
    assert isinstance(envelope, dict)
    assert envelope["session"] == box.session
    assert envelope["refs"]["reported_actor"]["id"] == "claude-code"
    assert not (box.state_dir / "ledger.db").exists()  # nothing went to a local ledger


def test_hooks_spool_while_the_server_is_down_and_sync_delivers_in_order(
    sqlite_server: LiveServer, box: AgentSandbox
) -> None:
    _, key = sqlite_server.provision()
    connect(box, sqlite_server, key)
    for text in ("first", "second"):
        box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt=text))
        box.drained()
    assert len(box.spooled()) == 2
    assert "cannot reach the FlowLoom server" in (box.state_dir / "capture.log").read_text()
    status = box.ok("sync", "status")
    assert "outbox: 2 spool file(s) waiting" in status
    assert "cannot reach" in status
    down = box.flowloom("sync")
    assert down.returncode == 9, down.stderr
    assert "2 spool file(s) still queued" in down.stdout
    sqlite_server.start()
    out = box.ok("sync")
    assert "sent 2 event(s)" in out
    assert "pinned the log's key" in out and "trust on first use" in out
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="third"))
    box.settled()
    assert prompts(sqlite_server, key) == ["first", "second", "third"]
    out = box.ok("sync")
    assert "nothing to send" in out and "consistent with checkpoint" in out
    info = json.loads(box.ok("sync", "status", "--json"))
    assert info["waiting"] == 0 and info["alarm"] is None and info["last_error"] is None
    assert key not in box.ok("sync", "status") + json.dumps(info)


def test_sync_reports_a_server_that_rewrote_history(
    server: LiveServer, other_database: str, box: AgentSandbox, tmp_path: Path
) -> None:
    _, key = server.provision()
    server.start()
    connect(box, server, key)
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="on record"))
    box.settled()
    assert "verified" in box.ok("sync")  # the drainer pinned the key after sending
    server.stop()
    other = LiveServer(tmp_path, other_database, port=server.port)
    try:
        _, other_key = other.provision()
        other.start()
        connect(box, other, other_key)
        result = box.flowloom("sync", "--check-only")
        assert result.returncode == 1, result.stderr
        assert "the server rewrote history" in result.stderr
        assert "Traceback" not in result.stderr
        assert "ALARM: " in box.ok("sync", "status")
        # events captured meanwhile stay queued, not sent to the suspect server
        box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="held"))
        box.drained()
        assert len(box.spooled()) == 1
        assert box.flowloom("sync").returncode == 1
        repinned = box.ok("sync", "--repin")
        assert "forgot the pinned key" in repinned and "sent 1 event(s)" in repinned
        assert prompts(other, other_key) == ["held"]
    finally:
        other.stop()


def test_a_revoked_key_is_reported_and_the_events_kept(
    sqlite_server: LiveServer, box: AgentSandbox
) -> None:
    user, key = sqlite_server.provision()
    sqlite_server.start()
    connect(box, sqlite_server, key)
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="kept"))
    box.settled()
    sqlite_server.revoke_keys(user)
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="after revocation"))
    box.drained()
    assert len(box.spooled()) == 1
    result = box.flowloom("sync")
    assert result.returncode == 7, result.stderr
    assert "refused the API key (401)" in result.stderr
    assert key not in result.stderr + result.stdout
    _, fresh = sqlite_server.provision()
    box.env["FLOWLOOM_API_KEY"] = fresh
    assert "sent 1 event(s)" in box.ok("sync")
    assert prompts(sqlite_server, fresh) == ["kept", "after revocation"]


def test_sync_without_a_server_or_key_says_what_to_set(box: AgentSandbox) -> None:
    result = box.flowloom("sync")
    assert result.returncode == 5
    assert "no server is configured" in result.stderr and "FLOWLOOM_SERVER" in result.stderr
    assert "server: none configured" in box.ok("sync", "status")
    result = box.flowloom("sync", env={"FLOWLOOM_SERVER": "http://127.0.0.1:9"})
    assert result.returncode == 5 and "no API key" in result.stderr
    result = box.flowloom("sync", env={"FLOWLOOM_SERVER": "ftp://example"})
    assert result.returncode == 5 and "not an http(s) URL" in result.stderr


def test_the_hook_stays_light_with_a_server_configured(
    sqlite_server: LiveServer, box: AgentSandbox
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    connect(box, sqlite_server, key)
    payload = json.dumps(box.claude("UserPromptSubmit", prompt="light")).encode()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flowloom", "hook", "claude-code"],
        input=payload,
        cwd=box.repo,
        env=box.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout == b""
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    for heavy in ("click", "cryptography", "psycopg", "sqlite3", "flowloom.client.http"):
        assert heavy not in imported, heavy
    box.settled()
    assert prompts(sqlite_server, key) == ["light"]


def test_an_agents_file_write_is_auto_committed_and_recorded_on_the_server(
    sqlite_server: LiveServer, box: AgentSandbox
) -> None:
    from tests.capture.test_autocommit import agent_writes, trailer

    _, key = sqlite_server.provision()
    sqlite_server.start()
    connect(box, sqlite_server, key)
    box.init()  # git hooks, policy (committed under an override, recorded on the server)
    agent_writes(box, "loader.py", "def load():\n    pass\n", "t1")
    box.settled()
    assert len(box.commits()) == 2  # auto-commit works in server mode (docs/sync.md)
    assert box.git("status", "--porcelain") == ""
    decision = trailer(box, "FlowLoom-Decision")
    recorded = sqlite_server.entries(key)
    kinds = [e["kind"] for e in recorded]
    assert "artifact.write" in kinds and "decision.record" in kinds and "commit.link" in kinds
    [link] = [
        e for e in recorded if e["kind"] == "commit.link" and e["envelope"]["subject"] == box.head()
    ]
    assert link["envelope"]["refs"]["decision"] == decision
    [record] = [e for e in recorded if e["kind"] == "decision.record"]
    [write] = [e for e in recorded if e["kind"] == "artifact.write"]
    assert write["index"] < record["index"] < link["index"]  # in order
    assert not (box.state_dir / "ledger.db").exists()


def test_a_commit_asked_for_while_a_drainer_only_sends_is_still_made(
    sqlite_server: LiveServer, box: AgentSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: a drainer started with no commit waiting chooses to only send; the
    agent's write hook then spools its events, asks for the commit, and finds the lock
    held (so it starts no drainer); the drainer sends those events and must not end
    with the request left waiting. The hook is run, for real, at the moment the drainer
    sends (the real send then follows), so the interleaving is the same every run."""
    import flowloom.sinks.server as server_sink
    from flowloom import drainer
    from flowloom.events.outbox import drain_lock
    from tests.capture.test_autocommit import agent_writes

    _, key = sqlite_server.provision()
    sqlite_server.start()
    connect(box, sqlite_server, key)
    box.init()
    box.settled()
    for name, value in box.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(box.repo)
    real_send = server_sink.send_outbox
    hooked: list[bool] = []

    def send_after_the_hook(link: object, **kwargs: object) -> object:
        if not hooked:
            hooked.append(True)
            agent_writes(box, "loader.py", "def load():\n    pass\n", "t1")
            assert box.commit_requests(), "the hook asked for no commit"
        return real_send(link, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(server_sink, "send_outbox", send_after_the_hook)
    lock = drain_lock(str(box.spool_dir))  # as `kick` hands it to the drainer
    assert lock.acquired and lock._fd is not None
    fd, lock._fd = lock._fd, None
    box.hook_ok("claude-code", box.claude("UserPromptSubmit", prompt="Add a loader"))
    code = drainer.main([str(box.spool_dir), str(box.repo), "--lock-fd", str(fd)])
    log = box.state_dir / "capture.log"
    assert code == 0, log.read_text() if log.exists() else "-"
    assert hooked
    assert box.commit_requests() == []  # not left for the next hook
    box.settled()
    assert len(box.commits()) == 2
    assert box.git("status", "--porcelain") == ""
    kinds = [e["kind"] for e in sqlite_server.entries(key)]
    assert "decision.record" in kinds and "commit.link" in kinds
