"""`flowloom demo`: the main job, end to end, in a scratch repository.

A newcomer sees what FlowLoom is for in under a minute, on the embedded SQLite default,
with the same commands they would type: a git repository set up with `flowloom init`,
an AI coding session replayed through the hooks `init` installed (prompt, file write,
reply), the auto-commit and its trailers, `flowloom why` on the new line, the commit
gate refusing an unlinked commit and accepting an audited override, an approval signed
with a reviewer's own SSH key (verified against the committed allowed-signers file),
`flowloom check`, a 21 CFR Part 11 report, and the record verified offline with the
log's public key alone — then an edit behind FlowLoom's back, caught.

Everything lives in a temporary directory (or --dir) with its own HOME, git identity
and FlowLoom home, so nothing of the user's is read or touched. Needs git; the signed
approval needs ssh-keygen (OpenSSH) and is skipped, saying so, without it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flowloom.errors import ConfigError

__all__ = ["demo"]

PROMPT = "Add a greeting helper for PAY-7"
REPLY = "I added greeting.py with greet(name), which returns a friendly greeting."
CONTENT = 'def greet(name):\n    return f"Hello, {name}!"\n'
SESSION = "7d1c9a2e-4b5f-4e8a-9c3d-2f6a1b0e5d47"
_WAIT_S = 60.0


def _step(number: int, text: str) -> None:
    click.secho(f"\n{number}. {text}", bold=True)


def _say(text: str) -> None:
    click.echo(f"   {text}")


def _show(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        click.echo(f"     | {line}")


class _Sandbox:
    """The scratch repository and the environment every command of the demo runs in."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.repo = scratch / "repo"
        home = scratch / "home"
        home.mkdir(parents=True, exist_ok=True)
        shim = scratch / "bin"
        shim.mkdir(exist_ok=True)
        launcher = shim / "flowloom"  # the hooks find `flowloom` on PATH, as installed
        launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m flowloom "$@"\n')
        launcher.chmod(0o755)
        keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        self.env = {k: os.environ[k] for k in keep if k in os.environ}
        self.env.update(
            {
                "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_RUNTIME_DIR": str(home / "run"),
                "FLOWLOOM_HOME": str(scratch / "flowloom-home"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                "GIT_AUTHOR_NAME": "Ann Author",
                "GIT_AUTHOR_EMAIL": "ann@example.com",
                "GIT_COMMITTER_NAME": "Ann Author",
                "GIT_COMMITTER_EMAIL": "ann@example.com",
                "USER": "ann",
                "LOGNAME": "ann",
            }
        )
        (home / "run").mkdir(mode=0o700, exist_ok=True)

    def run(
        self, args: list[str], *, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=self.repo,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def must(self, args: list[str], **kwargs: Any) -> str:
        done = self.run(args, **kwargs)
        if done.returncode != 0:
            raise click.ClickException(
                f"demo step failed: {' '.join(args)}: {(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def flowloom(self, *args: str, **kwargs: Any) -> str:
        """`flowloom ARGS`, shown as typed, output shown below; must succeed."""
        click.echo(f"   $ flowloom {' '.join(shlex.quote(a) for a in args)}")
        out = self.must([sys.executable, "-m", "flowloom", *args], **kwargs)
        _show(out)
        return out

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.must(["git", *args], env=env)

    def hook(self, command: str, payload: dict[str, Any]) -> None:
        """Run an installed hook command exactly as Claude Code runs it."""
        self.must(["sh", "-c", command], input=json.dumps(payload))

    def settle(self) -> None:
        """Wait until the hooks' background drainer has recorded everything spooled and
        made the commits asked of it."""
        from flowloom.capture import autocommit, health

        state = str(self.repo / ".git" / "flowloom")
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline:
            if not autocommit.jobs_waiting(state) and health.backlog(state).files == 0:
                return
            time.sleep(0.05)
        raise click.ClickException("demo: the hooks' events were not recorded in time")


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Keep the demo here.")
def demo(directory: str | None) -> None:
    """Show the main job end to end: capture, commit gate, approval, report, verification."""
    if shutil.which("git") is None:
        raise ConfigError("the demo needs git on PATH")
    scratch = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="flowloom-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    if (scratch / "repo").exists():
        shutil.rmtree(scratch / "repo")
    box = _Sandbox(scratch)
    box.repo.mkdir()
    started = time.monotonic()

    _step(1, "A git repository, set up for FlowLoom")
    box.git("init", "-q", "-b", "main")
    (box.repo / "README.md").write_text("# Payments\n")
    box.git("add", "README.md")
    box.git("commit", "-q", "-m", "Initial commit")
    box.flowloom("init", "--agent", "claude-code")
    reviewer = _reviewer_key(box)
    box.git("add", ".flowloom", ".claude", ".mcp.json")
    box.git("commit", "-q", "-m", "Adopt FlowLoom", env={"FLOWLOOM_OVERRIDE": "adopt FlowLoom"})
    _say("The policy, the git hooks and Claude Code's hooks are in place; adopting FlowLoom")
    _say("was itself a commit without a decision, so it carries an audited override.")

    _step(2, "An AI coding session, through the hooks `flowloom init` installed")
    decision = _agent_session(box)

    _step(3, "The write was committed moments later, linked to its decision by git trailers")
    click.echo("   $ git log -1")
    _show(box.git("log", "-1", "--format=commit %h%nAuthor: %an <%ae>%n%n%B"))

    _step(4, "Why is this line here? The decision, the prompt and the reply behind it")
    box.flowloom("why", "greeting.py:1")

    _step(5, "The commit gate: a change with no decision is refused ...")
    with (box.repo / "README.md").open("a") as fh:
        fh.write("Greets customers.\n")
    box.git("add", "README.md")
    click.echo('   $ git commit -m "Describe the project"')
    refused = box.run(["git", "commit", "-q", "-m", "Describe the project"])
    _show((refused.stderr or refused.stdout) or f"exit {refused.returncode}")
    if refused.returncode == 0:
        raise click.ClickException("demo: the unlinked commit was not refused")
    _say(f"refused (git exit {refused.returncode}).")
    _say("... and let through with a reason, which is recorded and stays in the history:")
    click.echo('   $ FLOWLOOM_OVERRIDE="docs only, no decision needed" git commit -m ...')
    box.git(
        "commit",
        "-q",
        "-m",
        "Describe the project",
        env={"FLOWLOOM_OVERRIDE": "docs only, no decision needed"},
    )
    _show(box.git("log", "-1", "--format=%B"))

    _step(6, "A reviewer approves the decision, signed with their own SSH key")
    if reviewer is None:
        _say("skipped: ssh-keygen (OpenSSH) is not installed, so no key can sign")
    else:
        box.flowloom("decision", "approve", decision, "--key", str(reviewer))
        box.flowloom("decision", "show", decision)

    _step(7, "The CI gate: every commit since adoption is linked and approved, or overridden")
    adopted = box.git("rev-list", "-1", "HEAD~2").strip()
    if reviewer is not None:
        box.flowloom("check", f"{adopted}..HEAD")
    else:
        _say("skipped with the approval (the decision is not approved)")

    _step(8, "Evidence for 21 CFR Part 11, signed")
    today = datetime.now(UTC).date().isoformat()
    report = scratch / "part11.html"
    box.flowloom(
        "report", "--framework", "part11", "--from", today, "--to", today,
        "--format", "html", "--out", str(report),
    )  # fmt: skip
    box.flowloom("report", "verify", str(report))

    _step(9, "Offline verification, with the log's public key and nothing else")
    box.flowloom("log", "checkpoint")
    vkey = box.flowloom("log", "vkey").strip()
    bundle = scratch / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    box.flowloom("log", "export", str(bundle))
    box.flowloom("log", "verify-bundle", str(bundle), "--vkey", vkey)
    _say("bundle verifies: True")

    _step(10, "An edit made behind FlowLoom's back is caught and named")
    _tamper(box.repo / ".git" / "flowloom" / "ledger.db")
    click.echo("   $ flowloom log verify")
    tampered = box.run([sys.executable, "-m", "flowloom", "log", "verify"])
    _show(tampered.stdout + tampered.stderr)
    _say(f"tampering detected: {tampered.returncode != 0}")

    took = time.monotonic() - started
    click.secho(f"\nDone in {took:.0f} s. Everything is in {scratch}", fg="green")


def _reviewer_key(box: _Sandbox) -> Path | None:
    """Rob the reviewer's SSH key, listed in the committed `.flowloom/allowed_signers`."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return None
    keys = box.scratch / "keys"
    keys.mkdir(exist_ok=True)
    key = keys / "rob"
    if not key.exists():
        box.must([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "rob", "-f", str(key)])
    public = (keys / "rob.pub").read_text().split()
    line = f'rob@example.com namespaces="flowloom" {public[0]} {public[1]}\n'
    (box.repo / ".flowloom" / "allowed_signers").write_text(line)
    return key


def _agent_session(box: _Sandbox) -> str:
    """Claude Code's hook payloads for one prompt that writes a file; the decision id."""
    settings = json.loads((box.repo / ".claude" / "settings.json").read_text())
    hooks = settings["hooks"]

    def command(event: str) -> str:
        return str(hooks[event][0]["hooks"][0]["command"])

    def payload(event: str, **fields: Any) -> dict[str, Any]:
        return {
            "session_id": SESSION,
            "cwd": str(box.repo),
            "permission_mode": "acceptEdits",
            "hook_event_name": event,
            **fields,
        }

    target = box.repo / "greeting.py"
    write = {"file_path": str(target), "content": CONTENT}
    _say("Claude Code runs the hook at each step; here the steps are replayed:")
    box.hook(command("SessionStart"), payload("SessionStart", source="startup"))
    _say("SessionStart      -> session.start")
    box.hook(command("UserPromptSubmit"), payload("UserPromptSubmit", prompt=PROMPT))
    _say(f'UserPromptSubmit  -> agent.prompt   "{PROMPT}"')
    pre = payload("PreToolUse", tool_name="Write", tool_use_id="toolu_1", tool_input=write)
    box.hook(command("PreToolUse"), pre)
    target.write_text(CONTENT)
    response = {"type": "create", "filePath": str(target), "content": CONTENT}
    post = payload(
        "PostToolUse",
        tool_name="Write",
        tool_use_id="toolu_1",
        tool_input=write,
        tool_response=response,
    )
    box.hook(command("PostToolUse"), post)
    _say("PostToolUse Write -> artifact.write greeting.py (the diff), decision, auto-commit")
    box.hook(command("Stop"), payload("Stop", last_assistant_message=REPLY))
    _say(f'Stop              -> agent.response "{REPLY[:48]}..."')
    box.hook(command("SessionEnd"), payload("SessionEnd", reason="other"))
    _say("SessionEnd        -> session.end")
    box.settle()
    message = box.git("log", "-1", "--format=%B")
    for line in message.splitlines():
        if line.startswith("FlowLoom-Decision: "):
            return line.split(": ", 1)[1].strip()
    raise click.ClickException("demo: the agent's write was not auto-committed")


def _tamper(path: Path) -> None:
    """What an insider with database access might do: drop the guard, and make the
    agent's write name another file."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER entries_append_only_update")
        conn.execute(
            "UPDATE entries SET envelope = CAST(replace(envelope, 'greeting.py', 'billing.py') "
            "AS BLOB) WHERE idx = (SELECT min(idx) FROM entries WHERE kind = 'artifact.write')"
        )
        conn.commit()
    finally:
        conn.close()
