"""Reading the team's record in server mode: HTTP MCP, pending events, freshness, and the
commands whose record lives on the server (retention, anchors, report responses).

One team for the module (two real clones of one bare origin, a real server subprocess on
loopback over SQLite), so the set-up is paid once; each test leaves the server running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest

from tests.client.conftest import PROJECT, LiveServer
from tests.client.test_team_record import Dev, assemble_team


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dev, Dev, LiveServer]]:
    from tests.support.sshkeys import require_ssh_keygen

    require_ssh_keygen()
    tmp = tmp_path_factory.mktemp("team-reads")
    server = LiveServer(tmp, str(tmp / "server.db"))
    try:
        ann, bob, _ = assemble_team(tmp, server)
        yield ann, bob, server
    finally:
        server.stop()


SLOW = pytest.mark.slow  # the module's team (two clones, a server): about a minute to set up


def server_entries(server: LiveServer, key: str) -> list[dict[str, Any]]:
    return [e["envelope"] for e in server.entries(key)]


@SLOW
def test_http_mcp_reads_and_records_the_teams_record(
    crew: tuple[Dev, Dev, LiveServer],
) -> None:
    """Bob serves MCP over HTTP in his clone: a teammate's decision recorded while it
    runs is seen by the next call, and what a caller records lands on the server."""
    from flowloom.auth.directory import Directory
    from flowloom.config import load_settings
    from tests.mcp.world import World, data, http_client, http_server

    ann, bob, server = crew
    first = ann.ok("decide", "--title", "Serve the team record over HTTP MCP").strip()
    settings = load_settings(bob.box.repo, bob.box.env)
    directory = Directory(settings.database)
    try:
        directory.create_project(settings.project)
        user = directory.create_user("mcp@example.com", "Mia MCP")
        directory.grant(user.id, settings.project, "developer")
        _, key = directory.create_key(user.id, name="mcp")
    finally:
        directory.close()
    world = cast(World, SimpleNamespace(repo=bob.box.repo, box=bob.box))

    with http_server(world) as running:

        async def talk() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            async with http_client(running.url, key) as client:
                seen = data(await client.call_tool("get_decision", {"id": first}))
                later = ann.ok("decide", "--title", "Recorded while the MCP server runs")
                fresh = data(await client.call_tool("get_decision", {"id": later.strip()}))
                recorded = data(
                    await client.call_tool(
                        "record_decision", {"title": "Recorded over HTTP MCP", "rationale": "x"}
                    )
                )
                return seen, fresh, recorded

        seen, fresh, recorded = asyncio.run(talk())
    assert seen["title"] == "Serve the team record over HTTP MCP"
    assert fresh["title"] == "Recorded while the MCP server runs"
    [stored] = [
        e
        for e in server_entries(server, bob.key)
        if e["kind"] == "decision.record" and e["subject"] == recorded["id"]
    ]
    # The server says who sent it (Bob's server key); the MCP caller is a claim.
    assert stored["actor"]["id"] == bob.user_id
    assert stored["refs"]["reported_actor"]["id"] == user.id
    # Nothing of it went to Bob's local ledger's log (only the directory's own events).
    local = [e["kind"] for e in bob.box.events()]
    assert "decision.record" not in local


@SLOW
def test_own_queued_events_show_on_reads_marked_pending(
    crew: tuple[Dev, Dev, LiveServer],
) -> None:
    ann, _, server = crew
    server.stop()
    try:
        queued = ann.run("decide", "--title", "Decided on the train", "--rationale", "offline")
        assert queued.returncode == 0, queued.stderr
        decision = queued.stdout.strip()
        shown = ann.run("decision", "show", decision, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["title"] == "Decided on the train"
        assert "may be stale" in shown.stderr
        assert "queued in the outbox" in shown.stderr
        assert "pending, not yet on the server" in shown.stderr
        found = ann.run("search", "train")
        assert found.returncode == 0 and decision in found.stdout, found.stderr
    finally:
        server.start()
    assert "sent" in ann.ok("sync")
    shown = ann.run("decision", "show", decision)
    assert shown.returncode == 0 and "Decided on the train" in shown.stdout
    assert "pending" not in shown.stderr and "stale" not in shown.stderr
    titles = [
        e["refs"]["title"]
        for e in server_entries(server, ann.key)
        if e["kind"] == "decision.record"
    ]
    assert titles.count("Decided on the train") == 1
    # The overlay never touched the mirror, and left no file behind.
    servers = ann.box.state_dir / "servers"
    assert not [p for p in servers.iterdir() if ".pending-" in p.name]


@SLOW
def test_a_freshness_window_answers_from_the_copy_as_of_its_time(
    crew: tuple[Dev, Dev, LiveServer],
) -> None:
    _, bob, server = crew
    decision = bob.ok("decide", "--title", "Read within the window").strip()
    window = {"FLOWLOOM_SERVER_FRESH_SECONDS": "3600"}
    bob.box.flowloom("decision", "show", decision, env={**bob.box.env, **window})
    server.stop()
    try:
        inside = bob.box.flowloom("decision", "show", decision, env={**bob.box.env, **window})
        assert inside.returncode == 0, inside.stderr
        assert "Read within the window" in inside.stdout
        assert "as of" in inside.stderr and "within fresh_seconds" in inside.stderr
        assert "stale" not in inside.stderr  # the server was not asked
        asked = bob.run("decision", "show", decision)  # no window: asks, and says so
        assert asked.returncode == 0 and "may be stale" in asked.stderr
    finally:
        server.start()
    bad = bob.box.flowloom(
        "decision", "show", decision, env={**bob.box.env, "FLOWLOOM_SERVER_FRESH_SECONDS": "x"}
    )
    assert bad.returncode != 0 and "fresh_seconds" in bad.stderr


@SLOW
def test_retention_anchors_and_responses_go_to_the_server_or_are_refused(
    crew: tuple[Dev, Dev, LiveServer],
) -> None:
    ann, _, server = crew
    admin_id, admin_key = server.provision(role="admin")
    admin_env = {**ann.box.env, "FLOWLOOM_API_KEY": admin_key}

    def as_admin(*args: str) -> Any:
        return ann.box.flowloom(*args, env=admin_env)

    anchored = ann.run("anchor", "tsa", "--url", "http://127.0.0.1:9/tsa")
    assert anchored.returncode != 0
    assert "lives on the server" in anchored.stderr and "--database" in anchored.stderr
    listed = ann.run("anchor", "list")
    assert listed.returncode != 0 and "lives on the server" in listed.stderr
    purged = ann.run("retention", "purge", "--reason", "expired")
    assert purged.returncode != 0 and "lives on the server" in purged.stderr

    placed = as_admin("retention", "hold", "--id", "LH-1", "--reason", "litigation")
    assert placed.returncode == 0, placed.stderr
    held = json.loads(as_admin("retention", "holds", "--json").stdout)
    assert [h["id"] for h in held] == ["LH-1"]
    released = as_admin("retention", "release", "--id", "LH-1", "--reason", "settled")
    assert released.returncode == 0, released.stderr
    responded = as_admin("report", "respond", "SOX-1a2b3c4d5e", "--response", "fixed")
    assert responded.returncode == 0, responded.stderr
    assert "recorded on" in responded.stdout
    denied = ann.run("retention", "hold", "--id", "LH-2", "--reason", "a developer")
    assert denied.returncode != 0 and "project.admin" in denied.stderr

    recorded = server_entries(server, admin_key)
    holds = [e for e in recorded if e["kind"] == "retention.set"]
    assert [h["refs"]["action"] for h in holds] == ["hold", "release"]
    assert all(h["actor"]["id"] == admin_id for h in holds)
    [response] = [e for e in recorded if e["kind"] == "compliance.response"]
    assert response["actor"]["id"] == admin_id
    local = [e["kind"] for e in ann.box.events()]
    assert "retention.set" not in local and "compliance.response" not in local


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server on SQLite with project beta (no [server.repositories]) and a developer."""
    tmp = tmp_path_factory.mktemp("bare-server")
    server = LiveServer(tmp, str(tmp / "server.db"))
    user_id, key = server.provision(project="beta")
    server.start()
    try:
        yield server, f"{user_id} {key}"
    finally:
        server.stop()


