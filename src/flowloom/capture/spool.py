"""The spool: captured events made durable at once, moved into the ledger in order.

A hook run must cost the agent almost nothing, and must lose nothing. So it writes its
events (already redacted) to one spool file, synced to disk, under
`.git/flowloom/spool/`, and starts a detached drainer; the drainer opens the ledger,
records every spool file in name (= time) order, one transaction per file, and deletes
what it recorded. When the ledger is unavailable the files simply stay; the next hook
run starts another drainer, which records them first, in order. Anything that wants
ledger indices (auto-commit) drains the spool in its own process first.

Data model (one file per hook run, named `<time_ns>-<pid>-<n>.json`)::

    {"v": 1, "agent": "claude-code", "created": "<ts>",
     "events": [{"kind": "...", "meta": {...}, "body": "...", "redactions": {...},
                 "amend": {"decision": "D-…", "record": <entry>}}]}

`redactions` and `amend` ask for follow-ups, recorded right after the batch because they
name its ledger indices: a `redaction.apply` per redacted event, and for a turn's final
reply (`amend`) the `decision.amend` that gives the turn's decision its reply and the
reasoning drawn from it (`flowloom.decisions.records.reply_amendment`).

`journal` lists what was recorded (`<file name> <index>,<index>…` per line), so a file
recorded but not yet deleted when a drainer died is not recorded twice, and so the
ledger index of a spooled event can be found later (`recorded_index`). Files that cannot
be read are moved to `bad/` and a capture.error is recorded in their place.

One drainer at a time: `flock` on `.lock`. Writing and kicking use the standard library
only; draining imports the ledger.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time

from flowloom.capture.agents.common import private_dirs

__all__ = [
    "SPOOL_VERSION",
    "SpoolLock",
    "drain",
    "drain_main",
    "kick",
    "note_recorded",
    "pending",
    "read_record",
    "record_events",
    "recorded_index",
    "recorded_names",
    "write",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from flowloom.config import Settings
    from flowloom.ledger.log import Ledger
    from flowloom.services import Services

SPOOL_VERSION = 1
_JOURNAL = "journal"
_JOURNAL_MAX_BYTES = 512 * 1024
_JOURNAL_KEEP_LINES = 4000
_counter = [0]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(
    spool_dir: str,
    agent: str,
    events: Sequence[dict[str, Any]],
    created: str,
    *,
    project: str | None = None,
) -> str:
    """Write one hook run's events durably; returns the spool file's name.

    `project` pins the file to a project other than the drainer's (a server sends it
    there); hooks leave it out.
    """
    private_dirs(spool_dir)
    _counter[0] += 1
    name = f"{time.time_ns():020d}-{os.getpid():07d}-{_counter[0]:03d}.json"
    record: dict[str, Any] = {
        "v": SPOOL_VERSION,
        "agent": agent,
        "created": created,
        "events": list(events),
    }
    if project is not None:
        record["project"] = project
    data = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    tmp = os.path.join(spool_dir, ".tmp-" + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(spool_dir, name))
    _fsync_dir(spool_dir)  # the name must survive a crash too
    return name


def pending(spool_dir: str) -> list[str]:
    """Spool files not yet recorded, oldest first."""
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))


class SpoolLock:
    """The drainers' lock: `flock` on `<spool>/.lock`; `acquired` says whether it is held."""

    def __init__(self, spool_dir: str, *, wait_s: float = 0.0) -> None:
        self.path = os.path.join(spool_dir, ".lock")
        self.wait_s = wait_s
        self.acquired = False
        self._fd: int | None = None

    def __enter__(self) -> SpoolLock:
        private_dirs(os.path.dirname(self.path))
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.acquired = True
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return self
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None
        self.acquired = False


def kick(spool_dir: str, cwd: str) -> bool:
    """Start a detached drainer unless one is running; True when one was started.

    A running drainer re-lists the spool after releasing its lock, so a file written
    before this call is never left behind by the race between the two.
    """
    with SpoolLock(spool_dir) as lock:
        if not lock.acquired:
            return False
    python = sys.executable or "python3"
    argv = [python, "-m", "flowloom", "hook", "--drain", spool_dir, cwd]
    # fork + exec rather than posix_spawn: the hook returns at once instead of waiting
    # for the kernel to load the new program.
    pid = os.fork()
    if pid == 0:  # the child: a new session, away from the agent's pipes and signals
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execv(python, argv)
        finally:
            os._exit(127)
    return True


# --------------------------------------------------------------------------- journal


def _journal_path(spool_dir: str) -> str:
    return os.path.join(spool_dir, _JOURNAL)


