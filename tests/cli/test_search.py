"""`flowloom search`, run as a user runs it: a real process, a real database, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.services import open_store
from tests.support.ledgers import make_ledger


class Cli:
    """`python -m flowloom` with an isolated home, outside any git repository."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.database = database
        self.env = {
            **os.environ,
            "FLOWLOOM_HOME": str(tmp_path / "home"),
            "FLOWLOOM_DATABASE": database,
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
            "GIT_CEILING_DIRECTORIES": str(tmp_path),
        }
        self.env.pop("FLOWLOOM_SESSION", None)

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=self.cwd,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def fill(self, tmp_path: Path) -> None:
        store = open_store(self.database)
        try:
            ledger = make_ledger(store, tmp_path / "keys")
            prompt = ledger.record(
                "agent.prompt", body=b"make refunds idempotent", meta={"session": "s1"}
            )
            DecisionBook(ledger).record(
                title="Idempotent refunds with a request key",
                requested_by="alice",
                rationale="retries must not refund twice",
                files=["src/pay/refunds.py"],
                prompt_entry=prompt.index,
            )
            ledger.record(
                "agent.response", body=b"Added a unique request key.", meta={"session": "s1"}
            )
        finally:
            store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    if request.param == "sqlite":
        database = str(tmp_path / "ledger.db")
    else:
        database = request.getfixturevalue("pg_url")
    c = Cli(tmp_path, database)
    c.fill(tmp_path)
    return c


def test_search_prints_ranked_hits_with_snippets(cli: Cli) -> None:
    result = cli("search", "refunds")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["1.", "decision"]
    assert "Idempotent refunds with a request key" in lines[0]
    assert "files: src/pay/refunds.py" in lines[1]
    assert "«refunds»" in result.stdout
    assert "prompt" in result.stdout


def test_search_json_and_filters(cli: Cli) -> None:
    result = cli("search", "--json", "refunds", "--kind", "prompt")
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["kind"] for h in hits] == ["prompt"]
    assert hits[0]["snippet"] == "make «refunds» idempotent"
    assert hits[0]["session"] == "s1"
    by_file = cli("search", "--json", "refunds", "--file", "src/pay")
    assert [json.loads(x)["kind"] for x in by_file.stdout.splitlines()] == ["decision"]
    by_author = cli("search", "--json", "--author", "alice", "refunds")
    assert [json.loads(x)["kind"] for x in by_author.stdout.splitlines()] == ["decision"]
    assert cli("search", "--json", "refunds", "--until", "2000-01-01").stdout == ""
    limited = cli("search", "--json", "--limit", "1", "idempotent")
    assert len(limited.stdout.splitlines()) == 1


def test_search_accepts_any_text_and_reports_bad_options(cli: Cli) -> None:
    odd = cli("search", 'refunds" OR (NEAR', "*:")
    assert odd.returncode == 0, odd.stderr
    none = cli("search", "nothing-like-this-here")
    assert none.returncode == 0 and none.stdout == "" and "no matches" in none.stderr
    bad_time = cli("search", "refunds", "--since", "last tuesday")
    assert bad_time.returncode == 3 and "not a date" in bad_time.stderr
    outside_git = cli("search", "refunds", "--branch", "main")
    assert outside_git.returncode == 3 and "git repository" in outside_git.stderr
    both = cli("search", "refunds", "--branch", "main", "--all-branches")
    assert both.returncode == 2
    assert cli("search", "x", "--kind", "tweet").returncode == 2


def test_search_in_a_repository_sees_its_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLOWLOOM_"))},
        "HOME": str(tmp_path),
        "FLOWLOOM_HOME": str(tmp_path / "home"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "GIT_AUTHOR_NAME": "Ann",
        "GIT_AUTHOR_EMAIL": "ann@example.com",
        "GIT_COMMITTER_NAME": "Ann",
        "GIT_COMMITTER_EMAIL": "ann@example.com",
    }

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=repo, env=env, input=input, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    def git(*args: str) -> None:
        assert run("git", *args).returncode == 0

    def fl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(sys.executable, "-m", "flowloom", *args, input=input)

    git("init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "a")
    git("checkout", "-q", "-b", "feature")
    (repo / "b.txt").write_text("b")
    git("add", "b.txt")
    git("commit", "-q", "-m", "b")
    line = '{"type":"entity","name":"Flamingo","entityType":"note","observations":["pink"]}'
    assert fl("memory", "import", "-", input=line).returncode == 0
    assert "Flamingo" in fl("search", "pink").stdout
    git("checkout", "-q", "main")
    assert fl("search", "pink").stdout == ""
    assert "Flamingo" in fl("search", "pink", "--branch", "feature").stdout
    assert "Flamingo" in fl("search", "pink", "--all-branches").stdout
    assert "Flamingo" in fl("search", "pink", "--session", "nobody", "--all-branches").stdout
    missing = fl("search", "pink", "--branch", "nope")
    assert missing.returncode == 3 and "names no commit" in missing.stderr
