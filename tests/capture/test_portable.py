"""Portable installs: nothing committed names a path of one machine, and every hook finds
FlowLoom the same way on every clone — `flowloom` on PATH, else `python3 -m flowloom`,
else a message saying what to install. Tested by moving the installation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.capture.agents.install import hook_command
from flowloom.capture.githooks.hooks import HOOK_NAMES
from tests.capture.agent_sandbox import AgentSandbox

SYSTEM_PATH = f"/usr/bin{os.pathsep}/bin"
SETTINGS = {
    "claude-code": ".claude/settings.json",
    "codex": ".codex/hooks.json",
    "cursor": ".cursor/hooks.json",
}


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    box = AgentSandbox(tmp_path)
    box.write("README.md", "project\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "initial")
    return box


def install(directory: Path) -> Path:
    """A FlowLoom installation: a bin directory with `flowloom` and `python3` in it (what a
    virtualenv or pipx provides), running this test's FlowLoom."""
    directory.mkdir(parents=True)
    for name, command in (("flowloom", "-m flowloom"), ("python3", "")):
        script = directory / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" {command} "$@"\n')
        script.chmod(0o755)
    return directory


def agent_hook(
    box: AgentSandbox,
    agent: str,
    event: str,
    payload: dict[str, object],
    path: str,
    *,
    without: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the command the agent's settings file holds for `event`, through sh, as the
    agent does (PATH as given; `without` drops variables)."""
    settings = json.loads((box.repo / SETTINGS[agent]).read_text())
    entries = settings["hooks"][event]
    command = entries[-1]["command"] if agent == "cursor" else entries[-1]["hooks"][0]["command"]
    env = {k: v for k, v in box.env.items() if k not in without}
    env["PATH"] = path
    return subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        cwd=box.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nothing_committed_names_a_path_of_this_machine(box: AgentSandbox) -> None:
    box.init("--agent", "all")
    texts = {name: (box.repo / name).read_text() for name in (*SETTINGS.values(), ".mcp.json")}
    texts.update({f"hooks/{n}": (box.repo / ".git" / "hooks" / n).read_text() for n in HOOK_NAMES})
    for name, text in texts.items():
        for machine in (sys.executable, os.path.dirname(sys.executable), str(box.root)):
            assert machine not in text, (name, machine)
    # Every agent gets the same launcher (Cursor's also answers its prompt hook).
    for agent, file in SETTINGS.items():
        assert json.dumps(hook_command(agent)) in texts[file], agent
    assert hook_command("claude-code").startswith(
        "if command -v flowloom >/dev/null 2>&1; then exec flowloom hook claude-code; "
        "elif python3 -c 'import flowloom' >/dev/null 2>&1; then exec python3 -m flowloom"
    )


def test_hooks_survive_a_moved_installation(box: AgentSandbox) -> None:
    old = install(box.root / "venv-old" / "bin")
    box.init("--agent", "claude-code")
    prompt = box.claude("UserPromptSubmit", prompt="before the move")
    done = agent_hook(
        box, "claude-code", "UserPromptSubmit", prompt, f"{old}{os.pathsep}{SYSTEM_PATH}"
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    # The virtualenv is rebuilt elsewhere; the old one is gone.
    new = install(box.root / "elsewhere" / "venv-new" / "bin")
    for child in old.iterdir():
        child.unlink()
    old.rmdir()
    path = f"{new}{os.pathsep}{SYSTEM_PATH}"
    prompt = box.claude("UserPromptSubmit", prompt="after the move")
    done = agent_hook(box, "claude-code", "UserPromptSubmit", prompt, path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    box.record_decision("D-00000000aa")
    committed = box.commit("linked\n\nFlowLoom-Decision: D-00000000aa", env={"PATH": path})
    assert committed.returncode == 0, committed.stderr
    box.settled()
    assert [box.body(e) for e in box.events("agent.prompt")] == [
        "before the move",
        "after the move",
    ]
    assert box.events("commit.link")[-1]["subject"] == box.head()
    status = box.flowloom("status", env={"PATH": path})
    assert status.returncode == 0, status.stdout
    assert "claude-code ok" in status.stdout


def test_python3_with_flowloom_is_enough(box: AgentSandbox) -> None:
    only_python = install(box.root / "py" / "bin")
    (only_python / "flowloom").unlink()  # no console script: `python3 -m flowloom`
    path = f"{only_python}{os.pathsep}{SYSTEM_PATH}"
    box.init("--agent", "claude-code")
    done = agent_hook(
        box,
        "claude-code",
        "UserPromptSubmit",
        box.claude("UserPromptSubmit", prompt="via python3"),
        path,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert box.commit("unlinked", env={"PATH": path}).returncode == 1  # commit-msg enforces
    box.settled()
    assert [box.body(e) for e in box.events("agent.prompt")] == ["via python3"]


def test_without_flowloom_the_hooks_say_what_to_install(box: AgentSandbox) -> None:
    box.init("--agent", "all")
    gone = ("PYTHONPATH",)  # the system python3 has no FlowLoom either
    done = agent_hook(
        box,
        "claude-code",
        "UserPromptSubmit",
        box.claude("UserPromptSubmit", prompt="lost"),
        SYSTEM_PATH,
        without=gone,
    )
    assert done.returncode == 1  # Claude Code shows a failed hook's message and goes on
    assert done.stderr.startswith(
        "flowloom: FlowLoom is not installed, so this claude-code "
        "session is not recorded: install it where your agent"
    )
    assert "pipx install flowloom" in done.stderr
    cursor = agent_hook(
        box, "cursor", "beforeSubmitPrompt", {"prompt": "x"}, SYSTEM_PATH, without=gone
    )
    assert cursor.stdout == '{"continue": true}\n'  # the prompt still goes through

    env = {k: v for k, v in box.env.items() if k != "PYTHONPATH"}
    env["PATH"] = SYSTEM_PATH
    (box.repo / "work.txt").write_text("x\n")
    box.git("add", "work.txt")
    committed = subprocess.run(
        ["git", "commit", "-q", "-m", "no flowloom"],
        cwd=box.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert committed.returncode == 0  # git goes on; the CI gate still checks
    assert "FlowLoom is not installed here, so the commit-msg hook did nothing" in (
        committed.stderr
    )


def test_status_tells_when_the_hooks_cannot_find_flowloom(box: AgentSandbox) -> None:
    """status runs from wherever it was started; the hooks look on PATH, and find nothing."""
    box.init("--agent", "claude-code")
    clean = {k: v for k, v in box.env.items() if k != "PYTHONPATH"}
    clean["PATH"] = SYSTEM_PATH
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from flowloom.cli.main import main; "
        "sys.argv = ['flowloom', 'status']; main()"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code, src],
        cwd=box.repo,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 1, probe.stdout + probe.stderr
    assert "WARNING: capture is broken: git hook commit-msg cannot find FlowLoom here" in (
        probe.stdout
    )
    init = subprocess.run(
        [sys.executable, "-c", code.replace("'status'", "'init'"), src],
        cwd=box.repo,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert "warning: the hooks cannot find FlowLoom on this machine: install it" in init.stdout
    assert "WARNING: claude-code hooks cannot find FlowLoom here: install it" in probe.stdout


def test_hooks_an_earlier_version_wrote_are_reported_and_rewritten(box: AgentSandbox) -> None:
    box.init("--agent", "claude-code")
    settings = box.repo / ".claude" / "settings.json"
    doc = json.loads(settings.read_text())
    for groups in doc["hooks"].values():
        for group in groups:
            for hook in group["hooks"]:
                hook["command"] = "/home/ann/.venvs/x/bin/python -m flowloom hook claude-code"
    settings.write_text(json.dumps(doc))
    commit_msg = box.repo / ".git" / "hooks" / "commit-msg"
    commit_msg.write_text(
        commit_msg.read_text().replace("# flowloom-hook v2", "# flowloom-hook v1")
    )
    out = box.warned()
    assert "WARNING: claude-code hooks were written by an earlier FlowLoom" in out
    assert (
        "WARNING: capture is broken: git hook commit-msg was written by an earlier FlowLoom" in out
    )
    rewritten = box.ok("init", "--agent", "claude-code")
    assert "commit-msg: updated" in rewritten
    assert "/home/ann" not in settings.read_text()
    commands = [
        hook["command"]
        for groups in json.loads(settings.read_text())["hooks"].values()
        for group in groups
        for hook in group["hooks"]
    ]
    assert commands == [hook_command("claude-code")] * 7  # replaced, not added beside
    assert "ok: capture is working" in box.ok("status")
