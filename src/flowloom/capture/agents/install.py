"""Agent hook installation: which agents are here, and their hook settings in the repo.

`flowloom init` calls these. Each agent's settings file is merged, never replaced: hooks
the user or other tools configured stay as they are, FlowLoom's own entries (recognised
by their command, `… -m flowloom hook <agent>`) are added once, and updated in place when
the interpreter changed. Running it twice changes nothing the second time.

- Claude Code: `.claude/settings.json`, ``{"hooks": {Event: [{"matcher", "hooks":
  [{"type": "command", "command"}]}]}}`` for SessionStart, UserPromptSubmit,
  PreToolUse (file-writing tools only: it keeps the before-state), PostToolUse,
  PostToolUseFailure, Stop, SessionEnd.
- Codex CLI: `.codex/hooks.json` in the same shape (SessionStart, UserPromptSubmit,
  PreToolUse for apply_patch and Bash, which can carry a patch too, PostToolUse, Stop),
  and `[features] hooks = true` in `.codex/config.toml` for versions where hooks were
  off by default (the line is marked ``# added by flowloom`` so uninstalling removes
  only what it added). Codex runs a project's hooks only once the person trusted them
  (docs/capture.md): that step is theirs.
- Cursor: `.cursor/hooks.json`, ``{"version": 1, "hooks": {event: [{"command"}]}}`` for
  sessionStart, sessionEnd, beforeSubmitPrompt, afterFileEdit, afterShellExecution,
  afterMCPExecution, afterAgentResponse, stop.
- Aider has no hooks: its chat history is imported with `flowloom import aider`.
- The MCP server: `.mcp.json` at the top of the repository (Claude Code's project
  scope, committed for the team), ``{"mcpServers": {"flowloom": {"command": "flowloom",
  "args": ["mcp"]}}}``, merged with the servers already there. The command is the
  `flowloom` on PATH, not this machine's interpreter, because the file is shared.

The hook command names no path of this machine (the files are committed for the team):
it runs `flowloom hook <agent>` found on PATH, else `python3 -m flowloom`, else says what
to install (`flowloom.capture.launch`). Commands an earlier version wrote (this
machine's interpreter, `<python> -m flowloom hook <agent>`) are recognised as ours and
replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowloom.capture import launch
from flowloom.errors import ConfigError, InputError

__all__ = [
    "AGENTS",
    "HOOKED_AGENTS",
    "agent_hook_setup",
    "agent_hook_status",
    "detect_agents",
    "hook_command",
    "install_agent_hooks",
    "install_mcp_server",
    "mcp_server_status",
    "uninstall_agent_hooks",
    "uninstall_mcp_server",
]

AGENTS = ("claude-code", "codex", "cursor", "aider")
"""Every agent FlowLoom captures, in the order they are reported."""

HOOKED_AGENTS = ("claude-code", "codex", "cursor")
"""The agents that run hooks (Aider is imported from its history instead)."""

_CLAUDE_EVENTS: dict[str, str | None] = {
    "SessionStart": None,
    "UserPromptSubmit": None,
    "PreToolUse": "Write|Edit|MultiEdit|NotebookEdit",
    "PostToolUse": None,
    "PostToolUseFailure": None,
    "Stop": None,
    "SessionEnd": None,
}
_CODEX_EVENTS: dict[str, str | None] = {
    "SessionStart": None,
    "UserPromptSubmit": None,
    "PreToolUse": "apply_patch|Bash",
    "PostToolUse": None,
    "Stop": None,
}
_CURSOR_EVENTS = (
    "sessionStart",
    "sessionEnd",
    "beforeSubmitPrompt",
    "afterFileEdit",
    "afterShellExecution",
    "afterMCPExecution",
    "afterAgentResponse",
    "stop",
)
_MARK = "# added by flowloom"


_CURSOR_ANSWER = '{"continue": true}'


def hook_command(agent: str) -> str:
    """The shell command an agent runs: the same on every machine (`launch.agent_command`)."""
    answer = _CURSOR_ANSWER if agent == "cursor" else None
    return launch.agent_command(agent, answer=answer)


def _is_ours(command: object, agent: str) -> bool:
    """FlowLoom's hook for `agent`, as this version or an earlier one wrote it."""
    return isinstance(command, str) and (
        re.search(rf"(?<![\w-])flowloom hook {re.escape(agent)}(?![\w-])", command) is not None
    )


def _check(agents: Sequence[str]) -> list[str]:
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        raise InputError(
            f"unknown agent(s): {', '.join(unknown)}", hint=f"known: {', '.join(AGENTS)}"
        )
    return [a for a in agents if a in HOOKED_AGENTS]


# --------------------------------------------------------------------------- detection