def test_a_signed_approval_without_a_configured_clone_says_what_to_configure(
    bare_server: tuple[LiveServer, str],
) -> None:
    """Project "beta" has no [server.repositories] entry: the refusal names the setting."""
    from flowloom.client.http import HttpClient
    from flowloom.errors import FlowLoomError
    from flowloom.ledger.canonical import canonicalize

    server, both = bare_server
    user_id, key = both.split(" ")
    envelope = {
        "v": 1,
        "kind": "decision.approve",
        "ts": "2026-12-07T10:00:00.000000Z",
        "project": "beta",
        "actor": {"type": "human", "id": user_id},
        "subject": "DEC-0000000000",
        "refs": {"meaning": "approved", "ssh_signature": "-----BEGIN SSH SIGNATURE-----"},
    }
    signed = canonicalize(envelope).decode()
    with pytest.raises(FlowLoomError) as refused:
        HttpClient(server.url, key).post_json(
            "/api/v1/projects/beta/ledger/batch",
            {"events": [{"kind": "decision.approve", "signed_envelope": signed}]},
        )
    said = f"{refused.value.message} {refused.value.hint}"
    assert "no clone of beta is named in [server.repositories]" in said, said
    assert '[server.repositories] beta = "' in said and "docs/sync.md" in said
    assert PROJECT != "beta"


@SLOW
def test_the_local_ledger_is_still_there_for_an_operator(crew: tuple[Dev, Dev, LiveServer]) -> None:
    """Naming a database on purpose (the server's, on the server) is not refused."""
    ann, _, _ = crew
    database = ann.box.root / "operator.db"
    listed = ann.run("--database", str(database), "anchor", "list")
    assert listed.returncode == 0, listed.stderr


