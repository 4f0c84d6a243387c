"""Capture health: what `flowloom status` checks beyond the hooks being installed.

Capture fails quietly by nature (a hook must never stop the agent), so the failures have
to be findable afterwards:

- the spool backlog: events written by hooks and not yet in the ledger (spool files the
  journal does not name), the time the oldest of them happened (taken in its hook), the
  files set aside as unreadable (`spool/bad/`), and the drainer's last logged failure
  (`capture.log`). A backlog older than `STALE_SPOOL_S` means the ledger is not being
  written. Files in the fallback outbox, or an outbox hooks cannot write, mean the
  fallback is in use: the events are kept, but the outbox needs repair;
- the commit queue: auto-commit requests (`<state>/commits/`) the drainer has not made
  yet, and the age of the oldest. A request older than `STUCK_COMMIT_S` means no
  drainer is making them: the agent's writes stay uncommitted;
- capture errors since the last healthy state: `capture.error` events recorded after the
  last acknowledgement. `flowloom status --acknowledge` records one: a `config.change`
  (subject `capture`, refs `action: "acknowledge-capture-errors"`, `through`: the last
  error's entry, `count`), so who declared capture healthy again, and when, is in the
  ledger too;
- agent hooks installed but never fired: an agent whose hooks this repository set up
  (`flowloom init`, a `config.change` with `action: init`) more than `SILENT_AFTER_S`
  ago, with no event from it since (no session.start, agent.prompt or artifact.write
  whose actor is that agent, in the ledger or waiting in the spool). The usual causes:
  Codex's hook trust not given, the agent started outside the repository, hooks
  disabled in the agent's settings.

Reads only: nothing here writes except `acknowledge`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowloom.events import outbox
from flowloom.ledger.event import Event
from flowloom.ledger.log import Ledger

__all__ = [
    "ACK_ACTION",
    "SILENT_AFTER_S",
    "STALE_SPOOL_S",
    "STUCK_COMMIT_S",
    "Backlog",
    "CaptureError",
    "CommitQueue",
    "SilentAgent",
    "acknowledge",
    "backlog",
    "commit_queue",
    "describe",
    "errors_since_healthy",
    "silent_agents",
]

STALE_SPOOL_S = 60.0
"""Events waiting longer than this in the spool mean the drainer is not recording them."""

STUCK_COMMIT_S = 120.0
"""A commit request waiting longer than this is stuck: a drainer makes one in a second
or two, and every prompt and turn's end finishes those still waiting."""

SILENT_AFTER_S = 3600.0
"""Agent hooks installed longer ago than this that never fired are reported."""

ACK_ACTION = "acknowledge-capture-errors"
_SHOWN_ERRORS = 5


@dataclass(frozen=True)
class Backlog:
    """Events in the spool not yet recorded."""

    files: int
    events: int
    oldest: str | None  # when the oldest waiting event happened (its hook's time)
    oldest_age_s: float | None
    bad: int  # files set aside as unreadable (each also recorded as a capture.error)
    last_failure: str | None  # the drainer's last line in capture.log, when it failed since
    fallback_files: int = 0  # of `files`, those waiting in the fallback outbox
    fallback_dir: str | None = None
    outbox_unusable: str | None = None  # why hooks cannot write the outbox (so: fallback)

    @property
    def fallback_in_use(self) -> bool:
        """Hooks write (or wrote) to the fallback: the outbox itself needs repair."""
        return bool(self.fallback_files) or self.outbox_unusable is not None

    @property
    def stale(self) -> bool:
        return self.oldest_age_s is not None and self.oldest_age_s > STALE_SPOOL_S

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "events": self.events,
            "oldest": self.oldest,
            "oldest_age_s": self.oldest_age_s,
            "stale": self.stale,
            "bad": self.bad,
            "last_failure": self.last_failure,
            "fallback": {
                "in_use": self.fallback_in_use,
                "dir": self.fallback_dir,
                "files": self.fallback_files,
                "outbox_unusable": self.outbox_unusable,
            },
        }


def _age_s(ts: str, now: float) -> float | None:
    try:
        return max(0.0, now - datetime.fromisoformat(ts).timestamp())
    except ValueError:
        return None


def _last_failure(state_dir: str, since: float) -> str | None:
    """The last line of capture.log, when it was written after `since` (epoch seconds)."""
    path = os.path.join(state_dir, "capture.log")
    try:
        if os.path.getmtime(path) < since:
            return None
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    return lines[-1].strip() if lines else None


