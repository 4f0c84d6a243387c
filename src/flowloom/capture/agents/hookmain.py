"""`flowloom hook <agent>`: the agent hook entry point, run before click is imported.

An agent (Claude Code, Codex CLI, Cursor) runs this on every prompt and tool use, so it
must be quick and must never get in the agent's way:

- it reads the payload (stdin; for Codex notify, the JSON argument), turns it into
  events with the agent's adapter, redacts them, and writes them to the spool, synced to
  disk (`flowloom.events.outbox`), then starts a detached drainer that records the spool
  into the ledger in order. Importing the ledger is what costs time, and the drainer
  pays it, not the agent;
- a file write with auto-commit on also leaves a commit request beside the outbox; the
  detached drainer commits it once the events are recorded, so the agent never waits for
  a commit; the next prompt, the turn's end and the session's end finish any commit
  still waiting first (`flowloom.capture.autocommit`). With a server configured the
  spool is the server's outbox (`flowloom.client`), so auto-commit does not run;
- a payload it cannot read becomes a capture.error event (the error text and the
  payload's digest, never its content) and the hook still exits 0; so does anything
  unexpected: only enforcement may block an agent, and capture is not enforcement;
- it prints nothing, except the one answer Cursor expects from beforeSubmitPrompt
  (``{"continue": true}``): Claude Code feeds some hooks' stdout to the model.

Standard library only on this path; `python -X importtime -m flowloom hook …` shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from flowloom.capture.agents.common import (
    Capture,
    Event,
    PayloadError,
    Place,
    capture_error,
    drop_session,
    load_session,
    locate,
    now_ts,
    save_session,
    take_notices,
)

__all__ = ["AGENTS", "MAX_PAYLOAD_BYTES", "main", "run"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from flowloom.events.redaction import Redactor

AGENTS = ("claude-code", "codex", "cursor")
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
_PROMPT_KEPT_CHARS = 4000

USAGE = """\
usage: flowloom hook AGENT     (AGENT: claude-code, codex, cursor)

Reads the agent's hook payload on stdin and records it in the ledger. Installed into
the agent's settings by 'flowloom init'; not meant to be run by hand.
"""


def _adapter(agent: str) -> Callable[[dict[str, Any], Place], Capture]:
    if agent == "claude-code":
        from flowloom.capture.agents import claude_code

        return claude_code.capture
    if agent == "codex":
        from flowloom.capture.agents import codex

        return codex.capture
    from flowloom.capture.agents import cursor

    return cursor.capture


def _read_payload(agent: str, rest: Sequence[str]) -> bytes:
    if agent == "codex" and rest:  # notify passes the JSON as an argument
        return rest[-1].encode("utf-8", "surrogateescape")
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or sys.stdin.isatty():
        return b""
    data: bytes = stream.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        while stream.read(1 << 20):  # drain it, so the agent's write does not fail
            pass
    return data


def _working_directory(agent: str, payload: dict[str, Any]) -> str:
    if agent == "cursor":
        from flowloom.capture.agents.cursor import working_directory

        found = working_directory(payload)
    else:
        cwd = payload.get("cwd")
        found = cwd if isinstance(cwd, str) and cwd else None
    if found and os.path.isdir(found):
        return found
    return os.getcwd()


def _clean(text: str) -> str:
    """Text that encodes as UTF-8 (lone surrogates from JSON escapes become U+FFFD)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", text)
    return text


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


_PATH_REFS = ("transcript_path", "cwd", "path", "history", "attachments", "files")
"""Refs that hold file paths: a path is not a secret, however random a directory name."""


def _identifier(redactor: Redactor, value: Any) -> Any:
    """A path or an id, redacted by the rules for known secret shapes only: the entropy
    rule would take a long mixed path (a project directory, a session's UUID) for a key."""
    if isinstance(value, str):
        return _clean(redactor.text(value, entropy=False))
    if isinstance(value, list):
        return [_identifier(redactor, v) for v in value]
    return _clean_value(redactor.value(value))


def redact_event(event: Event) -> None:
    """Redact an event's body and every string in its meta, in place, counting."""
    from flowloom.events.redaction import Redactor

    redactor = Redactor()
    if event.data is not None:
        event.data = _clean_value(redactor.value(event.data))
        event.body = event.body_text()
        event.data = None
    elif event.body is not None:
        event.body = _clean(redactor.text(event.body))
    kept: dict[str, Any] = {"session": event.meta.pop("session", None)}
    if event.kind == "artifact.write":
        kept["subject"] = event.meta.pop("subject", None)  # the path written
    refs = event.meta.get("refs")
    paths = {k: refs.pop(k) for k in _PATH_REFS if k in refs} if isinstance(refs, dict) else {}
    meta = _clean_value(redactor.value(event.meta))
    event.meta = meta if isinstance(meta, dict) else {}
    for key, value in kept.items():
        if value is not None:
            event.meta[key] = _identifier(redactor, value)
    if paths:
        refs = event.meta.setdefault("refs", {})
        refs.update({k: _identifier(redactor, v) for k, v in paths.items()})
    event.redactions = dict(redactor.counts)


