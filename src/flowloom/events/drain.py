"""The drainer: outbox files handed to one sink, in order, each deleted once acknowledged.

A sink (`Sink`) is where events end up: the local ledger (`flowloom.sinks.ledger`) or
the team server (`flowloom.sinks.server`). The drainer does not know which; the process
that runs it picks the sink once, from the settings (`flowloom.drainer`).

`drain` walks the outbox and its fallback merged in name (= time) order:

- a file the journal lists was recorded, but outlived a crash: it is deleted;
- a file that cannot be read goes to `bad/`, and a `capture.error` naming it is
  recorded in its place;
- otherwise consecutive files the sink `accepts` together go to `record` in one call;
  the sink answers each file's indices, which are journaled (fsynced) before the file
  is deleted. A crash between the two leaves a journaled file the next drain deletes,
  so nothing is recorded twice.

The first failure of the sink stops the drain: that file and every later one stay, so
order is kept and nothing is lost. The caller holds the outbox lock (`SpoolLock`).
Standard library only.
"""

from __future__ import annotations

import contextlib
import os

from flowloom.errors import FlowLoomError
from flowloom.events.model import unreadable_file_event
from flowloom.events.outbox import (
    OutboxFile,
    note_recorded,
    pending,
    read_file,
    recorded_names,
    waiting,
)

__all__ = ["DrainReport", "Sink", "drain", "waiting_total"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    class Sink(Protocol):
        """Where drained events are recorded."""

        def accepts(self, group: Sequence[OutboxFile], item: OutboxFile) -> bool:
            """Whether `item` may be recorded in the same call as `group` (not empty)."""
            ...

        def record(self, files: Sequence[OutboxFile]) -> list[list[int]]:
            """Record the files' events in order; each file's indices. Raises
            FlowLoomError when nothing was recorded (the files stay)."""
            ...

else:
    Sink = object


class DrainReport:
    """What one drain did: events and files recorded, files replaced, why it stopped."""

    __slots__ = ("error", "files", "indices", "remaining", "replaced", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.files = 0
        self.replaced = 0
        self.remaining = 0
        self.indices: list[int] = []
        self.error: FlowLoomError | None = None

    @property
    def last_index(self) -> int | None:
        return max(self.indices) if self.indices else None


def waiting_total(directories: Sequence[str]) -> int:
    """Files not yet recorded in all of `directories`."""
    return sum(len(waiting(d)) for d in directories)


def _queue(directories: Sequence[str]) -> list[tuple[str, str]]:
    """(name, directory) of every pending file, merged in name (= time) order."""
    return sorted((name, d) for d in directories for name in pending(d))


def _quarantine(directory: str, name: str, error: str, sink: Sink) -> list[int]:
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        raw = b""
    stand_in = OutboxFile(
        directory,
        name,
        {"agent": "", "events": [unreadable_file_event(name, error, raw)]},
        tag="bad",
    )
    indices = sink.record([stand_in])[0]
    note_recorded(directory, name, indices)
    bad = os.path.join(directory, "bad")
    os.makedirs(bad, mode=0o700, exist_ok=True)
    os.replace(path, os.path.join(bad, name))
    return indices


def drain(
    directories: Sequence[str],
    sink: Sink,
    *,
    observer: Callable[[str], None] | None = None,
) -> DrainReport:
    """Record every pending file of `directories` through `sink`, in order.

    Sink failures (FlowLoomError) end up in the report (`error`); what was recorded is
    journaled, the rest waits. Local file-system errors propagate.
    """
    say = observer or (lambda _line: None)
    report = DrainReport()
    done = {d: recorded_names(d) for d in directories}
    queue = _queue(directories)
    position = 0
    try:
        while position < len(queue):
            name, directory = queue[position]
            if name in done[directory]:  # recorded, but its file outlived a crash
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
                position += 1
                continue
            try:
                first = read_file(directory, name)
            except (OSError, ValueError) as exc:
                report.indices.extend(_quarantine(directory, name, str(exc), sink))
                report.replaced += 1
                say(f"spool file {name} is unreadable: moved to bad/, recorded as capture.error")
                position += 1
                continue
            group = [first]
            for next_name, next_directory in queue[position + 1 :]:
                if next_name in done[next_directory]:
                    break
                try:
                    item = read_file(next_directory, next_name)
                except (OSError, ValueError):
                    break
                if not sink.accepts(group, item):
                    break
                group.append(item)
            per_file = sink.record(group)
            for item, indices in zip(group, per_file, strict=True):
                note_recorded(item.directory, item.name, indices)
                os.unlink(item.path)
                report.files += 1
                report.sent += len(indices)
                report.indices.extend(indices)
            position += len(group)
    except FlowLoomError as exc:
        report.error = exc
    report.remaining = waiting_total(directories)
    return report