def backlog(state_dir: str, now: float | None = None) -> Backlog:
    """The spool's backlog under `state_dir` (`.git/flowloom` or FLOWLOOM_HOME)."""
    now = time.time() if now is None else now
    spool_dir = os.path.join(state_dir, "spool")
    waiting = [(n, d) for d in outbox.outbox_dirs(spool_dir) for n in outbox.waiting(d)]
    events = 0
    oldest: str | None = None
    first_mtime: float | None = None
    for name, directory in waiting:
        path = os.path.join(directory, name)
        try:
            first_mtime = min(first_mtime or now, os.path.getmtime(path))
            record = outbox.read_record(directory, name)
        except (OSError, ValueError):
            continue  # the drainer sets it aside and records the error
        items = [e for e in record["events"] if isinstance(e, dict)]
        events += len(items)
        for ts in [e.get("ts") for e in items] + [record.get("created")]:
            if isinstance(ts, str) and (oldest is None or ts < oldest):
                oldest = ts
    try:
        bad = len([n for n in os.listdir(os.path.join(spool_dir, "bad")) if n.endswith(".json")])
    except OSError:
        bad = 0
    age = _age_s(oldest, now) if oldest else None
    if age is None and first_mtime is not None:
        age = max(0.0, now - first_mtime)
    failure = _last_failure(state_dir, first_mtime) if first_mtime is not None else None
    fallback = outbox.fallback_dir(spool_dir)
    in_fallback = sum(1 for _, directory in waiting if directory == fallback)
    return Backlog(
        len(waiting),
        events,
        oldest,
        age,
        bad,
        failure,
        fallback_files=in_fallback,
        fallback_dir=fallback,
        outbox_unusable=_unusable(spool_dir),
    )


@dataclass(frozen=True)
class CommitQueue:
    """Auto-commit requests waiting for the drainer (`<state>/commits/`)."""

    requests: int
    oldest: str | None  # when the oldest request was written
    oldest_age_s: float | None
    directory: str

    @property
    def stuck(self) -> bool:
        return self.oldest_age_s is not None and self.oldest_age_s > STUCK_COMMIT_S

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "oldest": self.oldest,
            "oldest_age_s": self.oldest_age_s,
            "stuck": self.stuck,
            "dir": self.directory,
        }


def commit_queue(state_dir: str, now: float | None = None) -> CommitQueue:
    """The commit requests waiting under `state_dir`; a request that cannot be read
    counts with its file's time (the drainer records it as a capture error)."""
    from flowloom.capture.autocommit import jobs_dir

    now = time.time() if now is None else now
    directory = jobs_dir(state_dir)
    names = outbox.pending(directory)
    oldest: str | None = None
    oldest_age: float | None = None
    for name in names:
        created: Any = None
        with contextlib.suppress(OSError, ValueError):
            created = outbox.read_record(directory, name).get("created")
        age = _age_s(created, now) if isinstance(created, str) else None
        if age is None:
            try:
                age = max(0.0, now - os.path.getmtime(os.path.join(directory, name)))
            except OSError:
                continue  # made and removed meanwhile
        if oldest_age is None or age > oldest_age:
            oldest_age = age
            oldest = created if isinstance(created, str) else None
    return CommitQueue(len(names), oldest, oldest_age, directory)


def _unusable(spool_dir: str) -> str | None:
    """Why a hook could not write the outbox now, found without writing (reads only):
    a path that is not a directory, or one this user may not write (`access` also sees
    an immutable directory, for root too). None when it looks usable, or is not there
    yet (the first hook creates it)."""
    path = spool_dir
    while not os.path.lexists(path):  # the nearest existing ancestor must be writable
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


@dataclass(frozen=True)
class CaptureError:
    """One `capture.error` event: where, when, about what, and what failed."""

    index: int
    ts: str
    subject: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ts": self.ts, "subject": self.subject, "error": self.error}