def _ask_to_amend(place: Place, capture: Capture) -> None:
    """A turn's final reply amends the decision the turn produced (docs/capture.md).

    A capture that holds its own prompt (Codex notify) starts a new exchange: nothing
    to amend.
    """
    if capture.reply_at is None or capture.prompt_at is not None:
        return
    request = amend_request(place, capture.session)
    if request is not None:
        capture.events[capture.reply_at].amend = request


def amend_request(place: Place, session: str | None) -> dict[str, Any] | None:
    """What the turn's final reply amends: the decision auto-commit recorded or adopted
    for the current prompt (the session's scratch knows it); None when the turn
    produced none. The drainer records the reply and then the decision.amend that gives
    the decision the reply and the reasoning drawn from it."""
    scratch = load_session(place, session)
    decision, prompt = scratch.get("decision"), scratch.get("prompt")
    if not isinstance(decision, dict) or not isinstance(decision.get("id"), str):
        return None
    current = prompt.get("spool") if isinstance(prompt, dict) else None
    if decision.get("prompt") != current:
        return None  # the decision of an earlier prompt: this turn changed nothing
    request: dict[str, Any] = {"decision": decision["id"]}
    if isinstance(decision.get("entry"), int):
        request["record"] = decision["entry"]
    return request


def _fallback_stdout(agent: str, raw: bytes) -> str:
    """What an agent must read back even when the payload could not be handled."""
    if agent == "cursor" and b"beforeSubmitPrompt" in raw:
        return json.dumps({"continue": True})
    return ""


def _capture(agent: str, raw: bytes) -> tuple[Place, Capture]:
    if not raw.strip():
        place = locate(os.getcwd())
        capture = Capture(None)
        capture.add(capture_error(agent, "the hook received no payload", raw))
        return place, capture
    if len(raw) > MAX_PAYLOAD_BYTES:
        place = locate(os.getcwd())
        capture = Capture(None)
        error = f"the payload is over {MAX_PAYLOAD_BYTES} bytes; not recorded"
        capture.add(capture_error(agent, error, raw[:MAX_PAYLOAD_BYTES]))
        return place, capture
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        place = locate(os.getcwd())
        capture = Capture(None)
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        capture.add(capture_error(agent, f"the payload is not valid JSON: {reason}", raw))
        return place, capture
    if not isinstance(payload, dict):
        place = locate(os.getcwd())
        capture = Capture(None)
        what = type(payload).__name__
        capture.add(capture_error(agent, f"the payload is a JSON {what}, not an object", raw))
        return place, capture
    place = locate(_working_directory(agent, payload))
    try:
        return place, _adapter(agent)(payload, place)
    except PayloadError as exc:
        capture = Capture(None)
        event_name = payload.get("hook_event_name") or payload.get("type")
        capture.add(
            capture_error(
                agent,
                f"unexpected payload: {exc}",
                raw,
                hook_event=str(event_name)[:80] if event_name is not None else None,
            )
        )
        return place, capture


def _hook(agent: str, raw: bytes) -> int:
    if agent not in AGENTS:
        # A misconfigured hook: say so once, record it, and still exit 0 (never block).
        sys.stderr.write(
            f"flowloom: error: unknown agent {agent[:40]!r} (use claude-code, codex or cursor)\n"
        )
        place = locate(os.getcwd())
        capture = Capture(None)
        capture.add(capture_error(agent, f"unknown agent {agent[:40]!r}", raw))
    else:
        place, capture = _capture(agent, raw)
    from flowloom.events import outbox

    notices: list[str] = []
    try:
        for part in _turn_parts(capture):
            notices += _deliver(agent, raw, place, part)
    except _NotRecorded as exc:
        return _unrecorded(agent, place, raw, capture.stdout, str(exc))
    if _turn_boundary(capture) and not capture.ends_session:
        # What was given up off the agent's path since this session's last prompt or
        # turn's end (the drainer's commits, a deferred turn's end): told now, once. (A
        # session's end is shown to nobody: a resumed session's first prompt tells.)
        told = take_notices(place.state_dir, capture.session)
        notices += [n for n in told if n not in notices]
    with contextlib.suppress(OSError):
        outbox.kick(place.spool_dir, place.top or place.cwd)
    out = _with_warning(agent, capture.stdout or _fallback_stdout(agent, raw), notices)
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0


