"""One key per log, pinned: reads write nothing and create no key, whatever FLOWLOOM_HOME is.

A real repository and ledger (SQLite file or PostgreSQL schema) are recorded with one
home; every read command then runs as a real process with a fresh, empty
FLOWLOOM_HOME, and the ledger's tables (entries, checkpoints, bodies) and both homes'
key directories are digested before and after. Writes that need the key fail naming it;
rotation keeps the log verifiable; a checkpoint signed by a foreign key fails; a server's
database verifies per project out of the box.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.ledger.checkpoint import Checkpoint, sign_checkpoint
from flowloom.ledger.keyring import key_name
from flowloom.ledger.merkle import root_at
from flowloom.ledger.note import Signer, Verifier
from flowloom.services import open_store
from tests.support.ledgers import raw_sql

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
PROMPT = b"Add a cache to the price lookup. It takes 300 ms on every request."
REPLY = b"I'll wrap the lookup in functools.lru_cache. It is bounded."
ORIGIN = "flowloom.local/proj"


def digest(database: str) -> str:
    """A digest of the ledger's record: entries, checkpoints and bodies, in order."""
    queries = [
        "SELECT log, idx, envelope, kind FROM entries ORDER BY log, idx",
        "SELECT log, size, root, note FROM checkpoints ORDER BY log, size",
        "SELECT digest, log, salt, content, nonce, subject FROM bodies ORDER BY digest",
    ]
    rows: list[object] = []
    if "://" in database:
        import psycopg

        with psycopg.connect(database) as conn:
            for sql in queries:
                rows.append([tuple(r) for r in conn.execute(sql).fetchall()])
    else:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            for sql in queries:
                rows.append(conn.execute(sql).fetchall())
        finally:
            conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def listing(home: Path) -> list[str]:
    """The key directory of `home` (names and contents' digests); [] when there is none."""
    keys = home / "keys"
    if not keys.exists():
        return []
    return sorted(
        f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}" for p in keys.iterdir()
    )


