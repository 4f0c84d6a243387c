"""Replication through git: publish on refs/flowloom/log, push, verify the remote copy."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.config import load_settings
from flowloom.repo.git import GitError
from flowloom.repo.replicate import LOG_REF, ensure_push_refspec, publish_log
from flowloom.services import Services, build_services

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Clone:
    """A work repository with a bare remote `origin`, its ledger, and the CLI."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.top = tmp_path / "work"
        self.remote = tmp_path / "remote.git"
        self.env = {
            **os.environ,
            **GIT_ENV,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "FLOWLOOM_HOME": str(tmp_path / "home"),
        }
        for name in ("FLOWLOOM_DATABASE", "FLOWLOOM_PROJECT", "FLOWLOOM_DEBUG"):
            self.env.pop(name, None)
        subprocess.run(["git", "init", "-q", "--bare", str(self.remote)], check=True)
        self.top.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "origin", str(self.remote))
        (self.top / "README").write_text("hello\n")
        self.git("add", "README")
        self.git("commit", "-q", "-m", "first")
        self._services: Services | None = None

    @property
    def db(self) -> Path:
        return self.top / ".git" / "flowloom" / "ledger.db"

    def services(self) -> Services:
        if self._services is None:
            self._services = build_services(load_settings(self.top, self.env))
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None

    def record(self, count: int, what: str = "prompt") -> None:
        ledger = self.services().ledger
        for i in range(count):
            ledger.record("agent.prompt", body=f"{what} {i}".encode(), meta={"session": "s"})

    def git(self, *args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=cwd or self.top,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def fl(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=cwd or self.top,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def publish_and_push(self) -> str:
        sha = publish_log(self.top, self.services().ledger, remote="origin")
        self.git("push", "-q", "origin")
        return sha


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Clone]:
    c = Clone(tmp_path)
    yield c
    c.close()


def _verify(clone: Clone) -> subprocess.CompletedProcess[str]:
    clone.close()  # the CLI is another process; nothing held open here
    return clone.fl("log", "verify", "--remote", "origin")


def test_publish_writes_the_bundle_as_a_commit(clone: Clone) -> None:
    clone.record(3)
    head = clone.git("rev-parse", "HEAD")
    sha = publish_log(clone.top, clone.services().ledger)
    assert clone.git("rev-parse", LOG_REF) == sha
    files = clone.git("ls-tree", "-r", "--name-only", sha).splitlines()
    manifest = json.loads(clone.git("cat-file", "blob", f"{sha}:manifest.json"))
    assert sorted(files) == sorted(["manifest.json", *manifest["files"]])
    assert "checkpoint" in files and any(f.startswith("tile/entries/") for f in files)
    assert len([f for f in files if f.startswith("bodies/")]) == 3
    checkpoint = clone.git("cat-file", "blob", f"{sha}:checkpoint")
    assert checkpoint.splitlines()[1] == str(manifest["size"])
    assert checkpoint in clone.git("log", "-1", "--format=%B", sha)
    # The work tree, index and HEAD are untouched; no remote was configured.
    assert clone.git("rev-parse", "HEAD") == head
    assert clone.git("status", "--porcelain") == ""
    assert subprocess.run(
        ["git", "config", "--get-all", "remote.origin.push"], cwd=clone.top, check=False
    ).returncode

    clone.record(1)
    second = publish_log(clone.top, clone.services().ledger)
    assert clone.git("rev-parse", f"{second}^") == sha
    assert json.loads(clone.git("cat-file", "blob", f"{second}:manifest.json"))["size"] > int(
        manifest["size"]
    )


def test_push_refspec_is_set_up_once(clone: Clone) -> None:
    assert ensure_push_refspec(clone.top, "origin") is True
    assert ensure_push_refspec(clone.top, "origin") is False
    publish_log(clone.top, clone.services().ledger, remote="origin")
    specs = clone.git("config", "--get-all", "remote.origin.push").splitlines()
    assert specs == ["HEAD", f"{LOG_REF}:{LOG_REF}"]
    clone.git("remote", "add", "mirror", str(clone.remote))
    clone.git("config", "--add", "remote.mirror.push", "refs/heads/*:refs/heads/*")
    ensure_push_refspec(clone.top, "mirror")
    specs = clone.git("config", "--get-all", "remote.mirror.push").splitlines()
    assert specs == ["refs/heads/*:refs/heads/*", f"{LOG_REF}:{LOG_REF}"]
    with pytest.raises(GitError, match="no remote named 'nowhere'"):
        ensure_push_refspec(clone.top, "nowhere")
    with pytest.raises(GitError, match="is not a remote name"):
        ensure_push_refspec(clone.top, "--upload-pack=x")


def test_pushed_log_verifies_and_the_branch_still_travels(clone: Clone) -> None:
    clone.record(5)
    sha = clone.publish_and_push()
    refs = clone.git("for-each-ref", "--format=%(refname) %(objectname)", cwd=clone.remote)
    assert f"{LOG_REF} {sha}" in refs.splitlines()
    assert "refs/heads/main " in refs
    done = _verify(clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok: origin's {LOG_REF} ({sha[:12]}) verifies: ")
    assert "consistent with the local log" in done.stdout
    # Verification leaves no temporary ref behind.
    assert "refs/flowloom/verify" not in clone.git("for-each-ref")
    # The local log moving on is fine: the remote copy is a prefix of it.
    clone.record(2)
    assert _verify(clone).returncode == 0


def _tamper(clone: Clone, rewrite_manifest: bool) -> str:
    """Push a copy of the published tree with one envelope changed; returns the entry path."""
    published = clone.git("rev-parse", LOG_REF)
    files = clone.git("ls-tree", "-r", "--name-only", published).splitlines()
    path = next(f for f in files if f.startswith("tile/entries/"))
    data = subprocess.run(
        ["git", "cat-file", "blob", f"{published}:{path}"],
        cwd=clone.top,
        capture_output=True,
        check=True,
    ).stdout
    altered = data.replace(b'"session":"s"', b'"session":"x"', 1)
    assert altered != data and len(altered) == len(data)
    scratch = clone.tmp / "tamper"
    scratch.mkdir(exist_ok=True)
    (scratch / "entries").write_bytes(altered)
    index = {"GIT_INDEX_FILE": str(scratch / "index")}
    env = {**clone.env, **index}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=clone.top, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    git("read-tree", published)
    blob = git("hash-object", "-w", str(scratch / "entries"))
    git("update-index", "--cacheinfo", f"100644,{blob},{path}")
    if rewrite_manifest:
        manifest = json.loads(git("cat-file", "blob", f"{published}:manifest.json"))
        manifest["files"][path] = hashlib.sha256(altered).hexdigest()
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        mblob = git("hash-object", "-w", str(scratch / "manifest.json"))
        git("update-index", "--cacheinfo", f"100644,{mblob},manifest.json")
    tree = git("write-tree")
    forged = git("commit-tree", tree, "-p", published, "-m", "forged")
    clone.git("push", "-q", "--force", "origin", f"{forged}:{LOG_REF}")
    return path


def test_tampered_remote_copy_is_named(clone: Clone) -> None:
    clone.record(4)
    clone.publish_and_push()
    local = clone.git("rev-parse", LOG_REF)
    path = _tamper(clone, rewrite_manifest=False)
    done = _verify(clone)
    assert done.returncode == 1
    assert f"manifest: {path} does not match its SHA-256" in done.stdout
    assert "FAILED: origin's refs/flowloom/log" in done.stderr
    assert "Traceback" not in done.stderr
    assert clone.git("rev-parse", LOG_REF) == local  # the local ref is not touched

    _tamper(clone, rewrite_manifest=True)
    done = _verify(clone)
    assert done.returncode == 1
    assert "manifest:" not in done.stdout
    modified = [line for line in done.stdout.splitlines() if ": modified:" in line]
    assert modified and modified[0].startswith("entry ")


def test_rewritten_local_history_is_a_fork(clone: Clone) -> None:
    clone.record(6)
    clone.publish_and_push()
    clone.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{clone.db}{suffix}").unlink(missing_ok=True)
    clone.record(3, what="rewritten")  # same key, another history, shorter than the remote
    done = _verify(clone)
    assert done.returncode == 1
    assert "fork: origin's copy" in done.stdout and "differ within the first" in done.stdout
    clone.record(20, what="rewritten")  # now longer than the remote copy
    done = _verify(clone)
    assert done.returncode == 1
    assert "signs a different tree at size" in done.stdout


def test_rolled_back_local_ledger_is_reported(clone: Clone) -> None:
    clone.record(3)
    clone.close()
    backup = clone.tmp / "backup"
    backup.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{clone.db}{suffix}").exists():
            shutil.copy(f"{clone.db}{suffix}", backup / f"ledger.db{suffix}")
    clone.record(4)
    clone.publish_and_push()
    clone.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{clone.db}{suffix}").unlink(missing_ok=True)
        if (backup / f"ledger.db{suffix}").exists():
            shutil.copy(backup / f"ledger.db{suffix}", f"{clone.db}{suffix}")
    done = _verify(clone)
    assert done.returncode == 1
    assert "rollback: origin's copy signs" in done.stdout
    assert "the local ledger was rolled back or truncated" in done.stdout


def test_remote_errors_are_one_line(clone: Clone, tmp_path: Path) -> None:
    clone.record(1)

    def error(done: subprocess.CompletedProcess[str], code: int) -> str:
        assert done.returncode == code, (done.returncode, done.stderr)
        assert done.stderr.startswith("flowloom: error: ") and done.stderr.count("\n") == 1
        return done.stderr

    assert "origin has no refs/flowloom/log" in error(_verify(clone), 6)
    assert "cannot fetch refs/flowloom/log from nowhere" in error(
        clone.fl("log", "verify", "--remote", "nowhere"), 3
    )
    checkpoint = tmp_path / "cp"
    checkpoint.write_text("x")
    error(clone.fl("log", "verify", "--remote", "origin", "--against", str(checkpoint)), 3)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "needs a git repository" in error(
        clone.fl("log", "verify", "--remote", "origin", cwd=plain), 3
    )