class _NotRecorded(Exception):
    """Neither the spool nor the fallback outbox could be written."""


def _turn_parts(capture: Capture) -> list[Capture]:
    """A Stop that found edits which bypassed capture: those are recorded and committed
    first, so the turn's reply then amends the decision their commit is linked to."""
    if not capture.writes or capture.reply_at is None or capture.reply_at == 0:
        return [capture]
    first = Capture(capture.session)
    first.events = capture.events[: capture.reply_at]
    first.writes = capture.writes
    rest = Capture(capture.session)
    rest.events = capture.events[capture.reply_at :]
    rest.reply_at = 0
    rest.session_updates = capture.session_updates
    return [first, rest]


def _turn_boundary(capture: Capture) -> bool:
    """Whether this run starts an exchange, ends a turn or ends the session: the points
    where the turn's commits must have been made (`flowloom.capture.autocommit.finish`)."""
    return capture.prompt_at is not None or capture.reply_at is not None or capture.ends_session


def _ledger_notice(events: Sequence[Event]) -> list[str]:
    """What the user must be told of the commits this hook gave up: every one."""
    from flowloom.capture.autocommit import commit_notice

    notices = []
    for event in events:
        error = event.meta.get("refs", {}).get("error", "")
        if event.kind == "capture.error" and (
            error.startswith("auto-commit") or "cannot open the ledger" in error
        ):
            notices.append(commit_notice(error))
    return notices


def _deliver(agent: str, raw: bytes, place: Place, capture: Capture) -> list[str]:
    """Redact, spool, and ask for the commit when the capture wrote files; what the
    agent's user must be told.

    The agent never waits for a commit here: the events are made durable, a commit
    request names them, and the detached drainer commits. Only at a turn's boundary
    does a hook finish a commit still waiting (usually already made).
    """
    notices: list[str] = []
    for event in capture.events:
        redact_event(event)
    extra: list[Event] = []
    if place.top is not None and _turn_boundary(capture):
        from flowloom.capture import autocommit

        if (
            _may_defer(capture)
            and autocommit.jobs_waiting(place.state_dir)
            and autocommit.defer_if_busy(place, agent, capture, _amend_position(capture))
        ):
            # The turn's (or session's) end while the drainer is making its commits:
            # its events wait, durably, behind them in the same queue; the drainer asks
            # for the amendment once the decision is known. The agent does not wait.
            with contextlib.suppress(OSError):
                save_session(place, capture.session, dict(capture.session_updates))
            return notices
        extra = autocommit.finish(place, agent, raw)
        for event in extra:
            redact_event(event)
        notices += _ledger_notice(extra)
    _ask_to_amend(place, capture)
    commit = False
    if capture.writes and place.top is not None:
        from flowloom.capture.autocommit import read_policy

        policy = read_policy(place.top)
        if policy.get("auto_commit"):
            commit = True  # in server mode too: the drainer commits and sends to the server
        elif policy.get("error"):
            note = capture_error(agent, f"auto-commit skipped: {policy['error']}", raw)
            redact_event(note)
            extra.append(note)
            notices += _ledger_notice([note])
    from flowloom.events import outbox

    to_spool = [*capture.events, *extra]
    written = None
    if to_spool:
        try:
            written = outbox.write_durably(
                place.spool_dir, agent, [e.to_json() for e in to_spool], now_ts()
            )
        except outbox.OutboxUnwritableError as exc:
            raise _NotRecorded(str(exc)) from exc
        if written.fallback:
            notices.append(
                f"capture could not write {place.spool_dir} ({written.primary_error}); "
                f"the events are kept in {written.directory} instead."
            )
    if commit and written is not None:
        from flowloom.capture.autocommit import enqueue

        try:
            enqueue(place, agent, capture, written, raw)
        except OSError as exc:  # the events are kept; only the commit is not asked for
            note = capture_error(agent, f"auto-commit skipped: cannot ask for it: {exc}", raw)
            redact_event(note)
            with contextlib.suppress(outbox.OutboxUnwritableError):
                outbox.write_durably(place.spool_dir, agent, [note.to_json()], now_ts())
            notices.append(f"auto-commit skipped: cannot ask for it: {exc}")
    updates = dict(capture.session_updates)
    if capture.prompt_at is not None and written is not None:
        prompt = capture.events[capture.prompt_at].body or ""
        updates["prompt"] = {
            "spool": written.name,
            "dir": written.directory,
            "pos": written.offset + capture.prompt_at,
            "text": prompt[:_PROMPT_KEPT_CHARS],
            "at": now_ts(),
        }
        updates["decision"] = None  # a new exchange: its decision is not known yet
    with contextlib.suppress(OSError):  # scratch is a convenience; the events are kept
        save_session(place, capture.session, updates)
    if capture.ends_session:
        drop_session(place, capture.session)
    return notices


