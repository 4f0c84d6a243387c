"""This clone's queued events, shown on top of the team's record until the server has them.

In server mode a developer's reads come from the verified copy of the server's log
(`flowloom.client.mirror`), and what they recorded while the server was out of reach
waits in the outbox: without this, their own new decision would be "not found" by their
own `decision show`. `overlay_pending` makes a throw-away copy of the mirror (an SQLite
file of this process, deleted on close) and appends to it the outbox's waiting events of
the project, bodies redacted as the server would, each marked ``refs.pending``
("pending, not yet on the server"; a person-signed event is kept as signed, so it
cannot carry the mark). The mirror itself is never written: it holds exactly the log
the server signed. The overlay's extra entries are beyond the server's checkpoint, so
nothing proves them; the reader says how many there are.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowloom.errors import FlowLoomError
from flowloom.events.redaction import redact_text
from flowloom.ledger.log import META_FIELDS
from flowloom.ledger.merkle import leaf_hash
from flowloom.store.interface import PendingEntry

if TYPE_CHECKING:
    from flowloom.client.mirror import Mirror
    from flowloom.ledger.log import Ledger
    from flowloom.store.sqlite import SQLiteStore

__all__ = ["PENDING_MARK", "Overlay", "overlay_pending", "queued_events"]

PENDING_MARK = "pending, not yet on the server"
"""The value of ``refs.pending`` on an event shown from the outbox."""


def queued_events(spool_dir: str, project: str) -> list[dict[str, Any]]:
    """The events of `project` still waiting in the outbox (and its fallback), in order."""
    from flowloom.events.outbox import outbox_dirs, read_file, waiting

    found: list[dict[str, Any]] = []
    for directory in outbox_dirs(spool_dir):
        with contextlib.suppress(OSError):
            for name in waiting(directory):
                try:
                    item = read_file(directory, name)
                except (OSError, ValueError):
                    continue
                if item.project not in (None, project):
                    continue
                found.extend(e for e in item.events if isinstance(e.get("kind"), str))
    return found


class Overlay:
    """The mirror's entries plus the pending ones, in a file removed on close."""

    def __init__(self, store: SQLiteStore, path: str, pending: int, first: int) -> None:
        self.store = store
        self.path = path
        self.pending = pending
        """How many entries came from the outbox."""
        self.first = first
        """The index of the first of them (the server's signed size)."""

    def label(self, project: str) -> str:
        return (
            f"flowloom: {self.pending} of your events for {project} are queued in the outbox, "
            f"shown as entries {self.first}.. and marked '{PENDING_MARK}'"
        )

    def close(self) -> None:
        self.store.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)


def _entry(ledger: Ledger, event: Mapping[str, Any]) -> PendingEntry | None:
    """The entry an outbox event would become, marked pending (None: not shown)."""
    from flowloom.ledger.canonical import canonicalize

    kind = str(event["kind"])
    signed = event.get("signed_envelope")
    if isinstance(signed, str):
        try:
            import json

            envelope = canonicalize(json.loads(signed))
        except (ValueError, TypeError):
            return None
        return PendingEntry(envelope=envelope, leaf_hash=leaf_hash(envelope), kind=kind)
    meta_in = event.get("meta")
    meta = (
        {k: v for k, v in (meta_in or {}).items() if k in META_FIELDS}
        if isinstance(meta_in, dict)
        else {}
    )
    refs = meta.get("refs")
    meta["refs"] = {**(refs if isinstance(refs, dict) else {}), "pending": PENDING_MARK}
    body = event.get("body")
    ts = event.get("ts")
    try:
        return ledger.prepare(
            kind,
            # Redacted as the server will redact it: a secret in a queued prompt is not
            # shown, nor indexed, even in this throw-away copy.
            body=redact_text(body)[0].encode("utf-8") if isinstance(body, str) else None,
            meta=meta,
            ts=ts if isinstance(ts, str) else None,
        ).entry
    except (FlowLoomError, ValueError, TypeError, KeyError):
        return None  # the server would refuse it too: its refusal will be in the record


def overlay_pending(mirror: Mirror, ledger: Ledger, spool_dir: str) -> Overlay | None:
    """An overlay of the outbox's waiting events on `mirror` (None when none wait)."""
    from flowloom.ledger.writer import LogWriter
    from flowloom.store.sqlite import SQLiteStore

    events = queued_events(spool_dir, mirror.project)
    entries = [e for e in (_entry(ledger, event) for event in events) if e is not None]
    if not entries:
        return None
    path = f"{mirror.path}.pending-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
    source = sqlite3.connect(mirror.path)
    try:
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(path, 0o600)
    store = SQLiteStore(path)
    first = store.size(mirror.project)
    writer = LogWriter(store, mirror.project)
    try:
        writer.append_many(entries)
    except BaseException:
        writer.close()
        Overlay(store, path, 0, first).close()
        raise
    writer.close()
    return Overlay(store, path, len(entries), first)