def errors_since_healthy(ledger: Ledger) -> tuple[int | None, list[CaptureError]]:
    """(the entry the last acknowledgement reached, the capture errors recorded after it).

    Reads `capture.error` and `config.change` entries by kind (an indexed query).
    """
    through: int | None = None
    needle = json.dumps(ACK_ACTION).encode()
    for entry in ledger.store.entries(ledger.log, kind="config.change"):
        if needle not in entry.envelope:
            continue
        refs = Event.parse(entry.envelope).refs
        reached = refs.get("through")
        if refs.get("action") == ACK_ACTION and isinstance(reached, int):
            through = max(through or 0, reached)
    start = 0 if through is None else through + 1
    errors = []
    for entry in ledger.store.entries(ledger.log, start, kind="capture.error"):
        event = Event.parse(entry.envelope)
        error = event.refs.get("error")
        errors.append(
            CaptureError(
                entry.index,
                event.ts,
                event.subject or "",
                error if isinstance(error, str) else "",
            )
        )
    return through, errors


def acknowledge(ledger: Ledger, errors: list[CaptureError]) -> int:
    """Record that `errors` were seen and capture is healthy again; the entry's index."""
    refs = {"action": ACK_ACTION, "through": errors[-1].index, "count": len(errors)}
    return ledger.record("config.change", meta={"subject": "capture", "refs": refs}).index


def describe(errors: list[CaptureError]) -> list[str]:
    """One line per error, the latest few, for people."""
    shown = errors[-_SHOWN_ERRORS:]
    lines = [f"entry {e.index} ({e.ts}) {e.subject}: {e.error[:200]}" for e in shown]
    if len(errors) > len(shown):
        lines.insert(0, f"… and {len(errors) - len(shown)} earlier")
    return lines


# Each agent's settings file, as `flowloom init` names it in its config.change.
_SETTINGS_FILES = {
    "claude-code": ".claude/settings.json",
    "codex": ".codex/hooks.json",
    "cursor": ".cursor/hooks.json",
}
_AGENT_KINDS = ("session.start", "agent.prompt", "artifact.write", "agent.tool")


@dataclass(frozen=True)
class SilentAgent:
    """An agent whose hooks were installed `age_s` ago and never recorded anything."""

    agent: str
    installed: str
    age_s: float

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "installed": self.installed, "age_s": self.age_s}


def _installed_at(ledger: Ledger) -> dict[str | None, str]:
    """agent → when `init` last wrote its hooks; None → when FlowLoom was first set up."""
    found: dict[str | None, str] = {}
    needle = b'"init"'
    for entry in ledger.store.entries(ledger.log, kind="config.change"):
        if needle not in entry.envelope:
            continue
        event = Event.parse(entry.envelope)
        if event.refs.get("action") != "init":
            continue
        found.setdefault(None, event.ts)
        written = event.refs.get("agents")
        for agent, name in _SETTINGS_FILES.items():
            if isinstance(written, list | tuple) and any(
                isinstance(p, str) and p.replace("\\", "/").endswith(name) for p in written
            ):
                found[agent] = event.ts
    return found


def _heard_from(ledger: Ledger, agents: set[str]) -> set[str]:
    heard: set[str] = set()
    for kind in _AGENT_KINDS:
        for entry in ledger.store.entries(ledger.log, kind=kind):
            if not any(agent.encode() in entry.envelope for agent in agents - heard):
                continue
            actor = Event.parse(entry.envelope).actor
            if actor.type == "agent" and actor.id in agents:
                heard.add(actor.id)
            if heard == agents:
                return heard
    return heard


def _spooled_agents(state_dir: str) -> set[str]:
    agents: set[str] = set()
    for directory in outbox.outbox_dirs(os.path.join(state_dir, "spool")):
        for name in outbox.pending(directory):
            try:
                record = outbox.read_record(directory, name)
            except (OSError, ValueError):
                continue
            agents.add(str(record.get("agent", "")))
    return agents


def silent_agents(
    ledger: Ledger, agents: list[str], state_dir: str, now: float | None = None
) -> list[SilentAgent]:
    """The `agents` (set up here) whose hooks were installed over `SILENT_AFTER_S` ago and
    have recorded nothing since; reads the ledger's indexed kinds and the spool."""
    now = time.time() if now is None else now
    installed = _installed_at(ledger)
    due: dict[str, tuple[str, float]] = {}
    for agent in agents:
        ts = installed.get(agent) or installed.get(None)
        age = _age_s(ts, now) if ts else None
        if ts and age is not None and age > SILENT_AFTER_S:
            due[agent] = (ts, age)
    if not due:
        return []
    heard = _heard_from(ledger, set(due)) | _spooled_agents(state_dir)
    return [SilentAgent(a, ts, age) for a, (ts, age) in due.items() if a not in heard]
