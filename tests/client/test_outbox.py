"""The outbox against a real server: delivered in order, once, and never lost."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowloom.client.http import ServerUnreachableError
from flowloom.client.link import ServerLink
from flowloom.errors import AuthError
from flowloom.events import outbox as spool
from flowloom.sinks.server import send_outbox
from tests.client.conftest import LiveServer

AGENT = {"type": "agent", "id": "claude-code", "name": "Claude Code"}
TS = "2026-11-22T02:40:00.123456Z"


def prompt(text: str, **extra: Any) -> dict[str, Any]:
    meta = {"actor": AGENT, "session": "s-1", "git": {"branch": "main"}}
    return {"kind": "agent.prompt", "meta": meta, "body": text, **extra}


def spool_prompts(link: ServerLink, *texts: str) -> list[str]:
    return [spool.write(link.spool_dir, "claude-code", [prompt(t)], TS) for t in texts]


def sent(server: LiveServer, key: str, kind: str = "agent.prompt") -> list[dict[str, Any]]:
    return [e for e in server.entries(key) if e["kind"] == kind]


def test_events_are_sent_in_order_and_acked(
    server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = server.provision()
    server.start()
    link = link_factory(server, key)
    names = spool_prompts(link, "one", "two", "three")
    report = send_outbox(link)
    assert report.error is None
    assert (report.sent, report.files, report.remaining) == (3, 3, 0)
    assert spool.pending(link.spool_dir) == []
    entries = sent(server, key)
    assert len(entries) == 3
    indices = [e["index"] for e in entries]
    assert indices == sorted(indices) == report.indices
    # the journal knows where each spooled event went, as for the local ledger
    assert [spool.recorded_index(link.spool_dir, n, 0) for n in names] == indices
    envelope = entries[0]["envelope"]
    assert isinstance(envelope, dict)
    assert envelope["ts"] == TS  # the capture time, not the delivery time
    assert envelope["session"] == "s-1"
    assert envelope["refs"]["reported_actor"] == AGENT  # a person's key records as them


def test_a_server_that_is_down_keeps_everything_queued_then_gets_it_in_order(
    server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = server.provision()
    link = link_factory(server, key)
    spool_prompts(link, "first", "second")
    report = send_outbox(link)  # the port is closed: nothing listens yet
    assert isinstance(report.error, ServerUnreachableError)
    assert "cannot reach the FlowLoom server" in report.error.message
    assert key not in report.error.diagnostics()
    assert (report.sent, report.remaining) == (0, 2)
    assert "cannot reach" in (link.trust().load().last_error or "")
    spool_prompts(link, "third")
    server.start()
    spool_prompts(link, "fourth")
    report = send_outbox(link)
    assert report.error is None and report.sent == 4 and report.remaining == 0
    assert link.trust().load().last_error is None
    texts = [server.body(key, int(e["index"])) for e in sent(server, key)]
    assert texts == ["first", "second", "third", "fourth"]  # in order, once each
    flushed_again = send_outbox(link)
    assert flushed_again.sent == 0 and len(sent(server, key)) == 4


def test_a_batch_resent_after_a_lost_answer_is_not_appended_twice(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink], tmp_path: Path
) -> None:
    """The server committed but the answer never arrived: the client sends it again."""
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    names = spool_prompts(link, "alpha", "beta")
    keep = tmp_path / "kept"
    keep.mkdir()
    for name in names:
        shutil.copy(Path(link.spool_dir, name), keep / name)
    first = send_outbox(link)
    size = len(sqlite_server.entries(key))
    # as if the process died after the server's commit, before it journaled and deleted
    for name in names:
        shutil.copy(keep / name, Path(link.spool_dir, name))
    Path(link.spool_dir, "journal").unlink()
    again = send_outbox(link)
    assert again.error is None and again.sent == 2
    assert again.indices == first.indices
    assert len(sqlite_server.entries(key)) == size


def test_redacted_events_are_followed_by_their_redaction_note(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    event = prompt("token [REDACTED:github_token]", redactions={"github_token": 1})
    spool.write(link.spool_dir, "claude-code", [event], TS)
    report = send_outbox(link)
    assert report.error is None
    notes = sent(sqlite_server, key, "redaction.apply")
    client_note = [n for n in notes if n["envelope"]["refs"].get("counts") == {"github_token": 1}]
    assert client_note, notes
    assert client_note[0]["envelope"]["refs"]["entry"] == report.indices[0]


def test_an_event_the_server_refuses_becomes_a_capture_error_and_the_rest_goes_on(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    spool.write(
        link.spool_dir,
        "claude-code",
        [prompt("before"), {"kind": "no.such-kind", "meta": {}, "body": "secret-free"}],
        TS,
    )
    spool_prompts(link, "after")
    report = send_outbox(link)
    assert report.error is None and report.replaced == 1 and report.remaining == 0
    kinds = [e["kind"] for e in sqlite_server.entries(key) if e["index"] in report.indices]
    assert kinds == ["agent.prompt", "capture.error", "agent.prompt"]
    errors = sent(sqlite_server, key, "capture.error")
    assert "no.such-kind" in errors[0]["envelope"]["refs"]["error"]
    assert errors[0]["envelope"]["refs"]["payload_digest"].startswith("sha256:")


def test_an_unreadable_spool_file_is_set_aside_and_reported(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    spool_prompts(link, "one")
    Path(link.spool_dir, "00000000000000000001-0000001-001.json").write_text("{not json")
    report = send_outbox(link)
    assert report.error is None and report.remaining == 0
    assert Path(link.spool_dir, "bad", "00000000000000000001-0000001-001.json").exists()
    kinds = [e["kind"] for e in sqlite_server.entries(key) if e["index"] in report.indices]
    assert kinds == ["capture.error", "agent.prompt"]


def test_a_revoked_key_is_reported_clearly_and_the_events_are_kept(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    user, key = sqlite_server.provision()
    sqlite_server.revoke_keys(user)
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    spool_prompts(link, "kept")
    report = send_outbox(link)
    assert isinstance(report.error, AuthError)
    assert "refused the API key (401)" in report.error.message
    assert key not in report.error.diagnostics()
    assert report.remaining == 1
    _, fresh = sqlite_server.provision()
    report = send_outbox(link_factory(sqlite_server, fresh))
    assert report.error is None and report.sent == 1


def test_an_unknown_project_stops_the_flush_and_keeps_the_events(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key, project="nope")
    spool_prompts(link, "kept")
    report = send_outbox(link)
    assert report.error is not None and report.remaining == 1
    assert report.error.exit_code in (6, 8)


def test_files_pinned_to_a_project_go_to_that_project(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    _, other_key = sqlite_server.provision("beta")
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    spool_prompts(link, "to acme")
    spool.write(link.spool_dir, "cli", [prompt("to beta")], TS, project="beta")
    report = send_outbox(link)
    # the developer has no role on beta: acme's file went, beta's waits (order kept)
    assert report.sent == 1 and report.remaining == 1
    assert report.error is not None and report.error.exit_code in (6, 8)
    report = send_outbox(link_factory(sqlite_server, other_key))
    assert report.error is None and report.sent == 1
    beta = [e for e in sqlite_server.entries(other_key, "beta") if e["kind"] == "agent.prompt"]
    assert len(beta) == 1


def test_large_outboxes_go_in_batches(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    for start in range(0, 1200, 100):
        events = [prompt(f"p{i}") for i in range(start, start + 100)]
        spool.write(link.spool_dir, "claude-code", events, TS)
    lines: list[str] = []
    report = send_outbox(link, observer=lines.append)
    assert report.error is None and report.sent == 1200
    assert len(lines) == 3  # 500 + 500 + 200 events
    entries = sent(sqlite_server, key)
    assert len(entries) == 1200
    assert report.indices == sorted(report.indices)
    assert sqlite_server.body(key, int(entries[-1]["index"])) == "p1199"


def test_sync_never_sends_an_authority_bearing_event(
    server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    """A spool file anyone could write holds a forged approval, signature, hold release
    and role grant: sync replaces each by a capture.error saying where it must be made,
    the rest goes on, and nothing of the forged kinds reaches the server."""
    _, key = server.provision()
    server.start()
    link = link_factory(server, key)
    approver = {"type": "human", "id": "approver@example.com"}
    forged = [
        {"kind": kind, "meta": {"actor": approver, "subject": "D-0123456789"}}
        for kind in ("decision.approve", "signature.apply", "retention.set", "auth.role_granted")
    ]
    spool.write(link.spool_dir, "claude-code", [prompt("before"), *forged], TS)
    spool_prompts(link, "after")
    report = send_outbox(link)
    assert report.error is None and report.replaced == 4 and report.remaining == 0
    kinds = [e["kind"] for e in server.entries(key) if e["index"] in report.indices]
    assert kinds == ["agent.prompt", *["capture.error"] * 4, "agent.prompt"]
    errors = sent(server, key, "capture.error")
    assert "decision.approve events carry authority" in errors[0]["envelope"]["refs"]["error"]
    assert "/decisions/{id}/approve" in errors[0]["envelope"]["refs"]["error"]
    everything = {e["kind"] for e in server.entries(key)}
    assert not everything & {"decision.approve", "signature.apply", "retention.set"}
    assert "auth.role_granted" not in {
        e["kind"] for e in server.entries(key) if e["index"] in report.indices
    }
