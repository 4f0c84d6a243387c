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
