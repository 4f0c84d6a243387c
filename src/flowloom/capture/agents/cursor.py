"""Cursor hooks (`.cursor/hooks.json`): payloads in, events out.

Every Cursor payload carries `hook_event_name`, `conversation_id` (the session here),
`generation_id`, `workspace_roots`, and often `model`, `cursor_version`, `user_email`:

- `sessionStart` / `sessionEnd` → session.start / session.end
- `beforeSubmitPrompt` (`prompt`, `attachments`) → agent.prompt; the hook answers
  ``{"continue": true}`` (Cursor reads stdout for this event; nothing is blocked)
- `afterFileEdit` (`file_path`, `edits`: [{old_string, new_string}]) → artifact.write;
  Cursor gives no before-state, so the edits are undone on the file's content to get it
- `afterShellExecution` (`command`, `output`), `afterMCPExecution` (`tool_name`,
  `tool_input`, `result_json`), `postToolUse` → agent.tool
- `afterAgentResponse` (`text`) → agent.response
- `stop` (`status`, `loop_count`) → nothing: the reply came with afterAgentResponse

`before*` events are not installed: their answers are permission decisions, and a
capture tool must not make those.
"""

from __future__ import annotations

import json

from flowloom.capture.agents.claude_code import reverse_edits
from flowloom.capture.agents.common import (
    Capture,
    Event,
    FileWrite,
    PayloadError,
    Place,
    agent_actor,
    file_write_event,
    git_context,
    read_file_state,
    tool_event,
)

__all__ = ["AGENT", "capture", "working_directory"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENT = "cursor"

_QUIET_EVENTS = frozenset(
    {
        "beforeShellExecution",
        "beforeMCPExecution",
        "beforeReadFile",
        "afterAgentThought",
        "preToolUse",
        "preCompact",
        "subagentStart",
        "subagentStop",
        "stop",
        "beforeTabFileRead",
        "afterTabFileEdit",
    }
)


def working_directory(payload: dict[str, Any]) -> str | None:
    """Where Cursor ran: the first workspace root, else `cwd`."""
    roots = payload.get("workspace_roots")
    if isinstance(roots, list) and roots and isinstance(roots[0], str) and roots[0]:
        return roots[0]
    cwd = payload.get("cwd")
    return cwd if isinstance(cwd, str) and cwd else None


def _text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"field {key!r} should be a string, got {type(value).__name__}")
    return value or None


def _edits(payload: dict[str, Any]) -> list[tuple[str, str, bool]]:
    edits = payload.get("edits")
    if not isinstance(edits, list):
        return []
    result = []
    for edit in edits:
        if isinstance(edit, dict):
            old, new = edit.get("old_string"), edit.get("new_string")
            if isinstance(old, str) and isinstance(new, str):
                result.append((old, new, False))
    return result


def capture(payload: dict[str, Any], place: Place) -> Capture:
    """A Cursor hook payload as a Capture."""
    event_name = _text(payload, "hook_event_name")
    if event_name is None:
        raise PayloadError("the payload has no hook_event_name")
    session = _text(payload, "conversation_id") or _text(payload, "session_id")
    capture = Capture(session)
    actor = agent_actor(AGENT)
    git = git_context(place)
    model = _text(payload, "model")
    generation = _text(payload, "generation_id")

    refs: dict[str, Any]
    if event_name == "sessionStart":
        refs = {
            "model": model,
            "cwd": place.cwd,
            "cursor_version": _text(payload, "cursor_version"),
        }
        capture.add(
            Event(
                "session.start",
                actor=actor,
                session=session,
                git=git,
                subject=AGENT,
                refs={k: v for k, v in refs.items() if v is not None},
            )
        )
        if model:
            capture.session_updates["model"] = model
    elif event_name == "sessionEnd":
        reason = _text(payload, "reason") or _text(payload, "status") or "other"
        capture.add(
            Event(
                "session.end",
                actor=actor,
                session=session,
                git=git,
                subject=AGENT,
                refs={"reason": reason},
            )
        )
        capture.ends_session = True  # after its commits are made (hookmain)
    elif event_name == "beforeSubmitPrompt":
        capture.stdout = json.dumps({"continue": True})
        prompt = _text(payload, "prompt")
        if prompt is None:
            raise PayloadError("beforeSubmitPrompt without a prompt")
        refs = {"chars": len(prompt)}
        if generation:
            refs["generation"] = generation
        attachments = payload.get("attachments")
        if isinstance(attachments, list) and attachments:
            refs["attachments"] = [
                str(a.get("filePath") or a.get("file_path") or a.get("type"))
                for a in attachments[:50]
                if isinstance(a, dict)
            ]
        capture.prompt_at = 0
        capture.add(Event("agent.prompt", prompt, actor=actor, session=session, git=git, refs=refs))
        if model:
            capture.session_updates["model"] = model
    elif event_name == "afterFileEdit":
        path = _text(payload, "file_path")
        if path is None:
            raise PayloadError("afterFileEdit without a file_path")
        full = place.absolute(path)
        after = read_file_state(full)
        before = reverse_edits(after, _edits(payload))
        write = FileWrite(
            full, tool="afterFileEdit", before=before, after=after, before_known=before is not None
        )
        event = file_write_event(AGENT, session, place, write, git=git, generation=generation)
        capture.add(event)
        capture.writes.append((write, event))
    elif event_name == "afterShellExecution":
        command = _text(payload, "command") or ""
        shell_result = {"output": payload.get("output"), "duration_ms": payload.get("duration")}
        capture.add(
            tool_event(
                AGENT,
                session,
                "shell",
                {"command": command, "cwd": payload.get("cwd")},
                shell_result,
                git=git,
                generation=generation,
            )
        )
    elif event_name in ("afterMCPExecution", "postToolUse", "postToolUseFailure"):
        tool = _text(payload, "tool_name") or "tool"
        response = payload.get("result_json", payload.get("tool_output"))
        capture.add(
            tool_event(
                AGENT,
                session,
                tool,
                payload.get("tool_input"),
                response,
                git=git,
                generation=generation,
                status="error" if event_name == "postToolUseFailure" else None,
            )
        )
    elif event_name == "afterAgentResponse":
        text = _text(payload, "text")
        if text is None:
            raise PayloadError("afterAgentResponse without text")
        refs = {"chars": len(text), "model": model, "generation": generation}
        capture.reply_at = 0
        capture.add(Event("agent.response", text, actor=actor, session=session, git=git, refs=refs))
    elif event_name not in _QUIET_EVENTS:
        raise PayloadError(f"unexpected hook event {event_name[:80]!r}")
    return capture