def _may_defer(capture: Capture) -> bool:
    """A turn's end or the session's end, with nothing to write or commit of its own:
    its events can wait behind the commits still being made."""
    return capture.prompt_at is None and not capture.writes


def _amend_position(capture: Capture) -> int | None:
    return capture.reply_at if capture.prompt_at is None else None


def _with_warning(agent: str, out: str, notices: list[str]) -> str:
    """The hook's answer, carrying `notices` the way the agent shows them to its user.

    Claude Code and Codex read a JSON answer's `systemMessage` (the session goes on);
    every agent also gets the line on stderr.
    """
    if not notices:
        return out
    text = "FlowLoom: " + " ".join(notices)
    sys.stderr.write(text + "\n")
    if agent in ("claude-code", "codex"):
        try:
            answer = json.loads(out) if out else {}
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            answer["systemMessage"] = text
            return json.dumps(answer)
    return out


def _unrecorded(agent: str, place: Place, raw: bytes, stdout: str, error: str) -> int:
    """Nothing could be written: tell the agent; block it only when the policy says so.

    Claude Code: exit 2 with the reason on stderr blocks the tool call and shows the
    reason (`fail_closed`); otherwise a `systemMessage` warns the user and the session
    goes on. The loss itself was noted (`flowloom.events.outbox.note_failure`) and is
    recorded as a capture.error by the next write that succeeds.
    """
    message = f"this {agent} event was NOT recorded: {error}"
    if _fail_closed(place):
        sys.stderr.write(
            f"FlowLoom: {message}; the policy is fail_closed, so the action is blocked\n"
        )
        return 2
    out = _with_warning(agent, stdout or _fallback_stdout(agent, raw), [message])
    if out:
        sys.stdout.write(out + "\n")
    return 0 if agent == "claude-code" else 1


def _fail_closed(place: Place) -> bool:
    """Whether the repository's policy blocks the agent when capture cannot record."""
    if place.top is None:
        return False
    from pathlib import Path

    from flowloom.errors import FlowLoomError
    from flowloom.repo.policy import load_policy

    try:
        return load_policy(Path(place.top)).fail_closed
    except FlowLoomError:
        return True  # a policy that cannot be read is not permission to lose events


def _last_resort(agent: str, raw: bytes, exc: BaseException) -> None:
    """Something unexpected failed: keep a trace of it and tell the agent's user, without
    stopping the agent."""
    if os.environ.get("FLOWLOOM_DEBUG"):
        import traceback

        traceback.print_exc()
    try:
        from flowloom.events import outbox

        place = locate(os.getcwd())
        error = f"internal error in the {agent} hook: {type(exc).__name__}: {exc}"
        event = capture_error(agent, error, raw)
        redact_event(event)
        outbox.write_durably(place.spool_dir, agent, [event.to_json()], now_ts())
        outbox.kick(place.spool_dir, place.top or place.cwd)
        notice = f"a hook failed ({type(exc).__name__}: {exc}); recorded as a capture error."
    except BaseException as second:
        notice = (
            f"this {agent} event could NOT be recorded ({type(exc).__name__}: {exc}; "
            f"and the spool: {type(second).__name__}: {second}). Run `flowloom status`."
        )
    out = _with_warning(agent, _fallback_stdout(agent, raw), [notice])
    if out:
        sys.stdout.write(out + "\n")


def main(argv: Sequence[str]) -> int:
    """`flowloom hook AGENT`."""
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return 0 if argv else 2
    agent = argv[0]
    if sys.stdin is not None and sys.stdin.isatty() and not (agent == "codex" and argv[1:]):
        # Someone typed it: there is no payload to wait for, and nothing to record.
        sys.stderr.write(
            "flowloom: error: no hook payload on stdin (agents run this command; "
            "see 'flowloom hook --help')\n"
        )
        return 2
    raw = b""
    try:
        raw = _read_payload(agent, argv[1:])
        return _hook(agent, raw)
    except BaseException as exc:  # a hook never breaks the agent's session
        _last_resort(agent, raw, exc)
        return 0


def run(argv: Sequence[str]) -> int:
    """`main`, then leave at once: the entry the light dispatch (`flowloom/__main__.py`) uses.

    A hook's work is durable (fsynced) and its output flushed when `main` returns;
    skipping the interpreter's teardown saves the agent several milliseconds per event.
    """
    import contextlib  # already loaded by `python -m`

    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