def test_the_copy_is_used_as_it_is_within_the_freshness_window(
    bare_server: tuple[LiveServer, str], tmp_path: Path
) -> None:
    """Mirror.refresh(max_age): a copy verified moments ago answers without asking (shown
    "as of" its time); without a window the server is asked, and its absence is told."""
    from flowloom.client.http import HttpClient
    from flowloom.client.link import ServerLink
    from flowloom.client.mirror import Mirror

    server, both = bare_server
    _, key = both.split(" ")
    HttpClient(server.url, key).post_json(
        "/api/v1/projects/beta/ledger/batch", {"events": [{"kind": "agent.prompt", "body": "one"}]}
    )
    link = ServerLink(
        server_url=server.url, api_key=key, project="beta", state_dir=str(tmp_path), timeout=10
    )
    mirror = Mirror(str(tmp_path), server.url, "beta")
    try:
        first = mirror.refresh(link, max_age=3600)
        assert first.asked and not first.stale and first.size >= 1
        assert first.label(server.url, "beta") is None
        again = mirror.refresh(link, max_age=3600)
        assert not again.asked and again.size == first.size
        label = again.label(server.url, "beta")
        assert label is not None and f"as of {first.refreshed_at}" in label
        # Asked again without a window: the same copy, verified again, nothing fetched.
        asked = mirror.refresh(link)
        assert asked.asked and asked.size == first.size and not asked.stale
    finally:
        mirror.close()


def test_fresh_seconds_is_checked(tmp_path: Path) -> None:
    from flowloom.config import load_settings
    from flowloom.errors import ConfigError

    for bad in ("soon", "-1", "86401"):
        with pytest.raises(ConfigError, match="fresh_seconds"):
            load_settings(tmp_path, {"FLOWLOOM_SERVER_FRESH_SECONDS": bad, "HOME": str(tmp_path)})
    fine = load_settings(Path("/"), {"FLOWLOOM_SERVER_FRESH_SECONDS": "2.5", "HOME": str(tmp_path)})
    assert fine.server_fresh_seconds == 2.5


def test_the_mirror_reads_bodies_by_the_page_and_checks_their_commitments(
    bare_server: tuple[LiveServer, str], tmp_path: Path
) -> None:
    """A cold copy takes bodies with their pages (no request per body), each opened
    against its envelope's commitment; against a server whose pages carry no bodies (an
    older one) it asks for each body; a body that does not open its commitment is refused."""
    from flowloom.client.api import LedgerApi
    from flowloom.client.http import HttpClient
    from flowloom.client.link import ServerLink
    from flowloom.client.mirror import Mirror
    from flowloom.errors import RemoteError
    from flowloom.ledger.body import digest_of

    server, both = bare_server
    _, key = both.split(" ")
    events = [{"kind": "agent.prompt", "body": f"page body {i}"} for i in range(3)]
    HttpClient(server.url, key, timeout=60).post_json(
        "/api/v1/projects/beta/ledger/batch", {"events": [*events, {"kind": "agent.prompt"}]}
    )

    class Shaped(LedgerApi):
        """The real API; `old` strips bodies from pages, `tamper` changes one."""

        old = False
        tamper = False
        asked: ClassVar[list[int]] = []

        def entries(self, start: int, limit: int = 1000, *, bodies: bool = False) -> Any:
            page = super().entries(start, limit, bodies=bodies)
            for row in page["entries"]:
                if Shaped.old:
                    row.pop("body", None)
                    row.pop("salt", None)
                elif Shaped.tamper and row.get("body"):
                    row["body"] = "dGFtcGVyZWQ="
            return page

        def body(self, index: int) -> bytes:
            Shaped.asked.append(index)
            return super().body(index)

    class Link(ServerLink):
        def api(self, project: str | None = None) -> LedgerApi:
            return Shaped(self.http, project or self.project)

    def copy(name: str) -> tuple[list[tuple[str, bytes, bytes]], int]:
        link = Link(
            server_url=server.url, api_key=key, project="beta", state_dir=str(tmp_path), timeout=60
        )
        mirror = Mirror(str(tmp_path / name), server.url, "beta")
        try:
            state = mirror.refresh(link)
            assert not state.stale
            entries = mirror.store.entries("beta", 0, state.size)
            digests = [json.loads(e.envelope).get("body") for e in entries]
            bodies = [mirror.store.body(d) for d in digests if isinstance(d, str)]
            return [(b.digest, b.salt, b.content) for b in bodies if b is not None], state.size
        finally:
            mirror.close()

    held, size = copy("bulk")
    assert Shaped.asked == [] and len(held) >= 3
    assert all(digest_of(salt, content) == digest for digest, salt, content in held)
    assert {b"page body 0", b"page body 2"} <= {content for _, _, content in held}
    Shaped.old = True
    old_held, old_size = copy("old")
    assert old_size == size and len(Shaped.asked) == len(held)
    assert {c for _, _, c in old_held} == {c for _, _, c in held}
    Shaped.old, Shaped.tamper = False, True
    with pytest.raises(RemoteError, match="does not match its commitment"):
        copy("tampered")
