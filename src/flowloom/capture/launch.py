"""How hooks start FlowLoom: one command for every machine, naming no path of any.

Agent settings (`.claude/settings.json`, `.codex/hooks.json`, `.cursor/hooks.json`) are
committed for the team, and git hooks may be (a committed `core.hooksPath`), so what
they run must not be the interpreter or virtualenv of the machine that ran `flowloom
init`: a moved or rebuilt virtualenv, or a teammate's clone, would break every hook.
Every hook runs, in order:

1. `flowloom` found on PATH (pipx, an activated virtualenv, `~/.local/bin`);
2. else `python3 -m flowloom`, when that Python can import FlowLoom;
3. else nothing but a message on stderr saying what to install: agent hooks exit 1
   (the agents show a failed hook's message and go on), git hooks warn and let git go
   on (the CI gate still checks).

`where()` says what a hook started here would run, for `flowloom status`. Standard
library only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

__all__ = ["INSTALL_HINT", "agent_command", "shell_function", "where"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

INSTALL_HINT = (
    "install it where your agent and git can find it: pipx install flowloom, or pip install "
    "flowloom for the python3 on PATH, or put the bin directory of your virtualenv on PATH"
)

_CHECK = "python3 -c 'import flowloom' >/dev/null 2>&1"


def agent_command(agent: str, *, answer: str | None = None) -> str:
    """The one-line sh command an agent's settings run for `flowloom hook <agent>`.

    `answer` is printed on stdout when FlowLoom is missing, for an agent that reads
    every hook's answer (Cursor's beforeSubmitPrompt must still let the prompt through).
    """
    missing = f"flowloom: FlowLoom is not installed, so this {agent} session is not recorded: "
    told = f"echo {shlex.quote(missing + INSTALL_HINT)} >&2"
    if answer is not None:
        told = f"echo {shlex.quote(answer)}; {told}"
    return (
        f"if command -v flowloom >/dev/null 2>&1; then exec flowloom hook {agent}; "
        f"elif {_CHECK}; then exec python3 -m flowloom hook {agent}; "
        f"else {told}; exit 1; fi"
    )


def shell_function(name: str, warning: str) -> list[str]:
    """Lines of sh defining `name`, which runs `flowloom "$@"` found as above, or prints
    `warning` (and the install hint) on stderr and returns 0."""
    said = shlex.quote(f"{warning}: {INSTALL_HINT}")
    return [
        f"{name}() {{",
        '  if command -v flowloom >/dev/null 2>&1; then flowloom "$@"',
        f'  elif {_CHECK}; then python3 -m flowloom "$@"',
        f"  else echo {said} >&2",
        "  fi",
        "}",
    ]


def where(env: Mapping[str, str] | None = None) -> str | None:
    """What a hook started with `env` (default: this process's) would run, or None."""
    env = os.environ if env is None else env
    path = env.get("PATH", os.defpath)
    found = shutil.which("flowloom", path=path)
    if found:
        return found
    python = shutil.which("python3", path=path)
    if python is None:
        return None
    try:
        result = subprocess.run(
            [python, "-c", "import flowloom"],
            env=dict(env),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{python} -m flowloom" if result.returncode == 0 else None
