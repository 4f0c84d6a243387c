"""`flowloom init` (policy file, agent hooks, CI jobs), `status`, and the hook's light path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from flowloom.ci.templates import InstallSpec, job_script, render
from flowloom.config import load_settings
from flowloom.errors import ConfigError
from flowloom.repo.policy import Policy, load_policy
from tests.capture.git_sandbox import DECISION, Sandbox


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(tmp_path)
    sandbox.commit_ok("initial commit")
    return sandbox


def test_policy_file_keeps_ledger_settings_and_existing_values(box: Sandbox) -> None:
    config = box.repo / ".flowloom" / "config.toml"
    config.parent.mkdir()
    original = '# team settings\n[ledger]\nproject = "acme-payments"\n\n[policy]\nenforce = false\n'
    config.write_text(original)
    out = box.ok("init")
    assert "policy .flowloom/config.toml: updated" in out
    text = config.read_text()
    assert text.startswith('# team settings\n[ledger]\nproject = "acme-payments"\n')
    data = tomllib.loads(text)
    assert data["ledger"] == {"project": "acme-payments"}
    assert data["policy"]["enforce"] is False  # the team's value is kept
    assert data["policy"]["protected_branches"] == ["main", "master"]  # missing keys added
    assert load_settings(box.repo, box.env).project == "acme-payments"
    assert "policy .flowloom/config.toml: unchanged" in box.ok("init")


def test_policy_table_is_appended_to_a_file_without_one(box: Sandbox) -> None:
    config = box.repo / ".flowloom" / "config.toml"
    config.parent.mkdir()
    config.write_text('[ledger]\nproject = "acme"\n')
    box.ok("init")
    assert load_policy(box.repo) == Policy()
    assert tomllib.loads(config.read_text())["ledger"] == {"project": "acme"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[policy]\nenforec = false\n", "unknown key(s): enforec"),
        ("[policy]\nenforce = 'no'\n", "enforce must be true or false"),
        ("[policy]\nprotected_branches = 'main'\n", "list of branch names"),
    ],
)
def test_broken_policy_is_refused_with_one_line(box: Sandbox, table: str, message: str) -> None:
    config = box.repo / ".flowloom" / "config.toml"
    config.parent.mkdir()
    config.write_text(table)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_policy(box.repo)
    result = box.flowloom("init")
    assert result.returncode == 5
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_protected_branch_patterns(box: Sandbox) -> None:
    policy = Policy(protected_branches=("main", "release/*"))
    assert policy.is_protected("main")
    assert policy.is_protected("refs/heads/release/1.2")
    assert not policy.is_protected("feature/x")
    assert not policy.is_protected(None)


def test_init_records_a_config_change_once(box: Sandbox) -> None:
    box.ok("init")
    changes = box.events("config.change")
    assert len(changes) == 1
    assert changes[0]["refs"]["action"] == "init"
    assert changes[0]["refs"]["policy"] == "created"
    assert set(changes[0]["refs"]["hooks"]) == {
        "prepare-commit-msg",
        "commit-msg",
        "post-commit",
        "pre-push",
    }


def test_init_outside_a_repository_is_a_one_line_error(box: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    result = box.run([sys.executable, "-m", "flowloom", "init"], cwd=outside)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert "not inside a git work tree" in result.stderr


PIN = "flowloom==0.1.0"


def test_ci_github_workflow_is_written_once(box: Sandbox) -> None:
    out = box.ok("init", "--ci", "github", "--ci-install", PIN)
    workflow = box.repo / ".github" / "workflows" / "flowloom.yml"
    assert "ci .github/workflows/flowloom.yml: created" in out
    expected = render("github", InstallSpec(PIN, "as given (--ci-install)"))
    assert workflow.read_text() == expected
    assert "flowloom check" in expected and "fetch-depth: 0" in expected
    again = box.ok("init", "--ci", "github", "--ci-install", PIN)
    assert "ci .github/workflows/flowloom.yml: unchanged" in again
    workflow.write_text(expected + "# our own tweak\n")
    assert "left as is" in box.ok("init", "--ci", "github", "--ci-install", PIN)
    assert workflow.read_text().endswith("# our own tweak\n")


def test_ci_gitlab_job(box: Sandbox, tmp_path: Path) -> None:
    out = box.ok("init", "--ci", "gitlab", "--ci-install", PIN)
    assert "ci .gitlab-ci.yml: created" in out
    expected = render("gitlab", InstallSpec(PIN, "as given (--ci-install)"))
    assert (box.repo / ".gitlab-ci.yml").read_text() == expected
    other = Sandbox(tmp_path / "other")
    other.commit_ok("initial")
    (other.repo / ".gitlab-ci.yml").write_text("stages: [test]\n")
    out = other.ok("init", "--ci", "gitlab", "--ci-install", PIN)
    assert "ci .flowloom/gitlab-ci.yml: created; add to .gitlab-ci.yml:" in out
    assert "local: .flowloom/gitlab-ci.yml" in out
    assert (other.repo / ".flowloom" / "gitlab-ci.yml").read_text() == expected
    assert (other.repo / ".gitlab-ci.yml").read_text() == "stages: [test]\n"


def test_ci_scripts_are_posix_sh(tmp_path: Path) -> None:
    """The shell of every CI job runs under sh -n (syntax) without complaint."""
    for kind in ("github", "gitlab", "jenkins", "bitbucket"):
        path = tmp_path / f"{kind}.sh"
        path.write_text(job_script(kind, None))
        result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, (kind, result.stderr)


def test_agent_hooks_are_installed_and_removed(box: Sandbox) -> None:
    out = box.ok("init", "--agent", "claude-code")
    assert "agent hooks: claude-code" in out
    settings = box.repo / ".claude" / "settings.json"
    assert "exec flowloom hook claude-code" in settings.read_text()
    assert "claude-code ok" in box.ok("status")
    assert "agent hooks: claude-code (unchanged)" in box.ok("init", "--agent", "claude-code")
    box.ok("uninstall")
    assert not settings.exists() or "flowloom hook" not in settings.read_text()


def test_status_reports_a_healthy_repository(box: Sandbox) -> None:
    box.init()
    box.record_decision()
    box.commit_ok(f"linked\n\nFlowLoom-Decision: {DECISION}")
    out = box.ok("status")
    assert "ok: capture is working" in out
    assert "linked commits: 1 of 1 since FlowLoom was adopted (100%)" in out
    assert "last event" in out
    data = json.loads(box.ok("status", "--json"))
    assert data["ok"] is True
    assert data["warnings"] == []
    assert data["linked"]["commits"] == 1
    assert data["ledger"]["size"] == len(box.events())
    assert data["ledger"]["last_event"]["kind"] == "commit.link"
    assert all(h["ok"] for h in data["hooks"])


def test_status_warns_when_commits_outrun_the_ledger(box: Sandbox) -> None:
    box.init()
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600)) + "+0000"
    box.commit_without_hooks("no hook saw this", env={"GIT_COMMITTER_DATE": future})
    out = box.warned()
    assert "WARNING: commits were made after the last ledger event" in out


def test_status_warns_when_few_commits_are_linked(box: Sandbox) -> None:
    box.init()
    for i in range(5):
        box.commit_without_hooks(f"unlinked {i}")
    out = box.warned()
    assert "WARNING: only 0 of 5 recent commits are linked to a decision" in out


def test_status_outside_flowloom(box: Sandbox) -> None:
    out = box.warned()
    assert "WARNING: FlowLoom is not set up in this repository: run flowloom init" in out


# -- the hook's light path -------------------------------------------------------------


def _imported_by_hook(box: Sandbox, message_file: Path) -> set[str]:
    result = box.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "flowloom",
            "git-hook",
            "commit-msg",
            str(message_file),
        ]
    )
    assert result.returncode == 0, result.stderr
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_commit_msg_fast_path_imports_only_the_standard_library(box: Sandbox) -> None:
    box.init()
    box.record_decision()
    message = box.root / "msg"
    message.write_text(f"linked\n\nFlowLoom-Decision: {DECISION}\n")
    box.commit_ok(f"warm the cache\n\nFlowLoom-Decision: {DECISION}")
    modules = _imported_by_hook(box, message)
    heavy = {m for m in modules if m.split(".")[0] in ("click", "cryptography", "psycopg")}
    assert not heavy
    flowloom = {m for m in modules if m.startswith("flowloom")}
    assert flowloom <= {
        "flowloom",
        "flowloom.capture",
        "flowloom.capture.githooks",
        "flowloom.capture.githooks.hookmain",
        "flowloom.repo",
        "flowloom.repo.trailers",
        "flowloom.store",  # a docstring
        "flowloom.store.urls",  # standard library only, a few lines
    }, flowloom
    assert not {"tomllib", "subprocess", "dataclasses", "typing"} & modules


def test_hook_cache_follows_policy_edits(box: Sandbox) -> None:
    box.init()
    box.record_decision()
    box.commit_ok(f"warm the cache\n\nFlowLoom-Decision: {DECISION}")
    assert (box.common_dir() / "flowloom" / "hook-cache.json").exists()
    box.set_policy(enforce=False)
    box.commit_ok("unlinked, but the policy no longer enforces")
    box.set_policy(enforce=True)
    assert box.commit("unlinked again").returncode == 1
    # An environment change (another ledger) is a cache miss as well.
    other = box.root / "other.db"
    result = box.commit(
        f"linked\n\nFlowLoom-Decision: {DECISION}", env={"FLOWLOOM_DATABASE": str(other)}
    )
    assert result.returncode == 1
    assert "not recorded" in result.stderr


def test_git_hook_through_the_installed_command(box: Sandbox) -> None:
    box.init()
    bindir = Path(sys.executable).parent
    result = box.run([str(bindir / "flowloom"), "git-hook", "no-such-hook"])
    assert result.returncode == 2
    assert "usage: flowloom git-hook" in result.stderr
    message = box.root / "msg"
    message.write_text("unlinked\n")
    result = box.run([str(bindir / "flowloom"), "git-hook", "commit-msg", str(message)])
    assert result.returncode == 1
    assert "commit refused" in result.stderr
    assert os.access(bindir / "flowloom", os.X_OK)


def test_init_makes_capture_state_an_older_version_left_open_private(box: Sandbox) -> None:
    state = box.repo / ".git" / "flowloom"
    box.ok("log", "append", "--kind", "agent.prompt")  # a ledger made before init
    os.chmod(state, 0o755)
    db = state / "ledger.db"
    os.chmod(db, 0o644)
    out = box.ok("init", "--agent", "none")
    assert "capture state made private (0700 directories, 0600 ledger files)" in out
    assert (state.stat().st_mode & 0o777, db.stat().st_mode & 0o777) == (0o700, 0o600)
    assert box.events("config.change")[-1]["refs"]["private"] >= 2
    assert "made private" not in box.ok("init", "--agent", "none")


def test_init_for_codex_says_how_codex_comes_to_trust_the_hooks(box: Sandbox) -> None:
    out = box.ok("init", "--agent", "codex")
    assert "Codex runs a project's hooks only once you trust them" in out
    assert "codex exec --dangerously-bypass-hook-trust" in out
    config = tomllib.loads((box.repo / ".codex" / "config.toml").read_text())
    assert config["features"] == {"hooks": True}
