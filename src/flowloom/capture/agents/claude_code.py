"""Claude Code hooks: payloads in, events out.

Claude Code runs a command hook with one JSON object on stdin (common fields
`session_id`, `transcript_path`, `cwd`, `hook_event_name`, `permission_mode`):

- `SessionStart` (`source`: startup/resume/clear/compact, `model`) → session.start
- `UserPromptSubmit` (`prompt`) → agent.prompt, the prompt text as body
- `PreToolUse` (`tool_name`, `tool_input`, `tool_use_id`) → nothing recorded; for file
  writes (Write, Edit, MultiEdit, NotebookEdit) the file's content is kept in the
  session scratch so the write can be diffed afterwards
- `PostToolUse` (… `tool_response`) → artifact.write per file written (path, before
  and after digests, unified diff as body), agent.tool for every other tool
- `PostToolUseFailure` (… `error`, `is_interrupt`) → agent.tool with status error
- `Stop` / `SubagentStop` → agent.response: the text of the last assistant message in
  the transcript (`transcript_path`, JSONL); Stop also deletes the turn's leftover
  before-images and shreds their key (`flowloom.capture.agents.snapshots`), records
  write calls that never ended (agent.tool, status `unfinished`) and edits that
  bypassed capture (artifact.write `detected: stop` and capture.bypass, against the
  work tree noted at UserPromptSubmit: `flowloom.capture.agents.worktree`)
- `SessionEnd` (`reason`) → session.end

For UserPromptSubmit and SessionStart, Claude Code adds whatever the hook prints to the
model's context, so the hook prints nothing. Codex CLI hooks use the same payloads
(`flowloom.capture.agents.codex` adds its own tools); `handle` serves both.
"""

from __future__ import annotations

import os

from flowloom.capture.agents.common import (
    Capture,
    Event,
    FileWrite,
    PayloadError,
    Place,
    agent_actor,
    capture_error,
    file_write_event,
    git_context,
    load_session,
    read_file_state,
    tool_event,
    transcript_reply,
)
from flowloom.capture.agents.snapshots import forget_before, snapshot_before, take_before
from flowloom.capture.agents.worktree import bypassed, head_content, snapshot, state_of

__all__ = ["AGENT", "WRITE_TOOLS", "capture", "handle"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    PathFinder = Callable[[str, Any, Place], list[str] | None]

AGENT = "claude-code"

WRITE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
"""Claude Code tools that write files; the rest are recorded as agent.tool."""

# Events a user may wire to the hook that carry nothing worth recording.
_QUIET_EVENTS = frozenset(
    {
        "Notification",
        "PreCompact",
        "PostCompact",
        "PermissionRequest",
        "SubagentStart",
        "Setup",
        "TeammateIdle",
        "TaskCreated",
        "TaskCompleted",
        "PostToolBatch",
        "UserPromptExpansion",
    }
)


def _text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"field {key!r} should be a string, got {type(value).__name__}")
    return value or None


def claude_write_paths(tool: str, tool_input: Any, place: Place) -> list[str] | None:
    """The files a Claude Code tool writes (absolute paths), or None for other tools."""
    if tool not in WRITE_TOOLS:
        return None
    if not isinstance(tool_input, dict):
        raise PayloadError(f"{tool} tool_input should be an object")
    path = tool_input.get("file_path") or tool_input.get("notebook_path")
    if not isinstance(path, str) or not path:
        raise PayloadError(f"{tool} tool_input has no file_path")
    return [place.absolute(path)]


def _edits(tool: str, tool_input: Any) -> list[tuple[str, str, bool]]:
    if not isinstance(tool_input, dict):
        return []
    if tool == "Edit":
        raw = [tool_input]
    elif tool == "MultiEdit" and isinstance(tool_input.get("edits"), list):
        raw = tool_input["edits"]
    else:
        return []
    edits = []
    for item in raw:
        if isinstance(item, dict):
            old, new = item.get("old_string"), item.get("new_string")
            if isinstance(old, str) and isinstance(new, str):
                edits.append((old, new, bool(item.get("replace_all"))))
    return edits


def reverse_edits(after: bytes | None, edits: list[tuple[str, str, bool]]) -> bytes | None:
    """The content before string-replacement edits, undone from the content after them."""
    if after is None or not edits:
        return None
    try:
        text = after.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for old, new, every in reversed(edits):
        if not new or new not in text:
            return None
        text = text.replace(new, old) if every else text.replace(new, old, 1)
    return text.encode("utf-8")


def _before_from_response(tool_response: Any) -> tuple[bool, bytes | None]:
    """Claude Code's Write/Edit responses may carry `originalFile` (null on create)."""
    if isinstance(tool_response, dict) and "originalFile" in tool_response:
        original = tool_response["originalFile"]
        if original is None:
            return True, None
        if isinstance(original, str):
            return True, original.encode("utf-8")
    return False, None


