"""The timeline: a page of a log's events, newest first, filtered, in bounded time.

A page never reads the whole log. It walks back from a ledger index (``before``) in
windows of index ranges and stops once it has a page of matches or has looked at
`scan_budget` entries; the next page continues from where the walk stopped. A kind
filter reads the kind index, so it may look much further back for the same cost. Time
bounds assume entries are in time order (true of server-assigned times): ``until``
starts the walk by a binary search, ``since`` ends it at the first older entry. Given the
server's `Trust`, an authority-bearing event whose origin is not proven (an approval, a
hold, a role grant appended around its endpoint) is labelled unverified on its row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flowloom.ledger.attest import is_authority_kind
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust, judge_bytes

__all__ = ["EventRow", "TimelinePage", "TimelineQuery", "event_row", "labelled", "read_page"]

_WINDOW = 512
_SUMMARY_MAX = 160


@dataclass(frozen=True)
class TimelineQuery:
    kind: str | None = None
    actor: str | None = None
    since: str | None = None
    """Inclusive lower bound, event-form timestamp prefix (e.g. 2026-11-22)."""
    until: str | None = None
    """Exclusive upper bound, same form."""
    text: str | None = None
    before: int | None = None
    limit: int = 50
    scan_budget: int = 5000


@dataclass(frozen=True)
class EventRow:
    index: int
    kind: str
    ts: str
    actor: str
    actor_id: str
    subject: str
    session: str
    summary: str
    has_body: bool
    unverified: str = ""
    """Why an authority-bearing event does not count (its origin is not proven)."""


@dataclass(frozen=True)
class TimelinePage:
    rows: tuple[EventRow, ...]
    size: int
    scanned_from: int
    """The oldest index looked at; [scanned_from, start) was searched."""
    start: int
    older: int | None
    """The ``before`` of the next (older) page; None when the walk reached the start."""
    exhausted_budget: bool


def _refs_summary(refs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in refs.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
        if sum(len(p) for p in parts) > _SUMMARY_MAX:
            break
    text = ", ".join(parts)
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1] + "…"


def labelled(row: EventRow, envelope: bytes, trust: Trust | None) -> EventRow:
    """`row`, labelled unverified when it carries authority `trust` does not prove."""
    if trust is None or not is_authority_kind(row.kind):
        return row
    proven = judge_bytes(envelope, trust)
    if proven.attested:
        return row
    return replace(row, unverified=proven.reason or "its origin is not proven")


def event_row(index: int, envelope: bytes, kind: str, trust: Trust | None = None) -> EventRow:
    """One entry as the timeline shows it (malformed envelopes still get a row);
    with `trust`, an authority-bearing event it does not prove is labelled unverified."""
    try:
        event = json.loads(envelope)
    except ValueError:
        event = {}
    if not isinstance(event, dict):
        event = {}
    actor = event.get("actor") if isinstance(event.get("actor"), dict) else {}
    refs = event.get("refs") if isinstance(event.get("refs"), dict) else {}
    assert isinstance(actor, dict) and isinstance(refs, dict)
    row = EventRow(
        index=index,
        kind=kind,
        ts=str(event.get("ts", "")),
        actor=str(actor.get("name") or actor.get("id") or ""),
        actor_id=str(actor.get("id") or ""),
        subject=str(event.get("subject") or ""),
        session=str(event.get("session") or ""),
        summary=_refs_summary(refs),
        has_body=isinstance(event.get("body"), str),
    )
    return labelled(row, envelope, trust)


def _matches(row: EventRow, envelope: bytes, query: TimelineQuery) -> bool:
    if query.actor:
        wanted = query.actor.lower()
        if wanted not in row.actor.lower() and wanted != row.actor_id.lower():
            return False
    if query.since and row.ts < query.since:
        return False
    if query.until and row.ts >= query.until:
        return False
    if query.text:
        return query.text.lower() in envelope.decode("utf-8", "replace").lower()
    return True


def _ts_at(ledger: Ledger, index: int) -> str:
    stored = ledger.store.entry(ledger.log, index)
    if stored is None:
        return ""
    try:
        ts = json.loads(stored.envelope).get("ts", "")
    except (ValueError, AttributeError):
        return ""
    return ts if isinstance(ts, str) else ""


def _start_before(ledger: Ledger, size: int, until: str) -> int:
    """The first index whose time is at or after `until` (binary search, time order)."""
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        if _ts_at(ledger, middle) < until:
            low = middle + 1
        else:
            high = middle
    return low


def read_page(ledger: Ledger, query: TimelineQuery, trust: Trust | None = None) -> TimelinePage:
    """The newest `query.limit` matching entries before `query.before` (bounded work);
    `trust` labels the authority-bearing events it does not prove."""
    size = ledger.size()
    start = size if query.before is None else max(0, min(query.before, size))
    if query.until and query.before is None:
        start = _start_before(ledger, size, query.until)
    budget = query.scan_budget * (20 if query.kind else 1)
    rows: list[EventRow] = []
    end = start
    older: int | None = None
    reached_since = False
    while end > 0 and len(rows) < query.limit and start - end < budget:
        low = max(0, end - _WINDOW * (8 if query.kind else 1))
        window = list(ledger.store.entries(ledger.log, low, end, query.kind))
        for index, envelope, kind in reversed(window):
            row = event_row(index, envelope, kind)
            if query.since and row.ts and row.ts < query.since:
                reached_since = True
                break
            if _matches(row, envelope, query):
                rows.append(labelled(row, envelope, trust))
                if len(rows) == query.limit:
                    older = index
                    break
        if older is not None or reached_since:
            break
        end = low
    scanned_from = older if older is not None else end
    if older is None and not reached_since and end > 0:
        older = end
    return TimelinePage(
        rows=tuple(rows),
        size=size,
        scanned_from=scanned_from,
        start=start,
        older=older,
        exhausted_budget=older is not None and len(rows) < query.limit,
    )
