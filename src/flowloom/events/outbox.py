"""The outbox: captured events made durable at once, handed to a sink in order.

A hook run must cost the agent almost nothing, and must lose nothing. So every writer —
agent hooks, git hooks, `flowloom record`, the gateway — writes its events (already
redacted) to one outbox file, synced to disk, under `.git/flowloom/spool/`, and starts
a detached drainer (`kick`); the drainer (`flowloom.events.drain`) hands the files to
the one sink the settings name (the local ledger, or the team server), in name (= time)
order, and deletes what the sink acknowledged.

Data model (one file per hook run, named `<time_ns>-<pid>-<n>.json`)::

    {"v": 1, "agent": "claude-code", "created": "<ts>", "project": "<optional>",
     "events": [<event>, ...]}

with events as `flowloom.events.model` describes them.

`journal` lists what was recorded (`<file name> <index>,<index>…` per line), so a file
recorded but not yet deleted when a drainer died is not recorded twice, and so the
index of an event can be found later (`recorded_index`).

When the outbox cannot be written (a read-only or immutable `.git`, a full disk), the
file goes to a second durable place, `fallback_dir` (under `$XDG_STATE_HOME`, one
directory per outbox), and the writer is told (`Written.fallback`); the drainer drains
both, merged in name order. When neither can be written, `write_durably` raises
`OutboxUnwritableError` after leaving a one-line note (no content) in the temporary
directory, and the next write that succeeds carries a `capture.error` for each such
note (`take_failure_notes`), so the gap is recorded once recording works again.

One drainer at a time: `flock` on `.lock`. Standard library only: hooks import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time

from flowloom.events import durable
from flowloom.events.durable import fsync_dir, private_dirs

__all__ = [
    "SPOOL_VERSION",
    "OutboxFile",
    "OutboxUnwritableError",
    "SpoolLock",
    "Written",
    "cleanup",
    "drain_lock",
    "failure_notes_path",
    "fallback_dir",
    "kick",
    "note_failure",
    "note_recorded",
    "outbox_dirs",
    "pending",
    "read_file",
    "read_record",
    "recorded_index",
    "recorded_names",
    "take_failure_notes",
    "waiting",
    "write",
    "write_durably",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

SPOOL_VERSION = 1
_JOURNAL = "journal"
_JOURNAL_MAX_BYTES = 512 * 1024
_JOURNAL_KEEP_LINES = 4000
_counter = [0]


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
    fsync_dir(spool_dir)  # the name must survive a crash too
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
        if self._fd is not None:  # entered already (`drain_lock`)
            return self
        try:
            self._fd = os.open(self.path, os.O_RDWR)  # works in a directory made read-only
        except FileNotFoundError:
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

    @classmethod
    def inherited(cls, spool_dir: str, fd: int) -> SpoolLock:
        """The lock `kick` took and handed down as descriptor `fd`: held already."""
        lock = cls(spool_dir)
        lock._fd = fd
        lock.acquired = True
        return lock

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None
        self.acquired = False


def drain_lock(spool_dir: str, *, wait_s: float = 0.0) -> SpoolLock:
    """The drainers' lock, taken (or not: `acquired`); the caller calls `__exit__`.

    It is the outbox's `.lock`; the fallback's only when the outbox's cannot even be
    created (the outbox directory is unusable, so its files are all in the fallback).
    """
    lock = SpoolLock(spool_dir, wait_s=wait_s)
    try:
        lock.__enter__()
    except OSError:
        lock = SpoolLock(fallback_dir(spool_dir), wait_s=wait_s)
        lock.__enter__()
    return lock


def kick(spool_dir: str, cwd: str) -> bool:
    """Start a detached drainer unless one is running; True when one was started.

    A running drainer re-lists the spool after releasing its lock, so a file written
    before this call is never left behind by the race between the two. The lock is
    taken here and handed to the drainer (`--lock-fd`), so it is held without a gap
    from now on: a hook that comes next sees a drainer at work, even one still starting.
    """
    lock = drain_lock(spool_dir)
    if not lock.acquired or lock._fd is None:
        lock.__exit__()
        return False
    fd = lock._fd
    python = sys.executable or "python3"
    argv = [python, "-m", "flowloom", "drain", spool_dir, cwd, "--lock-fd", str(fd)]
    # fork + exec rather than posix_spawn: the hook returns at once instead of waiting
    # for the kernel to load the new program.
    pid = os.fork()
    if pid == 0:  # the child: a new session, away from the agent's pipes and signals
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(devnull, std)
            os.set_inheritable(fd, True)
            os.execv(python, argv)
        finally:
            os._exit(127)
    lock.__exit__()  # the drainer's copy of the descriptor keeps the lock held
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
    line = f"{name} {','.join(str(i) for i in indices)}"
    durable.append_line(
        _journal_path(spool_dir),
        line,
        max_bytes=_JOURNAL_MAX_BYTES,
        keep_lines=_JOURNAL_KEEP_LINES,
    )


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


class OutboxFile:
    """One outbox file, read: its events and where they came from."""

    __slots__ = ("agent", "created", "directory", "events", "name", "project", "tag")

    def __init__(
        self,
        directory: str,
        name: str,
        record: Mapping[str, Any],
        *,
        tag: str = "",
    ) -> None:
        self.directory = directory
        self.name = name
        self.agent = str(record.get("agent", ""))
        created = record.get("created")
        self.created = created if isinstance(created, str) else None
        project = record.get("project")
        self.project = project if isinstance(project, str) and project else None
        events = record.get("events")
        self.events: list[dict[str, Any]] = [
            e for e in (events if isinstance(events, list) else []) if isinstance(e, dict)
        ]
        self.tag = tag
        """Set for a file the drainer made up (`bad`: an unreadable file's error)."""

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def read_file(spool_dir: str, name: str) -> OutboxFile:
    """Outbox file `name`, read; ValueError or OSError when it cannot be used."""
    return OutboxFile(spool_dir, name, read_record(spool_dir, name))


def waiting(spool_dir: str) -> list[str]:
    """Files not yet recorded (pending, and not in the journal), oldest first."""
    done = recorded_names(spool_dir)
    return [name for name in pending(spool_dir) if name not in done]


# --------------------------------------------------------------------------- fallback


def _state_home() -> str:
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "flowloom")