class Repo:
    """A git repository whose ledger was recorded with `home`, and the CLI beside it."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.top = tmp_path / "repo"
        self.top.mkdir()
        self.home = tmp_path / "home"
        self.fresh = tmp_path / "fresh-home"
        self.database = database
        self.decision = ""
        self.env = {
            **os.environ,
            **GIT_ENV,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "FLOWLOOM_HOME": str(self.home),
            "FLOWLOOM_DATABASE": database,
            "FLOWLOOM_PROJECT": "proj",
        }
        self.env.pop("FLOWLOOM_DEBUG", None)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.top, env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def commit(self, text: str, message: str) -> None:
        (self.top / "prices.py").write_text(text)
        self.git("add", "prices.py")
        self.git("commit", "-q", "-m", message)

    def fl(
        self, *args: str, home: Path | None = None, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=self.top,
            env={**self.env, "FLOWLOOM_HOME": str(home or self.home)},
            input=input,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, home: Path | None = None, input: bytes | None = None) -> str:
        result = self.fl(*args, home=home, input=input)
        assert result.returncode == 0, (args, result.stderr.decode())
        return result.stdout.decode()

    def state(self) -> tuple[str, list[str], list[str]]:
        return digest(self.database), listing(self.home), listing(self.fresh)


@pytest.fixture
def repo(tmp_path: Path, db_url: str) -> Repo:
    """A decision with its prompt and reply, a commit naming it, an erasable body, a
    checkpoint over all of that, and one entry after it; recorded with `repo.home`."""
    r = Repo(tmp_path, db_url)
    r.commit("def price(sku):\n    return db(sku)\n", "initial")
    prompt = r.ok("log", "append", "--kind", "agent.prompt", "--body-file", "-", input=PROMPT)
    reply = r.ok("log", "append", "--kind", "agent.response", "--body-file", "-", input=REPLY)
    decision = json.loads(
        r.ok(
            "decide",
            "--title",
            "Cache price lookups",
            "--choice",
            "lru_cache",
            "--requested-by",
            "bob",
            "--session",
            "s-1",
            "--prompt-entry",
            prompt.split()[0],
            "--response-entry",
            reply.split()[0],
            "--json",
        )
    )
    r.commit(
        "@lru_cache\ndef price(sku):\n    return db(sku)\n",
        f"Cache prices\n\nFlowLoom-Decision: {decision['id']}\n",
    )
    r.decision = decision["id"]
    r.ok(
        "log", "append", "--kind", "agent.prompt", "--body-file", "-", "--data-subject", "alice",
        input=b"alice's private prompt",
    )  # fmt: skip
    r.ok("log", "checkpoint")
    r.ok("log", "append", "--kind", "agent.tool", "--meta", '{"subject": "after the checkpoint"}')
    return r


def test_reads_with_a_fresh_home_write_nothing_and_create_no_key(repo: Repo) -> None:
    events = [json.loads(line)["event"] for line in repo.ok("log", "show", "--json").splitlines()]
    assert events[0]["kind"] == "key.generated"  # the first write pinned it
    vkey = repo.ok("log", "vkey").strip()
    plain = events[1]["body"]
    sealed = events[4]["body"]
    last = len(events) - 1
    before = repo.state()
    assert before[2] == [] and any(name.endswith(".skey") for name in " ".join(before[1]).split())

    # (arguments, exit code, text expected on stdout or stderr)
    reads: list[tuple[tuple[str, ...], int, str]] = [
        (("log", "show"), 0, "key.generated"),
        (("log", "show", "--json", "--kind", "decision.record"), 0, repo.decision),
        (("log", "body", plain), 0, "Add a cache"),
        (("log", "vkey"), 0, vkey),
        (("log", "verify"), 0, "ok: the log verifies"),
        (("log", "verify", "--vkey", vkey), 0, "ok: the log verifies"),
        (("log", "prove", "1"), 0, f"{ORIGIN}\n{last}\n"),
        (("log", "consistency", "1"), 0, "old 1\n"),
        (("why", "prices.py:1"), 0, "Cache price lookups"),
        (("search", "cache"), 0, "Cache price lookups"),
        # status warns (exit 1) that this repository is not set up; it still only reads.
        (("status",), 1, "ledger"),
        (("decision", "list"), 0, repo.decision),
        (("decision", "show", repo.decision), 0, "Cache price lookups"),
        (("memory", "export"), 0, ""),
        # Needs what this home lacks: the error names it, and nothing was written.
        (("log", "prove", str(last)), 5, key_name(Verifier.from_vkey(vkey))),
        (("log", "body", sealed), 5, "master key"),
    ]
    for args, code, text in reads:
        result = repo.fl(*args, home=repo.fresh)
        out = (result.stdout + result.stderr).decode()
        assert result.returncode == code, (args, out)
        assert text in out, (args, out)
        assert "Traceback" not in out
        assert repo.state() == before, args
    verified = repo.ok("log", "verify", home=repo.fresh)
    assert "1 encrypted bodies not checked" in verified
    assert f"key {key_name(Verifier.from_vkey(vkey))}" in verified
    missing = repo.fl("log", "prove", str(last), home=repo.fresh).stderr.decode()
    assert vkey in missing and str(repo.fresh / "keys") in missing
    assert "flowloom.local_proj.skey" in missing and missing.count("\n") == 1


def test_writes_that_need_the_key_fail_naming_it(repo: Repo, tmp_path: Path) -> None:
    vkey = repo.ok("log", "vkey").strip()
    before = repo.state()
    for args in (
        ("log", "checkpoint"),
        ("log", "export", str(tmp_path / "bundle")),
        ("log", "erase", "alice", "--reason", "asked to"),
        ("log", "rotate-key", "--reason", "not mine to rotate"),
        (
            "report",
            "--framework",
            "sox",
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
            "--out",
            str(tmp_path / "report.json"),
        ),
    ):
        result = repo.fl(*args, home=repo.fresh)
        err = result.stderr.decode()
        assert result.returncode == 5, (args, err)
        assert err.startswith("flowloom: error: ") and err.count("\n") == 1, err
        assert key_name(Verifier.from_vkey(vkey)) in err and str(repo.fresh / "keys") in err
        assert repo.state() == before, args
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "report.json").exists()
    # A plain event needs no key (hooks record without one), and adds none.
    repo.ok(
        "log", "append", "--kind", "agent.prompt", "--body-file", "-", input=b"x", home=repo.fresh
    )
    kinds = [
        json.loads(line)["event"]["kind"] for line in repo.ok("log", "show", "--json").splitlines()
    ]
    assert kinds.count("key.generated") == 1 and listing(repo.fresh) == []


def test_rotation_then_verify(repo: Repo) -> None:
    old = Verifier.from_vkey(repo.ok("log", "vkey").strip())
    rotated = json.loads(repo.ok("log", "rotate-key", "--reason", "yearly rotation", "--json"))
    assert rotated["old_vkey"] == old.vkey
    new = Verifier.from_vkey(rotated["new_vkey"])
    assert new != old and new.name == old.name
    names = [line.split()[0] for line in listing(repo.home)]
    assert f"flowloom.local_proj.{old.key_id.hex()}.skey" in names  # the old key is kept
    assert f"flowloom.local_proj.{new.key_id.hex()}.skey" in names
    assert "flowloom.local_proj.skey" in names  # now holding the new key
    repo.ok("log", "append", "--kind", "agent.tool", "--meta", '{"subject": "after"}')
    note = repo.ok("log", "checkpoint")
    assert f"\u2014 {ORIGIN} " in note
    assert repo.ok("log", "vkey", home=repo.fresh).strip() == new.vkey
    for trusted in ((), ("--vkey", old.vkey), ("--vkey", new.vkey)):
        out = repo.ok("log", "verify", *trusted, home=repo.fresh)
        assert "ok: the log verifies" in out and f"key {key_name(new)}" in out
    shown = repo.ok("log", "show", "--kind", "key.rotated", home=repo.fresh)
    assert "key.rotated" in shown
    stranger = Signer.generate(ORIGIN).verifier().vkey
    result = repo.fl("log", "verify", "--vkey", stranger, home=repo.fresh)
    assert result.returncode == 1
    assert "is not a key of this log" in result.stdout.decode()
    assert listing(repo.fresh) == []


def test_a_checkpoint_signed_by_a_foreign_key_fails_verify(repo: Repo) -> None:
    pinned = Verifier.from_vkey(repo.ok("log", "vkey").strip())
    store = open_store(repo.database)
    try:
        size = store.size("proj")
        root = root_at(size, lambda ids: store.nodes("proj", ids))
        foreign = Signer.generate(ORIGIN)
        note = sign_checkpoint(Checkpoint(ORIGIN, size, root), foreign)
        raw_sql(
            store,
            [
                (
                    "INSERT INTO checkpoints (log, size, root, note) VALUES (?, ?, ?, ?)",
                    ("proj", size, root, note),
                )
            ],
        )
    finally:
        store.close()
    result = repo.fl("log", "verify", home=repo.fresh)
    assert result.returncode == 1
    assert (
        f"checkpoint {size} is signed by key {key_name(foreign.verifier())}, not by the log's "
        f"key {key_name(pinned)} (its key at size {size})"
    ) in result.stdout.decode()
    assert "FAILED: the log does not verify" in result.stderr.decode()
