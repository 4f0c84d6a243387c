"""The server is the team's one record: two developers' clones, two keys, one server.

Each clone is a real git clone of one bare origin, with FlowLoom's git hooks, run
through the real `flowloom` CLI against a real server subprocess on loopback (SQLite and
PostgreSQL). What one developer records (decisions, commit links, overrides, signed
approvals, memory) goes through their outbox to the server, and the other developer's
`why`, `search`, `decision show` and memory read it from there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.capture.agent_sandbox import AgentSandbox
from tests.client.conftest import PROJECT, LiveServer
from tests.support.sshkeys import SshKey, make_key

pytestmark = pytest.mark.usefixtures("require_git_ssh")


@pytest.fixture
def require_git_ssh() -> None:
    from tests.support.sshkeys import require_ssh_keygen

    require_ssh_keygen()


class Dev:
    """One developer: a clone, a server key, an SSH signing key, a git identity."""

    def __init__(self, tmp: Path, name: str, origin: Path, server: LiveServer) -> None:
        root = tmp / name
        root.mkdir()
        subprocess.run(
            ["git", "clone", "-q", str(origin), str(root / "repo")],
            check=True,
            capture_output=True,
            env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root), "PATH": "/usr/bin:/bin"},
        )
        self.box = AgentSandbox(root)
        self.user_id, self.key = server.provision()
        self.email = ""
        self.ssh: SshKey = make_key(root / "ssh", "signing")
        self.server = server

    def connect(self, email: str) -> None:
        self.email = email
        self.box.env.update(
            {
                "FLOWLOOM_SERVER": self.server.url,
                "FLOWLOOM_API_KEY": self.key,
                "FLOWLOOM_PROJECT": PROJECT,
                "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_EMAIL": email,
                "GIT_AUTHOR_NAME": email.split("@")[0],
                "GIT_COMMITTER_NAME": email.split("@")[0],
            }
        )

    def ok(self, *args: str) -> str:
        return self.box.ok(*args)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.box.flowloom(*args)


@pytest.fixture
def team(tmp_path: Path, server: LiveServer) -> tuple[Dev, Dev, Path]:
    """Ann (dev0) and Bob (dev1): clones of one origin whose main commits the allowed
    signers, a server that reads that origin for them, both connected."""
    return assemble_team(tmp_path, server)


def assemble_team(tmp_path: Path, server: LiveServer) -> tuple[Dev, Dev, Path]:
    """The `team` fixture's work (also for module-scoped teams elsewhere)."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    ann = Dev(tmp_path, "ann", origin, server)
    bob = Dev(tmp_path, "bob", origin, server)
    ann.connect("dev0@example.com")
    bob.connect("dev1@example.com")
    config = Path(server.env["XDG_CONFIG_HOME"]) / "flowloom" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[server.repositories]\n{PROJECT} = "{origin}"\n')
    server.start()
    ann.box.init()
    signers = ann.box.repo / ".flowloom" / "allowed_signers"
    signers.write_text(
        f'dev0@example.com namespaces="flowloom" {ann.ssh.public_line}\n'
        f'dev1@example.com namespaces="flowloom" {bob.ssh.public_line}\n'
    )
    ann.box.git("add", ".flowloom/allowed_signers")
    ann.box.git("commit", "-q", "-m", "allowed signers", env={"FLOWLOOM_OVERRIDE": "signers"})
    ann.box.git("push", "-q", "origin", "main")
    bob.box.git("pull", "-q", "origin", "main")
    bob.ok("init")
    return ann, bob, origin


def entries(server: LiveServer, key: str) -> list[dict[str, object]]:
    return [e["envelope"] for e in server.entries(key)]  # type: ignore[misc]