def _outbox_id(spool_dir: str) -> str:
    """A short stable name for one outbox (its real path, checksummed: zlib, not hashlib,
    which costs a hook several milliseconds to import)."""
    import zlib

    key = os.path.realpath(spool_dir).encode("utf-8", "surrogatepass")
    return f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


def fallback_dir(spool_dir: str) -> str:
    """The second durable place for `spool_dir`'s files: one directory per outbox."""
    return os.path.join(_state_home(), "outbox", _outbox_id(spool_dir))


def outbox_dirs(spool_dir: str) -> list[str]:
    """The outbox and its fallback: the directories a drainer drains, in this order."""
    return [spool_dir, fallback_dir(spool_dir)]


class OutboxUnwritableError(OSError):
    """Neither the outbox nor its fallback could be written: the events are not kept."""


class Written:
    """Where `write_durably` put the events: the file's name and directory, and the
    position of the first of them in it (`offset`: earlier failures' notes go first)."""

    __slots__ = ("directory", "fallback", "name", "offset", "primary_error")

    def __init__(
        self, directory: str, name: str, primary_error: OSError | None, offset: int = 0
    ) -> None:
        self.directory = directory
        self.name = name
        self.primary_error = primary_error
        self.fallback = primary_error is not None
        self.offset = offset


def failure_notes_path(spool_dir: str) -> str:
    """Where a hook that could write nothing durable leaves its note (no content)."""
    temporary = os.environ.get("TMPDIR") or "/tmp"  # tempfile costs a hook 5 ms to import
    base = os.path.join(temporary, f"flowloom-{os.getuid()}")
    return os.path.join(base, f"failures-{_outbox_id(spool_dir)}.jsonl")


def note_failure(spool_dir: str, agent: str, created: str, count: int, error: str) -> bool:
    """Remember, outside the outbox, that `count` events of `agent` were lost; True if kept."""
    path = failure_notes_path(spool_dir)
    line = json.dumps(
        {"agent": agent, "at": created, "events": count, "error": error[:500]}, sort_keys=True
    )
    try:
        private_dirs(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def take_failure_notes(spool_dir: str) -> tuple[list[dict[str, Any]], str | None]:
    """The `capture.error` events for every failure noted, and the notes' claimed path.

    The notes are renamed aside first (so a concurrent hook does not take them too);
    the caller deletes the claimed file once the events are durable, or puts it back.
    """
    path = failure_notes_path(spool_dir)
    claimed = f"{path}.{os.getpid()}.{time.time_ns()}"
    try:
        os.rename(path, claimed)
        with open(claimed, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return [], None
    events: list[dict[str, Any]] = []
    for line in lines:
        try:
            note = json.loads(line)
        except ValueError:
            continue
        if not isinstance(note, dict):
            continue
        refs = {
            "error": f"capture could write nothing ({note.get('error')}): "
            f"{note.get('events')} event(s) lost",
            "lost_events": note.get("events") if isinstance(note.get("events"), int) else 0,
            "happened": str(note.get("at", "")),
        }
        event: dict[str, Any] = {
            "kind": "capture.error",
            "meta": {"subject": str(note.get("agent") or "unknown"), "refs": refs},
        }
        if isinstance(note.get("at"), str):
            event["ts"] = note["at"]
        events.append(event)
    return events, claimed


def write_durably(
    spool_dir: str,
    agent: str,
    events: Sequence[dict[str, Any]],
    created: str,
    *,
    project: str | None = None,
) -> Written:
    """Write the events to the outbox, else to its fallback; `OutboxUnwritableError` when
    neither works (a note of the loss is left for the next write that succeeds).

    Failures noted earlier go first, as `capture.error` events, so the record says what
    was lost, when, and that it was found out later.
    """
    notes, claimed = take_failure_notes(spool_dir)
    batch = [*notes, *events]
    primary_error: OSError | None = None
    written: Written | None = None
    for directory in outbox_dirs(spool_dir):
        try:
            name = write(directory, agent, batch, created, project=project)
        except OSError as exc:
            primary_error = primary_error or exc
            continue
        written = Written(directory, name, primary_error, len(notes))
        break
    if claimed is not None:
        with contextlib.suppress(OSError):
            if written is not None:
                os.unlink(claimed)
            else:  # not recorded: put the notes back for the next try
                with open(claimed, encoding="utf-8") as fh:
                    kept = fh.read()
                fd = os.open(
                    failure_notes_path(spool_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
                )
                try:
                    os.write(fd, kept.encode())
                finally:
                    os.close(fd)
                os.unlink(claimed)
    if written is None:
        error = f"{type(primary_error).__name__}: {primary_error}"
        noted = note_failure(spool_dir, agent, created, len(events), error)
        raise OutboxUnwritableError(
            f"capture could not write its outbox ({spool_dir}) nor the fallback "
            f"({fallback_dir(spool_dir)}): {primary_error}"
            + ("" if noted else "; the loss could not even be noted")
        )
    return written


def cleanup(spool_dir: str) -> None:
    """Remove temporary outbox files over a day old (a writer killed mid-write)."""
    day_ago = time.time() - 86400
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(".tmp-"):
            path = os.path.join(spool_dir, name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_mtime < day_ago:
                    os.unlink(path)