def detect_agents(repo_top: Path) -> list[str]:
    """The agents in use here: their files in the repository or home, or on PATH."""
    home = Path(os.environ.get("HOME") or Path.home())
    markers = {
        "claude-code": ([".claude", "CLAUDE.md"], [".claude", ".claude.json"], "claude"),
        "codex": ([".codex", "AGENTS.md"], [".codex"], "codex"),
        "cursor": ([".cursor", ".cursorrules"], [".cursor"], "cursor"),
        "aider": (
            [".aider.chat.history.md", ".aider.conf.yml", ".aider.input.history"],
            [".aider.conf.yml"],
            "aider",
        ),
    }
    found = []
    for agent in AGENTS:
        in_repo, in_home, program = markers[agent]
        if (
            any((repo_top / name).exists() for name in in_repo)
            or any((home / name).exists() for name in in_home)
            or shutil.which(program) is not None
        ):
            found.append(agent)
    return found


# --------------------------------------------------------------------------- JSON files


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc})", hint="fix it, then run flowloom init again"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def _save_json(path: Path, data: dict[str, Any], before: dict[str, Any]) -> bool:
    if data == before and path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".flowloom-tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    tmp.replace(path)
    return True


def _hooks_table(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    hooks = doc.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ConfigError(f"{path}: 'hooks' must be an object")
    return hooks


def _merge_grouped(
    doc: dict[str, Any], path: Path, agent: str, events: dict[str, str | None], command: str
) -> None:
    """Claude Code / Codex shape: event → [{matcher, hooks: [{type, command}]}]."""
    hooks = _hooks_table(doc, path)
    for event, matcher in events.items():
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise ConfigError(f"{path}: hooks.{event} must be a list")
        present = False
        kept_groups = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
                kept_groups.append(group)
                continue
            entries = group["hooks"]
            same_matcher = group.get("matcher") == matcher
            kept = []
            for entry in entries:
                command_here = entry.get("command") if isinstance(entry, dict) else None
                if not _is_ours(command_here, agent):
                    kept.append(entry)
                elif same_matcher and command_here == command and not present:
                    kept.append(entry)
                    present = True
            if kept or len(kept) == len(entries):
                kept_groups.append({**group, "hooks": kept} if kept != entries else group)
        if not present:
            group = {"hooks": [{"type": "command", "command": command}]}
            if matcher is not None:
                group = {"matcher": matcher, **group}
            kept_groups.append(group)
        hooks[event] = kept_groups


def _remove_grouped(doc: dict[str, Any], agent: str) -> None:
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept_groups = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
                kept_groups.append(group)
                continue
            kept = [
                e
                for e in group["hooks"]
                if not (isinstance(e, dict) and _is_ours(e.get("command"), agent))
            ]
            if kept:
                kept_groups.append({**group, "hooks": kept})
        if kept_groups:
            hooks[event] = kept_groups
        else:
            del hooks[event]
    if not hooks:
        del doc["hooks"]


def _grouped_commands(doc: dict[str, Any], agent: str, event: str) -> list[str]:
    """FlowLoom's commands for `agent` under one event (Claude Code / Codex shape)."""
    hooks = doc.get("hooks")
    groups = hooks.get(event, []) if isinstance(hooks, dict) else []
    return [
        entry["command"]
        for group in (groups if isinstance(groups, list) else [])
        if isinstance(group, dict) and isinstance(group.get("hooks"), list)
        for entry in group["hooks"]
        if isinstance(entry, dict) and _is_ours(entry.get("command"), agent)
    ]


def _cursor_commands(doc: dict[str, Any], event: str) -> list[str]:
    hooks = doc.get("hooks")
    entries = hooks.get(event, []) if isinstance(hooks, dict) else []
    return [
        e["command"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and _is_ours(e.get("command"), "cursor")
    ]


def _merge_cursor(doc: dict[str, Any], path: Path, command: str) -> None:
    doc.setdefault("version", 1)
    hooks = _hooks_table(doc, path)
    for event in _CURSOR_EVENTS:
        entries = hooks.setdefault(event, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: hooks.{event} must be a list")
        kept = []
        present = False
        for entry in entries:
            command_here = entry.get("command") if isinstance(entry, dict) else None
            if not _is_ours(command_here, "cursor"):
                kept.append(entry)
            elif command_here == command and not present:
                kept.append(entry)
                present = True
        if not present:
            kept.append({"command": command})
        hooks[event] = kept


def _remove_cursor(doc: dict[str, Any]) -> None:
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return
    for event in list(hooks):
        entries = hooks[event]
        if not isinstance(entries, list):
            continue
        kept = [
            e for e in entries if not (isinstance(e, dict) and _is_ours(e.get("command"), "cursor"))
        ]
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]


# --------------------------------------------------------------------------- codex TOML


def _write_toml(config: Path, new_text: str) -> None:
    tomllib.loads(new_text)  # never write a file Codex cannot read
    config.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.with_name(config.name + ".flowloom-tmp")
    tmp.write_text(new_text, "utf-8")
    tmp.replace(config)


def _codex_flag(config: Path) -> bool:
    """Make sure `.codex/config.toml` leaves hooks on, under today's key; True if written.

    Codex's feature key is `[features].hooks` (on by default in current versions);
    `codex_hooks` is a deprecated alias Codex warns about at every start. FlowLoom adds
    `hooks = true` (for versions where hooks were still off by default) and turns the
    `codex_hooks = true` line earlier FlowLoom versions added into it. A value the user
    set under either key, true or false, is their choice and is kept.
    """
    try:
        text = config.read_text("utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from exc
    try:
        features = tomllib.loads(text).get("features", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{config} is not valid TOML ({exc})", hint="fix it, then run flowloom init again"
        ) from exc
    if not isinstance(features, dict):
        raise ConfigError(f"{config}: [features] must be a table")
    line = f"hooks = true  {_MARK}\n"
    lines = text.splitlines(keepends=True)
    legacy = [
        at
        for at, existing in enumerate(lines)
        if existing.rstrip().endswith(_MARK) and existing.split("=", 1)[0].strip() == "codex_hooks"
    ]
    if legacy:  # what an earlier FlowLoom added: the deprecated key, ours to replace
        for at in reversed(legacy):
            if "hooks" in features or at != legacy[0]:
                del lines[at]
            else:
                lines[at] = line
        _write_toml(config, "".join(lines))
        return True
    if "codex_hooks" in features or "hooks" in features:
        return False
    for at, existing in enumerate(lines):
        if existing.split("#", 1)[0].strip() == "[features]":
            if not existing.endswith("\n"):
                lines[at] = existing + "\n"
            lines.insert(at + 1, line)
            new_text = "".join(lines)
            break
    else:
        if not text or text.endswith("\n\n"):
            separator = ""
        else:
            separator = "\n" if text.endswith("\n") else "\n\n"
        new_text = f"{text}{separator}[features]  {_MARK}\n{line}"
    _write_toml(config, new_text)
    return True


def _remove_codex_flag(config: Path) -> bool:
    try:
        text = config.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.rstrip().endswith(_MARK)]
    if len(kept) == len(lines):
        return False
    new_text = "".join(kept)
    try:
        tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        return False  # leave a file we cannot edit safely alone
    if new_text.strip():
        config.write_text(new_text, "utf-8")
    else:
        config.unlink()
    return True


# --------------------------------------------------------------------------- public API


def _paths(repo_top: Path) -> dict[str, Path]:
    return {
        "claude-code": repo_top / ".claude" / "settings.json",
        "codex": repo_top / ".codex" / "hooks.json",
        "codex-config": repo_top / ".codex" / "config.toml",
        "cursor": repo_top / ".cursor" / "hooks.json",
    }


def install_agent_hooks(repo_top: Path, agents: Sequence[str]) -> list[str]:
    """Install FlowLoom's hooks for `agents`; returns the files written (none if current)."""
    paths = _paths(repo_top)
    written: list[str] = []
    for agent in _check(agents):
        command = hook_command(agent)
        path = paths[agent]
        doc = _load_json(path)
        before = json.loads(json.dumps(doc))
        if agent == "claude-code":
            _merge_grouped(doc, path, agent, _CLAUDE_EVENTS, command)
        elif agent == "codex":
            _merge_grouped(doc, path, agent, _CODEX_EVENTS, command)
        else:
            _merge_cursor(doc, path, command)
        if _save_json(path, doc, before):
            written.append(str(path))
        if agent == "codex" and _codex_flag(paths["codex-config"]):
            written.append(str(paths["codex-config"]))
    return written


def uninstall_agent_hooks(repo_top: Path, agents: Sequence[str]) -> list[str]:
    """Remove FlowLoom's hooks for `agents`, leaving everything else; returns files changed."""
    paths = _paths(repo_top)
    changed: list[str] = []
    for agent in _check(agents):
        path = paths[agent]
        if not path.exists():
            continue
        doc = _load_json(path)
        before = json.loads(json.dumps(doc))
        if agent == "cursor":
            _remove_cursor(doc)
        else:
            _remove_grouped(doc, agent)
        if doc != before:
            if doc in ({}, {"version": 1}, {"version": 1, "hooks": {}}):
                path.unlink()
            else:
                _save_json(path, doc, before)
            changed.append(str(path))
        if agent == "codex" and _remove_codex_flag(paths["codex-config"]):
            changed.append(str(paths["codex-config"]))
    return changed


def agent_hook_setup(repo_top: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Per hooked agent, how the repository is set up for it:

    - ``absent``: no FlowLoom hook in its settings (the repository was not set up for
      it, whatever is installed on this machine);
    - ``stale``: a hook an earlier version wrote (one machine's interpreter path);
    - ``incomplete``: some hooks are missing (an earlier version, a hand edit);
    - ``broken``: the settings file cannot be read, or FlowLoom cannot be found the way
      the hooks look for it (`launch.where`, with `env`);
    - ``ok``: every hook FlowLoom installs is there, and can start FlowLoom here.
    """
    paths = _paths(repo_top)
    setup: dict[str, str] = {}
    findable: bool | None = None
    for agent in HOOKED_AGENTS:
        try:
            doc = _load_json(paths[agent])
        except ConfigError:
            setup[agent] = "broken"
            continue
        events = (
            list(_CURSOR_EVENTS)
            if agent == "cursor"
            else list(_CLAUDE_EVENTS if agent == "claude-code" else _CODEX_EVENTS)
        )
        found = {
            event: (
                _cursor_commands(doc, event)
                if agent == "cursor"
                else _grouped_commands(doc, agent, event)
            )
            for event in events
        }
        commands = [c for listed in found.values() for c in listed]
        if not commands:
            setup[agent] = "absent"
        elif any(c != hook_command(agent) for c in commands):
            setup[agent] = "stale"
        elif not all(found.values()):
            setup[agent] = "incomplete"
        else:
            if findable is None:
                findable = launch.where(env) is not None
            setup[agent] = "ok" if findable else "broken"
    return setup


def agent_hook_status(repo_top: Path) -> dict[str, bool]:
    """Per hooked agent: are all of FlowLoom's hooks installed and able to run?"""
    return {agent: state == "ok" for agent, state in agent_hook_setup(repo_top).items()}


# --------------------------------------------------------------------------- MCP server

MCP_SERVER_NAME = "flowloom"
MCP_SERVER_ENTRY: dict[str, Any] = {"command": "flowloom", "args": ["mcp"]}


def _mcp_path(repo_top: Path) -> Path:
    return repo_top / ".mcp.json"


def _mcp_servers(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    servers = doc.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise ConfigError(
            f"{path}: 'mcpServers' must be an object", hint="fix it, then run flowloom init again"
        )
    return servers


def _is_our_mcp_entry(entry: object) -> bool:
    """A `flowloom` entry that runs `flowloom mcp` (however the user spelled the command)."""
    if not isinstance(entry, dict):
        return False
    command, args = entry.get("command"), entry.get("args")
    if not isinstance(command, str) or not isinstance(args, list):
        return False
    words = [Path(command).name.removesuffix(".exe"), *map(str, args)]
    # `flowloom [options] mcp`, `python -m flowloom mcp`, `uvx flowloom mcp`, ...
    return "flowloom" in words and "mcp" in words[words.index("flowloom") + 1 :]


def install_mcp_server(repo_top: Path) -> str:
    """Register `flowloom mcp` in `.mcp.json`: "created", "updated" or "unchanged".

    Other servers stay as they are; an entry named flowloom that already runs
    `flowloom mcp` (perhaps with its own env or an absolute path) is kept. A malformed
    file raises ConfigError and is left untouched.
    """
    path = _mcp_path(repo_top)
    existed = path.exists()
    doc = _load_json(path)
    before = json.loads(json.dumps(doc))
    servers = _mcp_servers(doc, path)
    if not _is_our_mcp_entry(servers.get(MCP_SERVER_NAME)):
        servers[MCP_SERVER_NAME] = dict(MCP_SERVER_ENTRY)
    if not _save_json(path, doc, before):
        return "unchanged"
    return "updated" if existed else "created"


def uninstall_mcp_server(repo_top: Path) -> bool:
    """Remove FlowLoom's entry from `.mcp.json` (only ours); True when the file changed.

    The file is deleted when nothing else is left in it.
    """
    path = _mcp_path(repo_top)
    if not path.exists():
        return False
    doc = _load_json(path)
    servers = doc.get("mcpServers")
    if not isinstance(servers, dict) or not _is_our_mcp_entry(servers.get(MCP_SERVER_NAME)):
        return False
    before = json.loads(json.dumps(doc))
    del servers[MCP_SERVER_NAME]
    if not servers:
        del doc["mcpServers"]
    if doc:
        _save_json(path, doc, before)
    else:
        path.unlink()
    return True


def mcp_server_status(repo_top: Path) -> bool:
    """Is `flowloom mcp` registered in the repository's `.mcp.json`?"""
    try:
        doc = _load_json(_mcp_path(repo_top))
    except ConfigError:
        return False
    servers = doc.get("mcpServers")
    return isinstance(servers, dict) and _is_our_mcp_entry(servers.get(MCP_SERVER_NAME))
