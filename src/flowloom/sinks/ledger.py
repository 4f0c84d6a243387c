"""The local ledger as a sink: outbox files recorded, one transaction per file.

Each event keeps the time it happened (its `ts`, else its file's `created`, both taken
in the hook). An event the ledger refuses is recorded as a `capture.error` in its place
(`flowloom.events.model.refused_event`): an outbox file is anyone's to write, so no
authority-bearing kind passes through it. Follow-ups are recorded right after the
file's events, in the same transaction, and name their indices: a `redaction.apply` per
redacted event, and for a turn's final reply (`amend`) the `decision.amend` that gives
the turn's decision its reply and the reasoning drawn from it
(`flowloom.decisions.records.reply_amendment`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from flowloom.decisions.records import Decision, DecisionBook, reply_amendment
from flowloom.errors import FlowLoomError, InputError, StoreError
from flowloom.events import durable
from flowloom.events.model import (
    event_meta,
    happened_at,
    redaction_notice,
    refused_event,
    without_identity,
)
from flowloom.events.outbox import OutboxFile
from flowloom.ledger import merkle
from flowloom.ledger.attest import refuse_generic
from flowloom.ledger.event import parse_ts
from flowloom.ledger.log import Ledger
from flowloom.ledger.writer import LogMovedOnError
from flowloom.store.interface import PendingEntry

__all__ = ["Intents", "LedgerSink", "record_events"]


def _happened(event: dict[str, Any], created: str | None) -> str | None:
    """The first valid time the event carries; None (now) when it carries none."""
    for ts in happened_at(event, created):
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
) -> PendingEntry:
    """The ledger entry for one event, with the time it happened; a capture.error in its
    place if refused."""
    kind = str(event.get("kind", ""))
    body = event.get("body")
    data = body.encode("utf-8", "replace") if isinstance(body, str) else None
    try:
        refuse_generic(kind)  # an outbox file is anyone's to write: no authority through it
        return ledger.prepare(
            kind, body=data, meta=event_meta(event), ts=_happened(event, created)
        ).entry
    except FlowLoomError as exc:
        if strict:
            raise
        error = refused_event(event, agent, exc.message)
        try:
            return ledger.prepare("capture.error", meta=error["meta"]).entry
        except FlowLoomError:  # the actor or session was what the ledger refused
            return ledger.prepare("capture.error", meta=without_identity(error)["meta"]).entry


def _reply_amendment(ledger: Ledger, event: dict[str, Any], index: int, agent: str) -> Any:
    """The `decision.amend` that gives a turn's decision the reply recorded at `index`.

    The hook names the decision and its record's entry (from the session's scratch); the
    record is read back and checked, else found by id. When neither works the gap is
    recorded as a capture.error instead.
    """
    request: dict[str, Any] = event["amend"]
    meta = event_meta(event)
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


def _follow_ups(
    ledger: Ledger,
    events: Sequence[dict[str, Any]],
    prepared: Sequence[PendingEntry],
    indices: Sequence[int],
    agent: str,
) -> list[PendingEntry]:
    follow_ups = []
    for event, entry, index in zip(events, prepared, indices, strict=True):
        counts = event.get("redactions")
        if isinstance(counts, dict) and counts:
            notice = redaction_notice(str(event.get("kind", "")), counts, index, event_meta(event))
            follow_ups.append(_prepared(ledger, notice, agent))
        if isinstance(event.get("amend"), dict) and entry.kind == event.get("kind"):
            follow_ups.append(_reply_amendment(ledger, event, index, agent))
    return follow_ups


_ATTEMPTS = 20
"""Tries at one batch of events and follow-ups before the log stops moving under it."""

Intent = Callable[[int, Sequence[PendingEntry], Sequence[PendingEntry]], None]
"""Called with the log's size, the events' entries and their follow-ups' just before
they are appended."""


def record_events(
    ledger: Ledger,
    events: Sequence[dict[str, Any]],
    agent: str,
    *,
    strict: bool = False,
    created: str | None = None,
    intent: Intent | None = None,
) -> list[int]:
    """Record events (already redacted) and their follow-ups in one transaction; the
    events' indices.

    Follow-ups name the indices of the events they follow, so the batch is prepared for
    the log's current size and appended only at that size; when another writer appended
    first, it is prepared again (`LogMovedOnError`). One transaction: a kill never keeps
    an event without its follow-ups. `strict`: an event the ledger refuses raises, and
    nothing is recorded.
    """
    prepared = [_prepared(ledger, e, agent, strict, created) for e in events]
    for _ in range(_ATTEMPTS):
        size = ledger.store.size(ledger.log)
        indices = [size + i for i in range(len(prepared))]
        follow_ups = _follow_ups(ledger, events, prepared, indices, agent)
        if intent is not None:
            intent(size, prepared, follow_ups)
        try:
            acks = ledger.writer.append_many([*prepared, *follow_ups], at=size)
        except LogMovedOnError:
            continue
        return [ack.index for ack in acks[: len(prepared)]]
    raise StoreError(
        f"the log kept moving while {len(prepared)} events were being recorded; "
        "they stay in the outbox for the next drain"
    )


_INTENTS = "intents"
_INTENTS_MAX_BYTES = 256 * 1024


class Intents:
    """Exactly-once appends of outbox files, whatever kills the appender.

    A drainer journals a file's indices after the sink returned them; one killed between
    the ledger's commit and that journal line would record the file again. So before
    appending, the sink notes its intent (`<dir>/intents`, fsynced: the file, the log's
    size and the leaf hashes of its entries, events then follow-ups); a later drain that
    finds an intent for a file still pending looks for those leaves after that size
    and, when they are there, answers their indices instead of appending again. Events
    and follow-ups go in one transaction, so they are found together or not at all.
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, _INTENTS)

    def note(
        self,
        name: str,
        size: int,
        entries: Sequence[PendingEntry],
        follow_ups: Sequence[PendingEntry] = (),
    ) -> None:
        events = ",".join(e.leaf_hash.hex() for e in entries)
        more = ",".join(e.leaf_hash.hex() for e in follow_ups) or "-"
        durable.append_line(
            self.path,
            f"{name} {size} {events} {more}",
            max_bytes=_INTENTS_MAX_BYTES,  # intents only matter for files still pending
            keep_lines=100,
        )

    def recorded(self, ledger: Ledger, name: str) -> list[int] | None:
        """The indices of file `name`'s events when its last noted batch is in `ledger`."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            parts = line.split(" ")
            if len(parts) not in (3, 4) or parts[0] != name:
                continue
            try:
                size = int(parts[1])
            except ValueError:
                return None
            events = [h for h in parts[2].split(",") if h]
            more = [h for h in parts[3].split(",") if h and h != "-"] if len(parts) == 4 else []
            wanted = set(events + more)
            if not events:
                return None
            at: dict[str, int] = {}
            for index, envelope, _kind in ledger.store.rows(ledger.log, start=size):
                leaf = merkle.leaf_hash(envelope).hex()
                if leaf in wanted:
                    at[leaf] = index
                    if len(at) == len(wanted):
                        break
            if len(at) == len(wanted):
                return [at[h] for h in events]
            return None
        return None


class LedgerSink:
    """Records outbox files into one ledger, one transaction per file (its events and
    their follow-ups: a `redaction.apply` per redacted event, the `decision.amend` of a
    turn's reply), exactly once (`Intents`)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def accepts(self, group: Sequence[OutboxFile], item: OutboxFile) -> bool:
        return False  # one file, one transaction: a bad file never takes others with it

    def record(self, files: Sequence[OutboxFile]) -> list[list[int]]:
        return [self._record_one(f) for f in files]

    def _record_one(self, item: OutboxFile) -> list[int]:
        intents = Intents(item.directory)
        found = intents.recorded(self.ledger, item.name)
        if found is not None:
            return found

        def intent(
            size: int, entries: Sequence[PendingEntry], follow_ups: Sequence[PendingEntry]
        ) -> None:
            intents.note(item.name, size, entries, follow_ups)

        return record_events(
            self.ledger, item.events, item.agent, created=item.created, intent=intent
        )
