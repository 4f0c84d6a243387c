"""`flowloom decide` and `flowloom decision …`, run as a user runs them, in a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sshkeys import make_key

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Repo:
    """A git repository and `python -m flowloom` run inside it, as user `alice`."""

    def __init__(self, tmp_path: Path) -> None:
        self.top = tmp_path / "repo"
        self.env = {
            **os.environ,
            **GIT_ENV,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "FLOWLOOM_HOME": str(tmp_path / "home"),
            "LOGNAME": "alice",
            "USER": "alice",
        }
        for name in ("FLOWLOOM_DATABASE", "FLOWLOOM_PROJECT", "FLOWLOOM_DEBUG"):
            self.env.pop(name, None)
        self.top.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.top, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def fl(
        self, *args: str, user: str = "alice", cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=cwd or self.top,
            env={**self.env, "LOGNAME": user, "USER": user},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, user: str = "alice") -> str:
        done = self.fl(*args, user=user)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def allow_signers(self, *people: str) -> dict[str, Path]:
        """Commit .flowloom/allowed_signers with a real ssh-keygen key per person."""
        made = {p: make_key(self.top.parent / "sshkeys", p) for p in people}
        lines = [f'{p} namespaces="flowloom" {key.public_line}' for p, key in made.items()]
        (self.top / ".flowloom").mkdir(exist_ok=True)
        (self.top / ".flowloom" / "allowed_signers").write_text("\n".join(lines) + "\n")
        self.git("add", ".flowloom")
        self.git("commit", "-qm", "allowed signers")
        return {p: key.private for p, key in made.items()}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def _one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("flowloom: error: ")
    return done.stderr


def test_decide_records_and_links_the_next_commit(repo: Repo) -> None:
    out = repo.ok(
        "decide",
        "--title",
        "Cache price lookups",
        "--context",
        "Lookups are slow (PAY-12)",
        "--option",
        "lru_cache",
        "--option",
        "redis",
        "--choice",
        "lru_cache",
        "--rationale",
        "bounded",
        "--ticket",
        "OPS-1",
        "--file",
        "prices.py",
        "--risk",
        "medium",
        "--session",
        "s-1",
    )
    decision_id = out.strip()
    assert len(decision_id) == 12 and decision_id.startswith("D-")
    state = json.loads((repo.top / ".git" / "flowloom" / "state.json").read_text())
    shown = json.loads(repo.ok("decision", "show", decision_id, "--json"))
    assert state == {
        "decision": decision_id,
        "session": "s-1",
        "entry": shown["entry"],
        "agent": None,
    }
    assert shown["title"] == "Cache price lookups"
    assert shown["options"] == ["lru_cache", "redis"]
    assert shown["tickets"] == ["OPS-1", "PAY-12"]
    assert shown["requested_by"] == "alice"
    assert shown["risk"] == "medium"
    assert shown["status"] == "proposed"
    assert shown["recorded_by"] == {"type": "human", "id": "alice"}

    text = repo.ok("decision", "show", decision_id)
    assert text.splitlines()[0] == f"{decision_id}  Cache price lookups"
    assert "requested by: alice" in text and "  - redis" in text

    kinds = [
        json.loads(line)["event"]["kind"] for line in repo.ok("log", "show", "--json").splitlines()
    ]
    assert kinds.count("decision.record") == 1


def test_list_approve_and_export(repo: Repo, tmp_path: Path) -> None:
    first = repo.ok("decide", "--title", "One", "--requested-by", "alice").strip()
    second = repo.ok("decide", "--title", "Two", "--risk", "high").strip()
    listed = repo.ok("decision", "list").splitlines()
    assert [line.split()[0] for line in listed] == [first, second]
    assert "proposed" in listed[0] and listed[1].endswith("Two")

    keys = repo.allow_signers("alice", "bob", "carol")
    refused = _one_line_error(repo.fl("decision", "approve", first, "--key", str(keys["alice"])), 3)
    assert f"alice cannot approve {first}: they requested it" in refused
    # The OS user name is nobody's proof: USER=bob with alice's key is still alice.
    refused = _one_line_error(
        repo.fl("decision", "approve", first, "--key", str(keys["alice"]), user="bob"), 3
    )
    assert "alice cannot approve" in refused
    approved = repo.ok("decision", "approve", first, "--key", str(keys["bob"]))
    assert approved.startswith(f"{first} approved by bob (entry ")
    _one_line_error(repo.fl("decision", "approve", first, "--key", str(keys["bob"])), 3)
    repo.ok("decision", "approve", first, "--meaning", "reviewed", "--key", str(keys["carol"]))
    shown = json.loads(repo.ok("decision", "show", first, "--json"))
    assert shown["status"] == "accepted"
    assert [(a["approver"], a["meaning"]) for a in shown["approvals"]] == [
        ("bob", "approved"),
        ("carol", "reviewed"),
    ]
    assert json.loads(repo.ok("decision", "list", "--json").splitlines()[0])["id"] == first

    markdown = repo.ok("decision", "export", first)
    assert markdown.startswith("---\nstatus: accepted\n")
    assert "\n# One\n" in markdown
    out = tmp_path / "adr" / "0001-one.md"
    done = repo.fl("decision", "export", first, "--out", str(out))
    assert done.returncode == 0 and done.stdout == ""
    assert out.read_text() == markdown


def test_policy_can_allow_self_approval(repo: Repo) -> None:
    (repo.top / ".flowloom").mkdir()
    (repo.top / ".flowloom" / "config.toml").write_text("[policy]\nforbid_self_approval = false\n")
    keys = repo.allow_signers("alice")
    decision_id = repo.ok("decide", "--title", "Mine").strip()
    assert repo.ok("decision", "approve", decision_id, "--key", str(keys["alice"])).startswith(
        f"{decision_id} approved by alice"
    )


def test_errors_are_one_line(repo: Repo) -> None:
    assert "no decision D-0123456789" in _one_line_error(
        repo.fl("decision", "show", "D-0123456789"), 6
    )
    assert "is not a decision id" in _one_line_error(repo.fl("decision", "export", "D-1"), 3)
    assert "prompt_entry 50 does not exist" in _one_line_error(
        repo.fl("decide", "--title", "t", "--prompt-entry", "50"), 6
    )
    usage = repo.fl("decide", "--title", "t", "--risk", "huge")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert repo.fl("decide").returncode == 2
    _one_line_error(repo.fl("decision", "show", "D-0123456789"), 6)


def test_decide_outside_a_repository(repo: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    done = repo.fl("decide", "--title", "Loose", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("D-")
    assert "not in a git repository" in done.stderr
    assert (tmp_path / "home" / "ledger.db").exists()
