"""The real Claude Code and Codex CLIs capturing into FlowLoom, offline (issue 14).

Each test sets up a real git repository with `flowloom init --agent …` (the hooks and
settings exactly as a user gets them), then runs the pinned CLI from npm
(`tests/support/clis.py`) against the scripted Messages / Responses stand-in
(`tests/support/scripted_models.py`): the model asks for a tool call (Claude Code's
Write, Edit or Bash; Codex's apply_patch or its shell), then answers in text. What
the agent's hooks recorded is then read back through `flowloom` commands and the ledger.

Set-up a user would do too: Claude Code in `-p` mode with `--permission-mode
acceptEdits` (Bash allowed with `--allowedTools`); Codex with the project trusted in
its home configuration and `codex exec --dangerously-bypass-hook-trust` (hooks need a
recorded trust otherwise, which only its interactive /hooks gives; docs/capture.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.capture.agent_sandbox import AgentSandbox
from tests.support.clis import offline_env
from tests.support.scripted_models import Script, ScriptedModels, ToolUse, serve

PROMPT = "Add a greeting module for PAY-7"
REPLY = "I added hello.py, which prints a greeting."
CONTENT = "print('hello')\n"
CODEX_MODEL = "gpt-5.5"  # a model Codex 0.171 knows: it then offers apply_patch


# --------------------------------------------------------------------------- drivers


def governed(tmp_path: Path, agent: str) -> AgentSandbox:
    """A repository with one commit, set up with `flowloom init --agent AGENT`."""
    box = AgentSandbox(tmp_path)
    box.write("README.md", "# demo\n")
    box.git("add", ".")
    box.git("commit", "-q", "-m", "initial")
    box.init("--agent", agent)
    box.settled()
    return box


def _env(box: AgentSandbox, **extra: str) -> dict[str, str]:
    env = {**box.env, **offline_env(Path(box.env["HOME"]), **extra)}
    env["PATH"] = box.env["PATH"]  # FlowLoom's launcher first, as an installation has it
    return env


def run_claude(
    claude: Path, box: AgentSandbox, script: Script, prompt: str = PROMPT, *args: str
) -> tuple[subprocess.CompletedProcess[str], ScriptedModels]:
    """`claude -p PROMPT` in the repository, the model following `script`."""
    models = ScriptedModels(anthropic=script)
    with serve(models):
        env = _env(
            box,
            ANTHROPIC_BASE_URL=models.url,
            ANTHROPIC_API_KEY="local",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
        )
        done = subprocess.run(
            [
                str(claude),
                "-p",
                prompt,
                "--permission-mode",
                "acceptEdits",
                "--output-format",
                "stream-json",
                "--verbose",
                *args,
            ],
            cwd=box.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, models


def run_codex(
    codex: Path,
    box: AgentSandbox,
    script: Script,
    prompt: str = PROMPT,
    *,
    bypass_trust: bool = True,
) -> tuple[subprocess.CompletedProcess[str], ScriptedModels]:
    """`codex exec PROMPT` in the repository, against the scripted Responses API."""
    home = Path(box.env["HOME"]) / ".codex"
    home.mkdir(parents=True, exist_ok=True)
    # The project is trusted (Codex asks once, interactively); otherwise it ignores the
    # repository's .codex/ altogether.
    (home / "config.toml").write_text(f'[projects."{box.repo}"]\ntrust_level = "trusted"\n')
    models = ScriptedModels(responses=script)
    with serve(models):
        provider = (
            f'model_providers.scripted={{name="scripted", base_url="{models.url}/v1", '
            'wire_api="responses", env_key="SCRIPTED_API_KEY"}'
        )
        args = [
            str(codex),
            "exec",
            "-c",
            'model_provider="scripted"',
            "-c",
            provider,
            "-m",
            CODEX_MODEL,
            "--dangerously-bypass-approvals-and-sandbox",  # the test's tmp dir is the sandbox
            "--skip-git-repo-check",
        ]
        if bypass_trust:
            args.append("--dangerously-bypass-hook-trust")
        done = subprocess.run(
            [*args, prompt],
            cwd=box.repo,
            env=_env(box, SCRIPTED_API_KEY="local"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, models


def _patch(name: str, content: str) -> str:
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {name}\n{lines}*** End Patch\n"


class Agent:
    """One CLI: how to run it and the tool calls that write or fail."""

    def __init__(self, name: str, binary: Path) -> None:
        self.name = name
        self.binary = binary

    def run(
        self, box: AgentSandbox, script: Script, prompt: str = PROMPT
    ) -> subprocess.CompletedProcess[str]:
        if self.name == "claude-code":
            return run_claude(self.binary, box, script, prompt, "--allowedTools", "Bash")[0]
        return run_codex(self.binary, box, script, prompt)[0]

    def write(self, box: AgentSandbox, name: str, content: str) -> ToolUse:
        if self.name == "claude-code":
            return ToolUse("Write", {"file_path": str(box.repo / name), "content": content})
        return ToolUse("apply_patch", _patch(name, content))

    def failing(self, box: AgentSandbox) -> ToolUse:
        """A tool call that fails on a file that is not there."""
        if self.name == "claude-code":  # its Edit refuses a missing file before any hook
            return ToolUse("Bash", {"command": "cat missing.py"})
        patch = "*** Begin Patch\n*** Update File: missing.py\n@@\n-a\n+b\n*** End Patch\n"
        return ToolUse("apply_patch", patch)


@pytest.fixture(params=["claude-code", "codex"])
def agent(request: pytest.FixtureRequest) -> Agent:
    binary: Path = request.getfixturevalue(
        "claude_code" if request.param == "claude-code" else "codex"
    )
    return Agent(request.param, binary)


def _ledger_events(box: AgentSandbox, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in box.events() if kind is None or e["kind"] == kind]


def _notices(out: str) -> list[str]:
    """Claude Code's stream-json lines that show a hook's systemMessage to the user."""
    found = []
    for line in out.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str) and "FlowLoom:" in content:
            found.append(content)
    return found


# --------------------------------------------------------------------------- both agents


def test_a_write_is_committed_and_why_shows_prompt_and_reply(agent: Agent, tmp_path: Path) -> None:
    box = governed(tmp_path, agent.name)
    agent.run(box, Script([agent.write(box, "hello.py", CONTENT)], reply=REPLY))
    box.settled()
    assert (box.repo / "hello.py").read_text() == CONTENT
    kinds = box.kinds()
    for kind in ("session.start", "agent.prompt", "artifact.write", "decision.record"):
        assert kind in kinds, kinds
    assert kinds.index("agent.response") < kinds.index("decision.amend")
    assert "capture.bypass" not in kinds  # the hooks saw the write
    trailers = dict(box.trailers())
    assert box.message().splitlines()[0] == PROMPT
    assert trailers["FlowLoom-Decision"].startswith("D-")
    assert trailers["FlowLoom-Session"]
    entry = int(trailers["FlowLoom-Entry"])
    write = next(e for e in box.events() if e["kind"] == "artifact.write")
    assert write["subject"] == "hello.py" and write["actor"]["id"] == agent.name
    assert box.git("log", "-1", "--format=%H", "--", "hello.py").strip() == box.head()
    why = box.ok("why", "hello.py:1")
    assert PROMPT in why and REPLY in why, why
    assert "reply:    entry" in why and "not recorded" not in why
    assert entry > 0
    verified = box.ok("log", "verify")
    assert "ok" in verified.lower(), verified


def test_a_failed_tool_call_leaves_a_trace(agent: Agent, tmp_path: Path) -> None:
    box = governed(tmp_path, agent.name)
    agent.run(box, Script([agent.failing(box)], reply="That file is not there."))
    box.settled()
    tools = [e for e in box.events() if e["kind"] == "agent.tool"]
    assert tools, box.kinds()
    failed = tools[-1]
    # Claude Code reports the failure (PostToolUseFailure); Codex reports nothing after a
    # failed apply_patch, so Stop records the call that never ended.
    assert failed["refs"]["status"] == ("error" if agent.name == "claude-code" else "unfinished")
    assert "missing.py" in box.body(failed)
    assert not (box.repo / "missing.py").exists()
    assert len(box.commits()) == 2  # nothing committed for it


def test_a_secret_in_the_prompt_is_redacted(agent: Agent, tmp_path: Path) -> None:
    box = governed(tmp_path, agent.name)
    secret = "AKIA" + "Q7XK2M9PLR4TW8ZB"
    prompt = f"Deploy with key {secret} and add hello.py for PAY-7"
    agent.run(box, Script([agent.write(box, "hello.py", CONTENT)], reply=REPLY), prompt)
    box.settled()
    stored = box.body(next(e for e in box.events() if e["kind"] == "agent.prompt"))
    assert secret not in stored and "[REDACTED" in stored, stored
    assert box.events("redaction.apply")
    assert secret.encode() not in box.database_bytes()
    assert secret not in box.git("log", "--format=%B")


def _freeze(paths: list[Path]) -> Callable[[], None]:
    """Make the ledger files unwritable for everyone, root included; returns the undo.

    Root ignores mode bits, so as root the files are made immutable (`chattr +i`); a file
    system without that flag skips the test rather than pretend."""
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o400)

        def restore_modes() -> None:
            for path in paths:
                path.chmod(0o600)

        return restore_modes
    done = subprocess.run(
        ["chattr", "+i", *map(str, paths)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")

    def thaw() -> None:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)

    return thaw


def test_an_unwritable_ledger_is_reported_to_the_user_and_nothing_is_lost(
    agent: Agent, tmp_path: Path
) -> None:
    box = governed(tmp_path, agent.name)
    box.hook_ok(agent.name, box.claude("SessionStart", source="startup"))  # the spool exists
    box.settled()
    before = len(box.events())
    thaw = _freeze(sorted(box.state_dir.glob("ledger.db*")))
    try:
        done = agent.run(box, Script([agent.write(box, "hello.py", CONTENT)], reply=REPLY))
        box.drained()
        assert box.spooled(), "the events wait in the spool"
        status = box.flowloom("status")
        assert status.returncode == 1, status.stdout
        assert "WARNING" in status.stdout and "ledger" in status.stdout
    finally:
        thaw()
    notices = _notices(done.stdout) if agent.name == "claude-code" else []
    # (`codex exec` 0.171 shows neither a hook's systemMessage nor its stderr: the
    # status and the events recorded after repair are what tell, docs/capture.md)
    assert len(box.commits()) == 2  # not committed while the ledger could not record it
    box.hook_ok(agent.name, box.claude("SessionEnd", reason="other"))  # any next hook drains
    box.settled()
    kinds = box.kinds(box.events()[before:])
    for kind in ("agent.prompt", "artifact.write", "agent.response"):
        assert kinds.count(kind) == 1, kinds
    # Either a hook at the turn's end found the drain failing and gave the commit up,
    # recorded as a capture.error (what the user was told), or the commit waited in
    # its queue behind a drainer at work and was made once the ledger was repaired.
    errors = kinds.count("capture.error")
    assert errors == 1 or (errors == 0 and len(box.commits()) == 3), kinds
    if errors and agent.name == "claude-code":  # Claude Code shows the hook's systemMessage
        assert any("cannot open the ledger" in n for n in notices), notices
    if errors:
        status = box.flowloom("status")
        assert status.returncode == 1 and "capture errors since" in status.stdout
        box.ok("status", "--acknowledge")
    assert box.flowloom("status").returncode == 0


# --------------------------------------------------------------------------- one agent


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            "apply_patch <<'EOF'\n" + _patch("hello.py", CONTENT) + "EOF\n", id="apply_patch"
        ),
        pytest.param("printf \"print('hello')\\n\" > hello.py", id="redirect"),
    ],
)
def test_codex_editing_through_its_shell_is_detected_and_committed(
    codex: Path, tmp_path: Path, command: str
) -> None:
    box = governed(tmp_path, "codex")
    run_codex(codex, box, Script([ToolUse("exec_command", {"cmd": command})], reply=REPLY))
    box.settled()
    assert (box.repo / "hello.py").read_text() == CONTENT
    write = box.events("artifact.write")[0]
    assert write["refs"]["detected"] == "stop" and write["refs"]["change"] == "create"
    bypass = box.events("capture.bypass")[0]
    assert [f["path"] for f in bypass["refs"]["files"]] == ["hello.py"]
    assert bypass["refs"]["files"][0]["after"] == write["refs"]["after"]
    assert box.message().splitlines()[0] == PROMPT
    why = box.ok("why", "hello.py:1")
    assert PROMPT in why and REPLY in why


def test_claude_code_editing_through_bash_is_detected_and_committed(
    claude_code: Path, tmp_path: Path
) -> None:
    box = governed(tmp_path, "claude-code")
    bash = ToolUse("Bash", {"command": "printf \"print('hello')\\n\" > hello.py"})
    run_claude(claude_code, box, Script([bash], reply=REPLY), PROMPT, "--allowedTools", "Bash")
    box.settled()
    assert (box.repo / "hello.py").read_text() == CONTENT
    kinds = box.kinds()
    assert "agent.tool" in kinds and "capture.bypass" in kinds, kinds
    assert box.events("artifact.write")[0]["refs"]["detected"] == "stop"
    assert box.git("log", "-1", "--format=%H", "--", "hello.py").strip() == box.head()


def test_codex_hooks_without_trust_never_fire_and_status_says_so(
    codex: Path, tmp_path: Path
) -> None:
    box = governed(tmp_path, "codex")
    run_codex(
        codex,
        box,
        Script([ToolUse("apply_patch", _patch("hello.py", CONTENT))], reply=REPLY),
        bypass_trust=False,
    )
    box.settled()
    assert (box.repo / "hello.py").exists()
    assert not any(e["actor"]["id"] == "codex" for e in box.events())
    assert box.flowloom("status").returncode == 0  # just set up: not yet a warning
    _pretend_init_ran_hours_ago(box)
    out = box.warned()
    assert "codex hooks were installed" in out and "never fired" in out, out
    assert "trusted" in out


def _pretend_init_ran_hours_ago(box: AgentSandbox) -> None:
    """Time passing, without waiting: an `init` config.change that wrote the Codex hooks,
    stamped two hours ago, is appended (status reads the last such entry)."""
    from datetime import UTC, datetime, timedelta

    then = datetime.now(UTC) - timedelta(hours=2)
    ts = then.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    refs = {"action": "init", "agents": [".codex/hooks.json"]}
    with box.services() as services:
        ledger = services.ledger
        prepared = ledger.prepare(
            "config.change", meta={"subject": ".flowloom/config.toml", "refs": refs}, ts=ts
        )
        ledger.writer.append_many([prepared.entry])


def test_codex_exec_shows_the_user_no_hook_message(codex: Path, tmp_path: Path) -> None:
    """What a Codex user sees when a hook has something to say (docs/capture.md): with
    the spool unwritable every hook answers a systemMessage (and says it on stderr),
    yet `codex exec` 0.171 shows neither; the events are kept in the fallback."""
    box = governed(tmp_path, "codex")
    box.env["XDG_STATE_HOME"] = str(tmp_path / "state")
    spool = box.spool_dir
    if spool.is_dir():
        import shutil

        shutil.rmtree(spool)
    spool.write_text("not a directory\n")  # unusable, for root too
    done, _ = run_codex(codex, box, Script([], reply=REPLY))
    assert REPLY in done.stdout
    assert "FlowLoom" not in done.stdout and "FlowLoom" not in done.stderr, done.stderr
    # All it shows of the hooks: that each ran and completed.
    for event in ("SessionStart", "UserPromptSubmit", "Stop"):
        assert f"hook: {event}\n" in done.stderr and f"hook: {event} Completed" in done.stderr
    hook = box.hook(
        "codex", {"hook_event_name": "SessionStart", "session_id": "s", "cwd": str(box.repo)}
    )
    assert b"FlowLoom: capture could not write" in hook.stderr  # what the hooks said
    spool.unlink()
    box.settled()
    assert any(e["actor"]["id"] == "codex" and e["kind"] == "agent.prompt" for e in box.events())
