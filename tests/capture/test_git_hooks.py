"""Installing FlowLoom's git hooks beside others: chaining, core.hooksPath, pre-commit."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.capture.githooks.hooks import CHAINED_SUFFIX, HOOK_NAMES, MARKER
from tests.capture.git_sandbox import DECISION, Sandbox

RECORDER = """#!/bin/sh
# someone's own {name} hook
echo "{name} $*" >> "{log}"
{stdin}
exit {status}
"""


def own_hook(box: Sandbox, name: str, *, status: int = 0, directory: Path | None = None) -> Path:
    """A hook that appends its name, arguments (and stdin) to hooks.log."""
    directory = directory or box.repo / ".git" / "hooks"
    directory.mkdir(parents=True, exist_ok=True)
    log = box.root / "hooks.log"
    stdin = f'cat >> "{log}"' if name == "pre-push" else ""
    path = directory / name
    path.write_text(RECORDER.format(name=name, log=log, stdin=stdin, status=status))
    path.chmod(0o755)
    return path


def hook_log(box: Sandbox) -> str:
    path = box.root / "hooks.log"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(tmp_path)
    sandbox.commit_ok("initial commit")
    return sandbox


def test_init_installs_four_marked_executable_hooks(box: Sandbox) -> None:
    out = box.ok("init")
    for name in HOOK_NAMES:
        assert f"{name}: installed" in out
        path = box.repo / ".git" / "hooks" / name
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n" + MARKER + "\n")
        assert sys.executable not in text and str(box.root) not in text  # no machine path
        assert f'flowloom_run git-hook {name} "$@"' in text
        assert stat.S_IMODE(path.stat().st_mode) & 0o111 == 0o111


def test_init_twice_changes_nothing(box: Sandbox) -> None:
    box.ok("init")
    files = [box.repo / ".git" / "hooks" / n for n in HOOK_NAMES]
    files.append(box.repo / ".flowloom" / "config.toml")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    events = len(box.events())
    out = box.ok("init")
    assert "nothing to change" in out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert len(box.events()) == events


def test_existing_hooks_are_chained_and_still_run(box: Sandbox) -> None:
    originals = {name: own_hook(box, name).read_bytes() for name in HOOK_NAMES}
    out = box.ok("init")
    for name in HOOK_NAMES:
        assert f"{name}: chained" in out
        chained = box.repo / ".git" / "hooks" / (name + CHAINED_SUFFIX)
        assert chained.read_bytes() == originals[name]
    box.git("add", ".flowloom")
    box.commit_ok("Adopt", env={"FLOWLOOM_OVERRIDE": "adopt"})
    log = hook_log(box)
    assert "prepare-commit-msg .git/COMMIT_EDITMSG message" in log
    assert "commit-msg .git/COMMIT_EDITMSG" in log
    assert "post-commit" in log
    # FlowLoom's own part ran too.
    assert ("FlowLoom-Override", "adopt") in box.trailers()
    assert box.events("commit.link")[-1]["subject"] == box.head()


def test_failing_chained_hook_stops_the_commit_with_its_status(box: Sandbox) -> None:
    own_hook(box, "commit-msg", status=3)
    box.init(commit=False)
    box.git("add", ".flowloom")
    result = box.commit("Adopt", env={"FLOWLOOM_OVERRIDE": "adopt"})
    assert result.returncode != 0
    assert "commit-msg" in hook_log(box)
    assert box.events("override.grant") == []  # ours never ran


def test_pre_push_passes_stdin_to_both_hooks(box: Sandbox, tmp_path: Path) -> None:
    own_hook(box, "pre-push")
    box.init()
    remote = tmp_path / "remote.git"
    box.run(["git", "init", "-q", "--bare", str(remote)])
    box.git("remote", "add", "origin", str(remote))
    result = box.run(["git", "push", "-q", "origin", "main"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    log = hook_log(box)
    assert f"pre-push origin {remote}" in log
    assert f"refs/heads/main {box.head()} refs/heads/main" in log  # stdin reached it


def test_core_hooks_path_is_honoured(box: Sandbox) -> None:
    box.git("config", "core.hooksPath", ".githooks")
    own_hook(box, "commit-msg", directory=box.repo / ".githooks")
    out = box.ok("init")
    assert str(box.repo / ".githooks") in out
    for name in HOOK_NAMES:
        assert (box.repo / ".githooks" / name).read_text().count(MARKER) == 1
        assert not (box.repo / ".git" / "hooks" / name).exists()
    assert (box.repo / ".githooks" / ("commit-msg" + CHAINED_SUFFIX)).exists()
    box.git("add", ".flowloom")
    box.commit_ok("Adopt", env={"FLOWLOOM_OVERRIDE": "adopt"})
    assert box.commit("unlinked").returncode == 1
    assert hook_log(box).count("commit-msg") == 2


def test_hooks_path_outside_the_repository_is_noted(box: Sandbox, tmp_path: Path) -> None:
    shared = tmp_path / "shared-hooks"
    box.git("config", "core.hooksPath", str(shared))
    out = box.ok("init")
    assert "outside this repository" in out
    assert (shared / "commit-msg").exists()


PRE_COMMIT_HOOK = """#!/usr/bin/env bash
# File generated by pre-commit: https://pre-commit.com
# ID: 138fd403232d2ddd5efb44317e38bf03
echo "pre-commit framework $*" >> "{log}"
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$HERE/commit-msg.legacy" ]; then "$HERE/commit-msg.legacy" "$@" || exit $?; fi
"""


def test_pre_commit_framework_hook_is_chained(box: Sandbox) -> None:
    (box.repo / ".pre-commit-config.yaml").write_text("repos: []\n")
    hook = box.repo / ".git" / "hooks" / "commit-msg"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(PRE_COMMIT_HOOK.format(log=box.root / "hooks.log"))
    hook.chmod(0o755)
    out = box.ok("init")
    assert "commit-msg: chained (pre-commit hook moved to commit-msg.flowloom-chained" in out
    assert "pre-commit is configured" in out
    box.git("add", ".flowloom", ".pre-commit-config.yaml")
    box.commit_ok("Adopt", env={"FLOWLOOM_OVERRIDE": "adopt"})
    assert "pre-commit framework .git/COMMIT_EDITMSG" in hook_log(box)
    assert box.commit("unlinked").returncode == 1


def test_pre_commit_install_after_init_keeps_flowloom_running(box: Sandbox) -> None:
    box.init()
    hooks = box.repo / ".git" / "hooks"
    # What `pre-commit install --hook-type commit-msg` does to a hook it finds.
    (hooks / "commit-msg").rename(hooks / "commit-msg.legacy")
    (hooks / "commit-msg").write_text(PRE_COMMIT_HOOK.format(log=box.root / "hooks.log"))
    (hooks / "commit-msg").chmod(0o755)
    assert box.commit("unlinked").returncode == 1  # FlowLoom still enforces, via pre-commit
    status = box.ok("status")
    assert "commit-msg          ok via pre-commit (.legacy)" in status
    assert "commit-msg: unchanged (run by pre-commit as .legacy)" in box.ok("init")
    out = box.ok("uninstall")
    assert "commit-msg: removed (was run by pre-commit as .legacy)" in out
    assert not (hooks / "commit-msg.legacy").exists()
    assert "pre-commit.com" in (hooks / "commit-msg").read_text()


def test_uninstall_restores_chained_hooks_and_keeps_policy_and_ledger(box: Sandbox) -> None:
    originals = {name: own_hook(box, name).read_bytes() for name in ("commit-msg", "pre-push")}
    box.init()
    size = len(box.events())
    out = box.ok("uninstall")
    hooks = box.repo / ".git" / "hooks"
    assert "commit-msg: restored" in out
    assert "post-commit: removed" in out
    for name, content in originals.items():
        assert (hooks / name).read_bytes() == content
        assert not (hooks / (name + CHAINED_SUFFIX)).exists()
    assert not (hooks / "post-commit").exists()
    assert not (hooks / "prepare-commit-msg").exists()
    assert (box.repo / ".flowloom" / "config.toml").exists()
    events = box.events()
    assert len(events) == size + 1
    assert events[-1]["kind"] == "config.change"
    assert events[-1]["refs"]["action"] == "uninstall"
    assert box.commit("unlinked, hooks gone").returncode == 0
    # And back again.
    assert "commit-msg: chained" in box.ok("init")


def test_status_warns_loudly_when_a_hook_is_missing_or_not_executable(box: Sandbox) -> None:
    box.init()
    assert "ok: capture is working" in box.ok("status")
    hooks = box.repo / ".git" / "hooks"
    (hooks / "post-commit").unlink()
    (hooks / "commit-msg").chmod(0o644)
    out = box.warned()
    assert "WARNING: capture is broken: git hook post-commit missing" in out
    assert "WARNING: capture is broken: git hook commit-msg not executable" in out
    assert "ok: capture" not in out


def test_conflicting_chained_hook_is_refused_in_one_line(box: Sandbox) -> None:
    box.init()
    hooks = box.repo / ".git" / "hooks"
    own_hook(box, "commit-msg")  # someone replaced our hook...
    (hooks / ("commit-msg" + CHAINED_SUFFIX)).write_text("#!/bin/sh\n")  # ...and one is chained
    result = box.flowloom("init")
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert "merge" in result.stderr


def test_decision_pending_link_flows_through_chained_prepare_hook(box: Sandbox) -> None:
    from flowloom.capture.state import PendingLink, write_pending

    own_hook(box, "prepare-commit-msg")
    box.init()
    box.record_decision()
    write_pending(box.common_dir(), PendingLink(decision=DECISION, session="s-9"))
    box.commit_ok("linked via pending")
    assert ("FlowLoom-Session", "s-9") in box.trailers()


def test_pre_push_sends_the_log_ahead_of_the_branch(box: Sandbox, tmp_path: Path) -> None:
    """The log that links a pushed commit is on the remote when the branch arrives."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "-b", "main", "--bare", str(remote)], check=True)
    box.init("--agent", "none")
    box.git("remote", "add", "origin", str(remote))
    box.record_decision()
    box.write("feature.txt", "hello\n")
    box.git("add", "feature.txt")
    sha = box.commit_ok(f"add feature\n\nFlowLoom-Decision: {DECISION}")
    box.git("push", "-q", "origin", "main")
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "refs/flowloom/log"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    entries = b"".join(
        subprocess.run(
            ["git", "cat-file", "blob", f"refs/flowloom/log:{path}"],
            cwd=remote,
            capture_output=True,
            check=True,
        ).stdout
        for path in listing
        if path.startswith("tile/entries/")
    )
    assert sha.encode() in entries  # the commit.link of the pushed commit travelled with it