def _failed(tool_response: Any) -> bool:
    if isinstance(tool_response, dict):
        if tool_response.get("success") is False or tool_response.get("is_error") is True:
            return True
        if isinstance(tool_response.get("error"), str) and tool_response["error"]:
            return True
    return False


def handle(
    payload: dict[str, Any],
    place: Place,
    *,
    agent: str,
    write_paths: PathFinder,
    reply_in_payload: bool = False,
) -> Capture:
    """A Claude-Code-shaped hook payload (Claude Code, Codex CLI) as a Capture."""
    event_name = _text(payload, "hook_event_name")
    session = _text(payload, "session_id")
    capture = Capture(session)
    actor = agent_actor(agent)
    model = _text(payload, "model")
    if event_name is None:
        raise PayloadError("the payload has no hook_event_name")
    git = git_context(place)

    refs: dict[str, Any]
    if event_name == "SessionStart":
        refs = {
            "source": _text(payload, "source") or "startup",
            "model": model,
            "cwd": place.cwd,
            "transcript_path": _text(payload, "transcript_path"),
        }
        capture.add(
            Event(
                "session.start",
                actor=actor,
                session=session,
                git=git,
                subject=agent,
                refs={k: v for k, v in refs.items() if v is not None},
            )
        )
        if model:
            capture.session_updates["model"] = model
        return capture

    if event_name == "UserPromptSubmit":
        prompt = _text(payload, "prompt")
        if prompt is None:
            raise PayloadError("UserPromptSubmit without a prompt")
        turn = _text(payload, "turn_id") or _text(payload, "prompt_id")
        refs = {"chars": len(prompt), "turn": turn}
        capture.prompt_at = len(capture.events)
        capture.add(Event("agent.prompt", prompt, actor=actor, session=session, git=git, refs=refs))
        if model:
            capture.session_updates["model"] = model
        if place.top is not None and session:
            # What the work tree held when the turn began, to find at Stop the edits
            # no tool hook reported (flowloom.capture.agents.worktree).
            capture.session_updates["worktree"] = snapshot(place)
            capture.session_updates["written"] = None
        return capture

    if event_name in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
        tool = _text(payload, "tool_name") or ""
        if not tool:
            raise PayloadError(f"{event_name} without a tool_name")
        tool_input = payload.get("tool_input")
        tool_use_id = _text(payload, "tool_use_id") or ""
        paths = write_paths(tool, tool_input, place)
        if event_name == "PreToolUse":
            for path in paths or ():
                snapshot_before(place, session, tool_use_id, path)
            if paths and session and tool_use_id:
                _pending(place, session, capture)[tool_use_id] = {
                    "tool": tool,
                    "paths": [place.relative(p) for p in paths],
                }
            return capture
        if paths and session and tool_use_id:
            _pending(place, session, capture).pop(tool_use_id, None)
        tool_response = payload.get("tool_response", payload.get("tool_output"))
        failed = event_name == "PostToolUseFailure" or _failed(tool_response)
        if paths and not failed:
            edits = _edits(tool, tool_input)
            for path in paths:
                found, before = take_before(place, session, tool_use_id, path)
                after = read_file_state(path)
                if not found:
                    found, before = _before_from_response(tool_response)
                if not found:
                    before = reverse_edits(after, edits)
                    found = before is not None
                if found and before == after:
                    continue  # nothing changed on disk
                write = FileWrite(path, tool=tool, before=before, after=after, before_known=found)
                event = file_write_event(
                    agent, session, place, write, git=git, tool_use_id=tool_use_id or None
                )
                capture.add(event)
                capture.writes.append((write, event))
            if capture.writes:
                _note_written(place, session, capture)
                return capture
        if paths:  # a failed or empty write: nothing to diff, the attempt still counts
            for path in paths:
                take_before(place, session, tool_use_id, path)
        capture.add(
            tool_event(
                agent,
                session,
                tool,
                tool_input,
                payload.get("error") if failed and "error" in payload else tool_response,
                git=git,
                tool_use_id=tool_use_id or None,
                status="error" if failed else "ok",
                interrupted=True if payload.get("is_interrupt") is True else None,
            )
        )
        return capture

    if event_name in ("Stop", "SubagentStop", "StopFailure"):
        if event_name != "SubagentStop":
            forget_before(place, session)  # the turn is over: no write is pending
            _unfinished_calls(place, session, agent, git, capture)
            _bypassed_edits(place, session, agent, git, capture)
        reply: str | None = _text(payload, "last_assistant_message") if reply_in_payload else None
        reply_model = model
        transcript = _text(payload, "transcript_path")
        if reply is None and transcript:
            try:
                reply, found_model = transcript_reply(transcript)
                reply_model = reply_model or found_model
            except OSError as exc:
                capture.add(
                    capture_error(
                        agent,
                        f"cannot read the transcript {transcript}: {exc.strerror or exc}",
                        None,
                    )
                )
        if reply is None and not reply_in_payload:
            reply = _text(payload, "last_assistant_message")
        if reply is None:
            return capture
        refs = {"chars": len(reply)}
        if reply_model:
            refs["model"] = reply_model
            capture.session_updates["model"] = reply_model
        if event_name != "Stop":
            refs["hook_event"] = event_name
        if payload.get("stop_hook_active") is True:
            refs["stop_hook_active"] = True
        if event_name == "Stop":  # the turn's final reply (a subagent's is not)
            capture.reply_at = len(capture.events)
        capture.add(
            Event("agent.response", reply, actor=actor, session=session, git=git, refs=refs)
        )
        return capture

    if event_name == "SessionEnd":
        refs = {"reason": _text(payload, "reason") or "other"}
        capture.add(
            Event("session.end", actor=actor, session=session, git=git, subject=agent, refs=refs)
        )
        capture.ends_session = True  # after its commits are made (hookmain)
        return capture

    if event_name in _QUIET_EVENTS:
        return capture
    raise PayloadError(f"unexpected hook event {event_name[:80]!r}")


