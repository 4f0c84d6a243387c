"""Branch scope in a real git repository: reachable from HEAD, the session's own, merges."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowloom.errors import InputError
from flowloom.ledger.log import Ledger
from flowloom.memory.interface import Entity, Observations
from flowloom.memory.service import Memory

OpenMemory = Callable[..., Memory]


class Repo:
    """A git repository with isolated configuration."""

    def __init__(self, root: Path) -> None:
        self.top = root / "repo"
        self.top.mkdir()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
            "GIT_AUTHOR_NAME": "Ann",
            "GIT_AUTHOR_EMAIL": "ann@example.com",
            "GIT_COMMITTER_NAME": "Ann",
            "GIT_COMMITTER_EMAIL": "ann@example.com",
        }
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.top, env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, name: str) -> str:
        (self.top / name).write_text(name)
        self.git("add", name)
        self.git("commit", "-q", "-m", f"add {name}")
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    r = Repo(tmp_path)
    for key, value in r.env.items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)
    return r


@pytest.fixture
def open_memory(ledger: Ledger, repo: Repo) -> Iterator[OpenMemory]:
    opened: list[Memory] = []

    def make(session: str | None = None) -> Memory:
        mem = Memory(ledger, repo=repo.top, session=session)
        opened.append(mem)
        return mem

    yield make
    for mem in opened:
        mem.close()


def found(mem: Memory, word: str, **kw: object) -> list[str]:
    return [h.id for h in mem.search(word, **kw)]  # type: ignore[arg-type]


def test_items_follow_their_branch_until_merged(
    repo: Repo, open_memory: OpenMemory, ledger: Ledger
) -> None:
    base = repo.commit("base.txt")
    mem = open_memory(session="s-main")
    mem.create_entities([Entity("Mainline", "note", ("shared tortoise fact",))])

    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature.txt")
    feature = open_memory(session="s-feature")
    feature.create_entities([Entity("FeatureNote", "note", ("feature tortoise fact",))])
    ledger.record(
        "agent.prompt",
        body=b"tortoise prompt on the branch",
        meta={
            "session": "s-feature",
            "git": {"branch": "feature", "head": repo.git("rev-parse", "HEAD")},
        },
    )
    assert sorted(found(feature, "tortoise")) == sorted(["Mainline", "FeatureNote", "2"])

    repo.git("checkout", "-q", "main")
    on_main = open_memory(session="s-other")
    assert found(on_main, "tortoise") == ["Mainline"]
    assert sorted(found(on_main, "tortoise", all_branches=True)) == ["2", "FeatureNote", "Mainline"]
    assert sorted(found(on_main, "tortoise", branch="feature")) == ["2", "FeatureNote", "Mainline"]
    assert found(on_main, "tortoise", branch=base) == ["Mainline"]
    # The asking session sees its own unmerged work from any branch.
    mine = open_memory(session="s-feature")
    assert sorted(found(mine, "tortoise")) == ["2", "FeatureNote", "Mainline"]
    with pytest.raises(InputError, match="names no commit"):
        on_main.search("tortoise", branch="no-such-branch")

    # Work on main continues; then the feature is merged: its items become visible.
    repo.commit("more.txt")
    assert found(on_main, "tortoise") == ["Mainline"]
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    assert sorted(found(on_main, "tortoise")) == ["2", "FeatureNote", "Mainline"]


def test_items_outside_git_are_visible_everywhere(
    repo: Repo, open_memory: OpenMemory, ledger: Ledger
) -> None:
    repo.commit("a.txt")
    ledger.record("agent.prompt", body=b"walrus outside git", meta={"session": "x"})
    mem = open_memory()
    assert found(mem, "walrus") == ["0"]


def test_unborn_branch_sees_only_items_without_a_commit(
    repo: Repo, open_memory: OpenMemory, ledger: Ledger
) -> None:
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    ledger.record("agent.prompt", body=b"narwhal from elsewhere", meta={"git": {"head": sha}})
    ledger.record("agent.prompt", body=b"narwhal no git")
    mem = open_memory()
    assert found(mem, "narwhal") == ["1"]


def test_memory_events_record_the_branch_and_head(
    repo: Repo, open_memory: OpenMemory, ledger: Ledger
) -> None:
    head = repo.commit("a.txt")
    mem = open_memory(session="s1")
    mem.create_entities([Entity("E", "t")])
    mem.add_observations([Observations("E", ("fact",))])
    from flowloom.ledger.event import Event

    event = Event.parse(ledger.entry(1).envelope)
    assert event.git is not None
    assert (event.git.branch, event.git.head, event.session) == ("main", head, "s1")
    (hit,) = mem.search("fact")
    assert hit.commit == head
