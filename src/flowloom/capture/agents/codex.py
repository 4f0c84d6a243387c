"""Codex CLI hooks and notify: payloads in, events out.

Codex CLI has two ways to call a program:

- **hooks** (`.codex/hooks.json`, the same shape as Claude Code's; `[features]
  codex_hooks = true` in `.codex/config.toml` on versions where hooks are still behind a
  flag). Payloads carry Claude Code's fields (`session_id`, `transcript_path`, `cwd`,
  `hook_event_name`, `tool_name`, `tool_input`, `tool_response`, `prompt`) plus `model`
  and `turn_id`; `Stop` carries `last_assistant_message`. Files are written by the
  `apply_patch` tool, whose input is a patch (``*** Begin Patch`` … with ``*** Add
  File:``, ``*** Update File:``, ``*** Delete File:``, ``*** Move to:`` headers); each
  file it names becomes an artifact.write, diffed against the content kept at
  PreToolUse. Codex 0.171 sends no PostToolUse for a failed apply_patch nor for a
  patch run through its shell (PreToolUse `Bash` only): Stop records the first as an
  unfinished call and the second's files as edits that bypassed capture
  (`flowloom.capture.agents.worktree`).
- **notify** (`notify = ["python", "-m", "flowloom", "hook", "codex"]` in
  `~/.codex/config.toml`): one JSON argument after the command, ``{"type":
  "agent-turn-complete", "thread-id", "turn-id", "cwd", "input-messages": [...],
  "last-assistant-message": "..."}`` → agent.prompt per input message, agent.response.
  Use it where hooks are unavailable; with hooks installed it would record twice.
"""

from __future__ import annotations

from flowloom.capture.agents.claude_code import claude_write_paths, handle
from flowloom.capture.agents.common import (
    Capture,
    Event,
    PayloadError,
    Place,
    agent_actor,
    git_context,
)

__all__ = ["AGENT", "capture", "codex_write_paths", "patch_paths"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENT = "codex"

_PATCH_HEADERS = ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: ")


def patch_paths(patch: str) -> list[str]:
    """The files an apply_patch patch touches, in order (a move names both ends)."""
    paths: list[str] = []
    for line in patch.splitlines():
        for header in _PATCH_HEADERS:
            if line.startswith(header):
                path = line[len(header) :].strip()
                if path and path not in paths:
                    paths.append(path)
    return paths


def _patch_text(tool_input: Any) -> str | None:
    if isinstance(tool_input, str):
        return tool_input if "*** Begin Patch" in tool_input else None
    if isinstance(tool_input, list):
        joined = "\n".join(str(part) for part in tool_input)
        return joined if "*** Begin Patch" in joined else None
    if isinstance(tool_input, dict):
        for key in ("input", "patch", "command", "cmd"):
            found = _patch_text(tool_input.get(key))
            if found is not None:
                return found
    return None


def codex_write_paths(tool: str, tool_input: Any, place: Place) -> list[str] | None:
    """The files a Codex tool writes: apply_patch (also through a shell), or Claude's."""
    if tool in ("apply_patch", "ApplyPatch") or tool.startswith("apply_patch"):
        patch = _patch_text(tool_input)
        if patch is None:
            raise PayloadError("apply_patch tool_input holds no patch")
        return [place.absolute(path) for path in patch_paths(patch)]
    if tool in ("Bash", "shell", "local_shell", "exec_command"):
        patch = _patch_text(tool_input)
        if patch is not None:
            return [place.absolute(path) for path in patch_paths(patch)]
        return None
    return claude_write_paths(tool, tool_input, place)


def _notify(payload: dict[str, Any], place: Place) -> Capture:
    kind = payload.get("type")
    session = payload.get("thread-id") or payload.get("session-id")
    session = session if isinstance(session, str) and session else None
    capture = Capture(session)
    if kind != "agent-turn-complete":
        return capture  # approval requests and future notifications: nothing to record
    actor = agent_actor(AGENT)
    git = git_context(place)
    turn = payload.get("turn-id") if isinstance(payload.get("turn-id"), str) else None
    messages = payload.get("input-messages", [])
    if not isinstance(messages, list):
        raise PayloadError("input-messages should be a list")
    for message in messages:
        text = message if isinstance(message, str) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            text = message["content"]
        if not text:
            continue
        refs: dict[str, Any] = {"chars": len(text), "via": "notify"}
        if turn:
            refs["turn"] = turn
        capture.prompt_at = len(capture.events)
        capture.add(Event("agent.prompt", text, actor=actor, session=session, git=git, refs=refs))
    reply = payload.get("last-assistant-message")
    if isinstance(reply, str) and reply:
        refs = {"chars": len(reply), "via": "notify"}
        if turn:
            refs["turn"] = turn
        capture.add(
            Event("agent.response", reply, actor=actor, session=session, git=git, refs=refs)
        )
    return capture


def capture(payload: dict[str, Any], place: Place) -> Capture:
    """A Codex CLI hook or notify payload as a Capture."""
    if "hook_event_name" not in payload and "type" in payload:
        return _notify(payload, place)
    return handle(payload, place, agent=AGENT, write_paths=codex_write_paths, reply_in_payload=True)
