"""Serverless teams: one published log per repository, one writer, no silent collision.

Two real clones of one bare remote, each with FlowLoom's git hooks and its own local
ledger (its own key and origin). The first clone's pre-push publishes its log on
``refs/flowloom/log``; the second clone's push says, as an error, that the remote's log
is another clone's and leaves it alone, while its code still goes out (docs/sync.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.capture.git_sandbox import Sandbox

LOG_REF = "refs/flowloom/log"


def remote_log(remote: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", LOG_REF],
        cwd=remote,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def push(box: Sandbox) -> subprocess.CompletedProcess[str]:
    done = box.run(["git", "push", "-q", "origin", "main"])
    assert done.returncode == 0, done.stderr
    return done


def test_a_second_clone_does_not_publish_over_the_first_clones_log(tmp_path: Path) -> None:
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    (tmp_path / "a").mkdir()
    ann = Sandbox(tmp_path / "a")
    ann.git("remote", "add", "origin", str(remote))
    ann.init()
    first = push(ann)
    assert "flowloom: error" not in first.stderr
    published = remote_log(remote)
    assert published

    (tmp_path / "b").mkdir()
    subprocess.run(
        ["git", "clone", "-q", str(remote), str(tmp_path / "b" / "repo")],
        check=True,
        capture_output=True,
    )
    bob = Sandbox(tmp_path / "b")
    bob.ok("init")
    bob.write("bob.txt", "bob's work\n")
    bob.git("add", "bob.txt")
    bob.git("commit", "-q", "-m", "Bob's work", env={"FLOWLOOM_OVERRIDE": "no decision yet"})
    refused = push(bob)  # the code goes out...
    assert "flowloom: error: origin's refs/flowloom/log is another clone's log" in refused.stderr
    assert "docs/sync.md" in refused.stderr
    assert remote_log(remote) == published  # ...and the first clone's log stays
    heads = subprocess.run(
        ["git", "rev-parse", "main"], cwd=remote, capture_output=True, text=True, check=True
    )
    assert heads.stdout.strip() == bob.head()

    # The writer carries on: its next publication fast-forwards its own.
    ann.git("pull", "-q", "--no-rebase", "origin", "main")
    ann.write("ann.txt", "ann's work\n")
    ann.git("add", "ann.txt")
    ann.git("commit", "-q", "-m", "Ann's work", env={"FLOWLOOM_OVERRIDE": "no decision yet"})
    again = push(ann)
    assert "flowloom: error" not in again.stderr
    advanced = remote_log(remote)
    assert advanced != published
    ancestry = subprocess.run(
        ["git", "merge-base", "--is-ancestor", published, advanced], cwd=remote, check=False
    )
    assert ancestry.returncode == 0
    # And the second clone is told again, every push, until it is resolved.
    bob.git("pull", "-q", "--no-rebase", "origin", "main")
    assert "another clone's log" in push(bob).stderr