def test_each_developer_sees_the_others_decisions_links_and_approvals(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    ann, bob, _ = team
    decision = ann.ok(
        "decide", "--title", "Cache lookups in SQLite", "--rationale", "fast, local, no server"
    ).strip()
    ann.box.write("cache.py", "CACHE = 'sqlite'\n")
    ann.box.git("add", "cache.py")
    ann.box.git("commit", "-q", "-m", "Add the cache")
    ann.box.settled()
    ann.box.git("push", "-q", "origin", "main")

    recorded = entries(server, ann.key)
    kinds = [e["kind"] for e in recorded]
    assert "decision.record" in kinds and "commit.link" in kinds and "override.grant" in kinds
    [record] = [e for e in recorded if e["kind"] == "decision.record"]
    # The server, not the clone, says who recorded it: the key's user.
    assert record["actor"]["id"] == ann.user_id  # type: ignore[index]
    assert not (ann.box.state_dir / "ledger.db").exists() or all(
        k != "decision.record" for k in (e["kind"] for e in ann.box.events())
    )

    bob.box.git("pull", "-q", "origin", "main")
    why = json.loads(bob.ok("why", "cache.py:1", "--json"))
    assert why["decision"]["id"] == decision, why
    shown = json.loads(bob.ok("decision", "show", decision, "--json"))
    assert shown["title"] == "Cache lookups in SQLite" and shown["status"] == "proposed"
    found = bob.ok("search", "SQLite")
    assert decision in found

    approved = bob.ok("decision", "approve", decision, "--key", str(bob.ssh.private))
    assert f"{decision} approved by dev1@example.com (entry" in approved
    [approval] = [e for e in entries(server, bob.key) if e["kind"] == "decision.approve"]
    assert approval["actor"]["id"] == "dev1@example.com"  # type: ignore[index]
    assert "attestation" in approval["refs"] and "ssh_signature" in approval["refs"]  # type: ignore[operator]

    seen_by_ann = json.loads(ann.ok("decision", "show", decision, "--json"))
    assert seen_by_ann["status"] == "accepted", seen_by_ann
    [counted] = seen_by_ann["approvals"]
    assert counted["verified"] and counted["approver"] == "dev1@example.com"

    # Ann may not approve her own decision: refused before anything is sent.
    own = ann.run("decision", "approve", decision, "--key", str(ann.ssh.private))
    assert own.returncode != 0 and "cannot approve" in own.stderr


def test_memory_and_the_mcp_tools_read_the_teams_record(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    import asyncio
    import sys

    from mcp import Client, StdioServerParameters

    ann, bob, _ = team
    graph = ann.box.root / "graph.jsonl"
    graph.write_text(
        json.dumps(
            {
                "type": "entity",
                "name": "cache",
                "entityType": "component",
                "observations": ["lives in cache.py"],
            }
        )
        + "\n"
    )
    ann.ok("memory", "import", str(graph))
    decision = ann.ok("decide", "--title", "Evict the cache hourly").strip()

    exported = bob.ok("memory", "export")
    assert "lives in cache.py" in exported

    async def ask() -> tuple[str, str]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "flowloom", "mcp"],
            env=bob.box.env,
            cwd=str(bob.box.repo),
        )
        async with Client(params, read_timeout_seconds=120) as client:
            got = await client.call_tool("get_decision", {"id": decision})
            graph = await client.call_tool("read_graph", {})
            assert not got.is_error and not graph.is_error, (got.content, graph.content)
            return json.dumps(got.structured_content), json.dumps(graph.structured_content)

    seen_decision, seen_graph = asyncio.run(ask())
    assert "Evict the cache hourly" in seen_decision
    assert "lives in cache.py" in seen_graph