def _journal_lines(spool_dir: str) -> list[str]:
    try:
        with open(_journal_path(spool_dir), encoding="utf-8") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _journal_append(spool_dir: str, name: str, indices: Sequence[int]) -> None:
    path = _journal_path(spool_dir)
    line = f"{name} {','.join(str(i) for i in indices)}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > _JOURNAL_MAX_BYTES:
        kept = _journal_lines(spool_dir)[-_JOURNAL_KEEP_LINES:]
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(k + "\n" for k in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def recorded_names(spool_dir: str) -> set[str]:
    """Names of the spool files the journal says were recorded (or sent)."""
    return {line.partition(" ")[0] for line in _journal_lines(spool_dir)}


def note_recorded(spool_dir: str, name: str, indices: Sequence[int]) -> None:
    """Journal that spool file `name` was recorded at `indices`, before it is deleted."""
    _journal_append(spool_dir, name, indices)


def read_record(spool_dir: str, name: str) -> dict[str, Any]:
    """The spool record in file `name`; ValueError or OSError when it cannot be used."""
    with open(os.path.join(spool_dir, name), "rb") as fh:
        record = json.loads(fh.read())
    if not isinstance(record, dict) or not isinstance(record.get("events"), list):
        raise ValueError("not a spool record")
    if record.get("v") != SPOOL_VERSION:
        raise ValueError(f"spool format version {record.get('v')!r} is not {SPOOL_VERSION}")
    return record


def recorded_index(spool_dir: str, name: str, position: int) -> int | None:
    """The ledger index of event `position` of spool file `name`, once recorded."""
    for line in reversed(_journal_lines(spool_dir)):
        file_name, _, indices = line.partition(" ")
        if file_name == name:
            values = indices.split(",")
            try:
                return int(values[position])
            except (IndexError, ValueError):
                return None
    return None


# --------------------------------------------------------------------------- draining


def _happened(event: dict[str, Any], created: str | None) -> str | None:
    """When a spooled event happened: its own `ts`, else its file's `created` (both taken
    in the hook); None (the drain time) when neither is a valid timestamp."""
    from flowloom.errors import InputError
    from flowloom.ledger.event import parse_ts

    for ts in (event.get("ts"), created):
        if isinstance(ts, str):
            try:
                parse_ts(ts)
            except InputError:
                continue
            return ts
    return None


def _prepared(
    ledger: Ledger,
    event: dict[str, Any],
    agent: str,
    strict: bool = False,
    created: str | None = None,
) -> Any:
    """The ledger entry for one spooled event, with the time it happened; a capture.error
    in its place if refused."""
    from flowloom.capture.agents.common import digest
    from flowloom.errors import FlowLoomError
    from flowloom.ledger.attest import refuse_generic

    kind = str(event.get("kind", ""))
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    body = event.get("body")
    data = body.encode("utf-8", "replace") if isinstance(body, str) else None
    try:
        refuse_generic(kind)  # a spool file is anyone's to write: no authority through it
        return ledger.prepare(kind, body=data, meta=meta, ts=_happened(event, created)).entry
    except FlowLoomError as exc:
        if strict:
            raise
        raw = data if data is not None else json.dumps(meta, sort_keys=True).encode()
        refs = {
            "error": f"could not record a {kind or 'nameless'} event: {exc.message}"[:2000],
            "payload_digest": digest(raw),
        }
        fallback: dict[str, Any] = {"subject": agent or "unknown", "refs": refs}
        for key in ("actor", "session"):
            if key in meta:
                fallback[key] = meta[key]
        try:
            return ledger.prepare("capture.error", meta=fallback).entry
        except FlowLoomError:
            fallback.pop("actor", None)
            fallback.pop("session", None)
            return ledger.prepare("capture.error", meta=fallback).entry


def _quarantine(spool_dir: str, name: str, ledger: Ledger, error: str) -> None:
    from flowloom.capture.agents.common import digest

    path = os.path.join(spool_dir, name)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        raw = b""
    bad = os.path.join(spool_dir, "bad")
    os.makedirs(bad, mode=0o700, exist_ok=True)
    refs = {
        "error": f"spool file {name} is unreadable: {error}"[:2000],
        "payload_digest": digest(raw),
    }
    ack = ledger.writer.append_many(
        [ledger.prepare("capture.error", meta={"subject": "spool", "refs": refs}).entry]
    )[0]
    _journal_append(spool_dir, name, [ack.index])
    os.replace(path, os.path.join(bad, name))


def _redaction_notice(
    ledger: Ledger, event: dict[str, Any], counts: dict[str, Any], index: int, agent: str
) -> Any:
    """The `redaction.apply` naming entry `index` and what was redacted, per type."""
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    refs = {
        "entry": index,
        "kind": str(event.get("kind", "")),
        "counts": {str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
        "total": sum(v for v in counts.values() if isinstance(v, int)),
    }
    redaction: dict[str, Any] = {"subject": str(event.get("kind", "")), "refs": refs}
    for key in ("actor", "session"):
        if key in meta:
            redaction[key] = meta[key]
    return _prepared(ledger, {"kind": "redaction.apply", "meta": redaction}, agent)


def _reply_amendment(ledger: Ledger, event: dict[str, Any], index: int, agent: str) -> Any:
    """The `decision.amend` that gives a turn's decision the reply recorded at `index`.

    The hook names the decision and its record's entry (from the session's scratch); the
    record is read back and checked, else found by id. When neither works the gap is
    recorded as a capture.error instead.
    """
    from flowloom.decisions.records import Decision, DecisionBook, reply_amendment
    from flowloom.errors import FlowLoomError

    request: dict[str, Any] = event["amend"]
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    decision_id, record = request.get("decision"), request.get("record")
    reply = event.get("body")
    decision: Decision | None = None
    try:
        if isinstance(record, int) and not isinstance(record, bool):
            stored = ledger.store.entry(ledger.log, record)
            if stored is not None and stored.kind == "decision.record":
                candidate = Decision.from_envelope(record, stored.envelope)
                decision = candidate if candidate.id == decision_id else None
        if decision is None and isinstance(decision_id, str):
            found = DecisionBook(ledger).get(decision_id)
            if found.entry is not None:
                decision = Decision.from_envelope(found.entry, ledger.entry(found.entry).envelope)
    except FlowLoomError:
        decision = None
    follow_up: dict[str, Any]
    if decision is None or not isinstance(reply, str):
        error = f"the reply at entry {index} could not amend decision {str(decision_id)[:40]}"
        follow_up = {"subject": agent or "unknown", "refs": {"error": error, "entry": index}}
        kind = "capture.error"
    else:
        refs = reply_amendment(decision, reply, index)
        follow_up = {"subject": decision.id, "refs": refs}
        kind = "decision.amend"
    for key in ("actor", "session", "git"):
        if key in meta:
            follow_up[key] = meta[key]
    return _prepared(ledger, {"kind": kind, "meta": follow_up}, agent)


def record_events(
    ledger: Ledger,
    events: Sequence[dict[str, Any]],
    agent: str,
    *,
    strict: bool = False,
    created: str | None = None,
) -> list[int]:
    """Record spool-shaped events (already redacted) in one transaction; their indices.

    An event the ledger refuses is recorded as a capture.error in its place (`strict`:
    the error is raised instead, and nothing is recorded). Each event that had secrets
    redacted is followed by a `redaction.apply` event naming its entry and counting what
    was redacted, per type (never the secrets); a reply that asks to amend its turn's
    decision (`amend`), by that `decision.amend`. Each event keeps the time it happened
    (its `ts`, else `created`: its spool file's time); follow-ups are stamped now.
    """
    prepared = [_prepared(ledger, e, agent, strict, created) for e in events]
    acks = ledger.writer.append_many(prepared)
    follow_ups = []
    for event, entry, ack in zip(events, prepared, acks, strict=True):
        counts = event.get("redactions")
        if isinstance(counts, dict) and counts:
            follow_ups.append(_redaction_notice(ledger, event, counts, ack.index, agent))
        if isinstance(event.get("amend"), dict) and entry.kind == event.get("kind"):
            follow_ups.append(_reply_amendment(ledger, event, ack.index, agent))
    if follow_ups:
        ledger.writer.append_many(follow_ups)
    return [ack.index for ack in acks]


def _drain_one(spool_dir: str, name: str, ledger: Ledger) -> None:
    path = os.path.join(spool_dir, name)
    try:
        record = read_record(spool_dir, name)
    except (OSError, ValueError) as exc:
        _quarantine(spool_dir, name, ledger, str(exc))
        return
    agent = str(record.get("agent", ""))
    events = [e for e in record["events"] if isinstance(e, dict)]
    created = record.get("created") if isinstance(record.get("created"), str) else None
    indices = record_events(ledger, events, agent, created=created)
    _journal_append(spool_dir, name, indices)
    os.unlink(path)


def drain(spool_dir: str, ledger: Ledger) -> int:
    """Record every pending spool file in order; returns how many were recorded.

    The caller holds the `SpoolLock`. A store error stops the drain and propagates; the
    files not yet recorded stay for the next drainer.
    """
    done = {line.partition(" ")[0] for line in _journal_lines(spool_dir)}
    count = 0
    for name in pending(spool_dir):
        if name in done:  # recorded, but its file outlived a crash
            os.unlink(os.path.join(spool_dir, name))
            continue
        _drain_one(spool_dir, name, ledger)
        count += 1
    return count


def _log(state_dir: str, line: str) -> None:
    """Append a line to `capture.log`: failures of detached work must be findable."""
    from flowloom.capture.agents.common import now_ts

    path = os.path.join(state_dir, "capture.log")
    try:
        if os.path.getsize(path) > 1024 * 1024:  # keep one old log, not an endless one
            os.replace(path, path + ".1")
    except OSError:
        pass
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{now_ts()} {line}\n")
    except OSError:
        pass


def _cleanup(spool_dir: str, state_dir: str) -> None:
    """Remove temporary spool files and before-images over a day old, and session
    scratch over a week old."""
    from flowloom.capture.agents.snapshots import sweep

    sweep(state_dir)
    day_ago = time.time() - 86400
    week_ago = time.time() - 7 * 86400
    for name in os.listdir(spool_dir):
        if name.startswith(".tmp-"):
            path = os.path.join(spool_dir, name)
            try:
                if os.stat(path).st_mtime < day_ago:
                    os.unlink(path)
            except OSError:
                pass
    sessions = os.path.join(state_dir, "sessions")
    try:
        entries = os.listdir(sessions)
    except OSError:
        return
    import shutil

    for name in entries:
        path = os.path.join(sessions, name)
        try:
            if os.stat(path).st_mtime < week_ago:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def drain_main(argv: Sequence[str]) -> int:
    """The detached drainer: `flowloom hook --drain SPOOL_DIR CWD`."""
    if len(argv) != 2:
        sys.stderr.write("flowloom: error: usage: flowloom hook --drain SPOOL_DIR CWD\n")
        return 2
    spool_dir, cwd = argv
    state_dir = os.path.dirname(spool_dir)
    import contextlib

    with contextlib.suppress(OSError):
        os.chdir(cwd)
    services: Services | None = None
    try:
        settings = _load_settings()
        if settings.server_url is not None:
            return _send_main(spool_dir, state_dir, settings)
        while True:
            with SpoolLock(spool_dir) as lock:
                if not lock.acquired:
                    break  # another drainer is at work and will see our files
                if pending(spool_dir):
                    if services is None:
                        services = _open_services()
                    drain(spool_dir, services.ledger)
                _cleanup(spool_dir, state_dir)
            if not pending(spool_dir):
                break
        from flowloom.capture import pushqueue

        if pushqueue.pending(state_dir):
            if services is None:
                services = _open_services()
            pushqueue.process(state_dir, services.ledger)
    except Exception as exc:
        _log(state_dir, f"drain failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if services is not None:
            services.close()
    return 0


def _load_settings() -> Settings:
    from pathlib import Path

    from flowloom.config import load_settings

    return load_settings(Path.cwd())


def _open_services() -> Services:
    from flowloom.services import build_services

    return build_services(_load_settings())


_CHECK_EVERY_S = 60.0


def _send_main(spool_dir: str, state_dir: str, settings: Settings) -> int:
    """The drainer with a server configured: send the spool (the outbox) to it, in order.

    Stops at the first failure and leaves the rest spooled for the next drainer or
    `flowloom sync` (an unreachable server is normal, not an error worth a non-zero exit
    of a detached process; it is logged). After sending, it checks the server's log
    against the kept checkpoint at most once a minute.
    """
    from flowloom.client.link import ServerLink
    from flowloom.errors import FlowLoomError

    try:
        link = ServerLink.from_settings(settings, state_dir)
    except FlowLoomError as exc:
        _log(state_dir, f"send failed: {exc.diagnostics()}")
        return 1
    sent = 0
    failed = False
    while True:
        with SpoolLock(spool_dir) as lock:
            if not lock.acquired:
                break  # another drainer is at work and will see our files
            report = link.flush()
            sent += report.sent
            _cleanup(spool_dir, state_dir)
        if report.error is not None:
            _log(state_dir, f"send stopped: {report.error.diagnostics()}")
            failed = True
            break
        if not report.remaining:
            break
    from flowloom.capture import pushqueue

    if pushqueue.pending(state_dir):
        pushqueue.process(state_dir, None)
    if sent:
        checked = link.trust().load().data.get("checked_epoch")
        if not isinstance(checked, int | float) or time.time() - checked >= _CHECK_EVERY_S:
            try:
                link.check()
            except FlowLoomError as exc:
                _log(state_dir, f"server check failed: {exc.diagnostics()}")
                return 1
    return 1 if failed else 0