def _pending(place: Place, session: str, capture: Capture) -> dict[str, Any]:
    """The turn's file-writing tool calls that started (PreToolUse) and have not ended,
    by tool_use_id, kept in the session scratch (changes saved with the capture)."""
    pending = capture.session_updates.get("pending_tools")
    if not isinstance(pending, dict):
        stored = load_session(place, session).get("pending_tools")
        pending = dict(stored) if isinstance(stored, dict) else {}
        capture.session_updates["pending_tools"] = pending
    return pending


def _unfinished_calls(
    place: Place, session: str | None, agent: str, git: dict[str, str] | None, capture: Capture
) -> None:
    """At Stop: a write tool that started and never reported a result (Codex sends no
    PostToolUse when apply_patch fails, nor for a patch run through its shell) is
    recorded as agent.tool with status `unfinished`, so the attempt leaves a trace."""
    if not session:
        return
    pending = _pending(place, session, capture)
    for tool_use_id, call in sorted(pending.items()):
        if not isinstance(call, dict):
            continue
        tool = str(call.get("tool") or "tool")
        capture.add(
            tool_event(
                agent,
                session,
                tool,
                {"paths": call.get("paths")},
                "no result was reported by the agent",
                git=git,
                tool_use_id=tool_use_id,
                status="unfinished",
                detected="stop",
            )
        )
    capture.session_updates["pending_tools"] = None


def _note_written(place: Place, session: str | None, capture: Capture) -> None:
    """Keep the state each captured write left, so Stop does not report it again."""
    if not session or place.top is None:
        return
    written = load_session(place, session).get("written")
    written = dict(written) if isinstance(written, dict) else {}
    for write, _event in capture.writes:
        written[place.relative(write.path)] = state_of(write.after)
    capture.session_updates["written"] = written


def _bypassed_edits(
    place: Place, session: str | None, agent: str, git: dict[str, str] | None, capture: Capture
) -> None:
    """At Stop: files changed during the turn that no tool hook reported, recorded as
    artifact.write (`detected: stop`) plus one capture.bypass listing them."""
    if not session or place.top is None:
        return
    scratch = load_session(place, session)
    before = scratch.get("worktree")
    if not isinstance(before, dict):
        return  # the turn's start was not seen: nothing to compare with
    written = scratch.get("written")
    written = written if isinstance(written, dict) else {}
    capture.session_updates["worktree"] = None  # reported once, even if Stop comes again
    capture.session_updates["written"] = None
    found = bypassed(place, before, written)
    if not found:
        return
    files = []
    for rel, state in found:
        path = place.absolute(os.path.join(place.top, rel))
        after = read_file_state(path)
        if rel in before:  # already changed when the prompt came: that content is unknown
            known, old = before[rel] == "absent", None
        else:
            old = head_content(place, rel)
            known = True
        if known and state_of(old) == state_of(after):
            continue
        write = FileWrite(path, tool="unseen", before=old, after=after, before_known=known)
        event = file_write_event(agent, session, place, write, git=git, detected="stop")
        capture.add(event)
        capture.writes.append((write, event))
        files.append({"path": rel, "before": event.meta["refs"].get("before"), "after": state})
    if files:
        refs = {"files": files, "count": len(files), "detected": "stop"}
        capture.add(
            Event(
                "capture.bypass",
                actor=agent_actor(agent),
                session=session,
                git=git,
                subject=agent,
                refs=refs,
            )
        )


def capture(payload: dict[str, Any], place: Place) -> Capture:
    """A Claude Code hook payload as a Capture."""
    return handle(payload, place, agent=AGENT, write_paths=claude_write_paths)