def test_offline_work_is_queued_and_reads_are_labelled_stale(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    ann, bob, _ = team
    first = ann.ok("decide", "--title", "Before the outage").strip()
    bob.ok("decision", "show", first)  # bob's copy holds it now
    server.stop()
    queued = ann.run("decide", "--title", "During the outage")
    assert queued.returncode == 0, queued.stderr
    during = queued.stdout.strip()
    assert "queued in the outbox" in queued.stderr
    offline = bob.run("decision", "show", first)
    assert offline.returncode == 0, offline.stderr
    assert "Before the outage" in offline.stdout
    assert "may be stale" in offline.stderr and "cannot reach" in offline.stderr
    server.start()
    assert "sent" in ann.ok("sync")
    shown = bob.run("decision", "show", during)
    assert shown.returncode == 0 and "During the outage" in shown.stdout
    assert "stale" not in shown.stderr
    titles = [
        e["refs"]["title"]  # type: ignore[index]
        for e in entries(server, ann.key)
        if e["kind"] == "decision.record"
    ]
    assert titles == ["Before the outage", "During the outage"]  # once each, in order


def test_the_server_never_takes_a_signed_identity_from_someone_elses_key(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    """Bob signs an approval naming Ann as approver with Ann's key file (he got hold of
    it): the signature verifies, but his API key is not Ann's, so the server refuses."""
    from flowloom.client.http import HttpClient, ServerRejectedError
    from flowloom.errors import PermissionDeniedError
    from flowloom.ledger.canonical import canonicalize
    from flowloom.ledger.provenance import ssh_signed_message
    from flowloom.ledger.sshsig import SSHSIG_NAMESPACE, sign_with_ssh_keygen

    ann, bob, _ = team
    decision = bob.ok("decide", "--title", "Bob's change").strip()
    envelope = {
        "v": 1,
        "kind": "decision.approve",
        "ts": "2026-12-07T10:00:00.000000Z",
        "project": PROJECT,
        "actor": {"type": "human", "id": "dev0@example.com"},
        "subject": decision,
        "refs": {"meaning": "approved", "content_digest": "sha256:" + "0" * 64},
    }
    signature = sign_with_ssh_keygen(
        ssh_signed_message(envelope), ann.ssh.private, SSHSIG_NAMESPACE
    )
    envelope["refs"]["ssh_signature"] = signature  # type: ignore[index]
    signed = canonicalize(envelope).decode()
    path = f"/api/v1/projects/{PROJECT}/ledger/batch"
    with pytest.raises(ServerRejectedError) as refused:
        HttpClient(server.url, bob.key).post_json(
            path, {"events": [{"kind": "decision.approve", "signed_envelope": signed}]}
        )
    assert "this API key is" in refused.value.message
    # The same event through Ann's key is hers: accepted and attested.
    answer = HttpClient(server.url, ann.key).post_json(
        path, {"events": [{"kind": "decision.approve", "signed_envelope": signed}]}
    )
    [index] = answer["indices"]
    stored = server.entries(ann.key)[index]["envelope"]
    assert stored["actor"] == {"type": "human", "id": "dev0@example.com"}
    assert "attestation" in stored["refs"]
    # A generic append of an approval, even naming the caller, is still refused.
    with pytest.raises(PermissionDeniedError, match="carry authority"):
        HttpClient(server.url, ann.key).post_json(
            path, {"events": [{"kind": "decision.approve", "subject": decision}]}
        )


@pytest.mark.slow  # restarts the server with a CI issuer: about a minute
def test_the_servers_sox_report_judges_both_developers_commits(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    import datetime

    import httpx

    ann, bob, _ = team
    shas = []
    for dev, name in ((ann, "ann.py"), (bob, "bob.py")):
        dev.box.git("pull", "-q", "--rebase", "origin", "main")
        dev.ok("decide", "--title", f"Add {name}")
        dev.box.write(name, f"NAME = {name!r}\n")
        dev.box.git("add", name)
        dev.box.git("commit", "-q", "-m", f"Add {name}")
        dev.box.settled()
        dev.box.git("push", "-q", "origin", "main")
        shas.append(dev.box.head())
    # Bob's CI run records its tests for his commit, proven by the run's OIDC token.
    from tests.support.ci_issuer import CIIssuer

    junit = bob.box.root / "junit.xml"
    junit.write_text(
        '<testsuite name="unit" tests="1"><testcase classname="bob" name="test_name"/></testsuite>'
    )
    with CIIssuer({"repository": "acme/app"}) as issuer:
        server.stop()
        server.env["FLOWLOOM_SERVER_CI_ISSUERS"] = issuer.issuer
        server.start()
        ci_env = {**bob.box.env, **issuer.github_env(sha=shas[1], run_id="9")}
        recorded = bob.box.flowloom("ci", "record", "--junit", str(junit), env=ci_env)
        assert recorded.returncode == 0, recorded.stderr
    _, auditor = server.provision(role="auditor")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    answer = httpx.post(
        f"{server.url}/api/v1/projects/{PROJECT}/reports",
        json={"framework": "sox", "from": today, "to": today, "format": "json"},
        headers={"Authorization": f"Bearer {auditor}"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    changes = {c["commit"]: c for c in report["changes"]}
    for sha in shas:  # judged from the links the clones synced (and the server's clone)
        assert changes[sha]["link"] == "trailer" and changes[sha]["link_entry"] is not None
        assert changes[sha]["decisions"] and "unapproved" in changes[sha]["flags"]
    assert changes[shas[0]]["tests"] == "none"
    assert changes[shas[1]]["tests"] != "none" and changes[shas[1]]["ci_entries"]
    assert "untested" not in changes[shas[1]]["flags"]


@pytest.mark.slow  # two clones, agents, a server killed and restarted: about a minute
def test_both_developers_agents_lose_nothing_when_the_server_is_killed(
    team: tuple[Dev, Dev, Path], server: LiveServer
) -> None:
    """Both developers' agents work; the server is killed (SIGKILL) mid-session and comes
    back: every prompt and decision reaches it once, and each sees the other's. On
    SQLite and on PostgreSQL."""
    ann, bob, _ = team
    devs = (("ann", ann), ("bob", bob))
    for who, dev in devs:
        ran = dev.box.hook(
            "claude-code", dev.box.claude("UserPromptSubmit", prompt=f"{who} before")
        )
        assert ran.returncode == 0, ran.stderr
        dev.box.drained()
    assert server.process is not None
    server.process.kill()  # no shutdown: whatever it was doing is cut off
    server.process.wait(30)
    server.process = None
    decided = {}
    try:
        for who, dev in devs:
            ran = dev.box.hook(
                "claude-code", dev.box.claude("UserPromptSubmit", prompt=f"{who} during")
            )
            assert ran.returncode == 0, ran.stderr
            dev.box.drained()
            queued = dev.run("decide", "--title", f"{who} decided while the server was down")
            assert queued.returncode == 0, queued.stderr
            decided[who] = queued.stdout.strip()
    finally:
        server.start()
    for _, dev in devs:
        assert "sent" in dev.ok("sync")
    rows = server.entries(ann.key)
    prompts = [
        server.body(ann.key, row["index"])
        for row in rows
        if row["envelope"]["kind"] == "agent.prompt"
    ]
    for who, _ in devs:
        assert prompts.count(f"{who} before") == 1 and prompts.count(f"{who} during") == 1
    titles = [
        row["envelope"]["refs"]["title"]
        for row in rows
        if row["envelope"]["kind"] == "decision.record"
    ]
    for who, _ in devs:
        assert titles.count(f"{who} decided while the server was down") == 1
    assert "ann decided" in bob.ok("decision", "show", decided["ann"])
    assert "bob decided" in ann.ok("decision", "show", decided["bob"])
    assert decided["ann"] in bob.ok("search", "down")
