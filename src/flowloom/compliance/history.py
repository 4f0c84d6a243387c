"""The ledger as the checks read it: every event parsed once, indexed by kind and body.

A compliance run reads a whole log (and the security events of the instance log in the
same store, where disabled users and revoked keys are recorded) into `LedgerView`, so
each check asks questions of memory instead of the database. Entries that do not parse
are skipped here; the trail-integrity check reports them through full verification.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from flowloom.errors import FlowLoomError
from flowloom.ledger.event import Event, parse_ts
from flowloom.store.interface import Store

__all__ = ["INSTANCE_LOG", "Entry", "LedgerView", "Period"]

INSTANCE_LOG: Final = "flowloom-instance"
"""The log of instance-wide security events (users created and disabled, keys revoked)."""


@dataclass(frozen=True)
class Entry:
    """One parsed ledger entry; `log` names the log it came from."""

    index: int
    event: Event
    at: datetime
    log: str

    @property
    def kind(self) -> str:
        return self.event.kind

    @property
    def ts(self) -> str:
        return self.event.ts


@dataclass(frozen=True)
class Period:
    """A half-open time range [start, end) in UTC."""

    start: datetime
    end: datetime

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end


@dataclass
class LedgerView:
    """Every entry of one log (and the instance log's security events), parsed."""

    log: str
    entries: list[Entry] = field(default_factory=list)
    instance: list[Entry] = field(default_factory=list)
    by_kind: dict[str, list[Entry]] = field(default_factory=dict)
    by_body: dict[str, Entry] = field(default_factory=dict)
    unreadable: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, store: Store, log: str) -> LedgerView:
        view = cls(log=log)
        for index, envelope, _kind in store.rows(log):
            entry = _parse(index, envelope, log)
            if entry is None:
                view.unreadable.append(index)
                continue
            view.entries.append(entry)
            view.by_kind.setdefault(entry.kind, []).append(entry)
            if entry.event.body is not None:
                view.by_body.setdefault(entry.event.body, entry)
        if log != INSTANCE_LOG and INSTANCE_LOG in store.logs():
            for kind in (
                "auth.user_created",
                "auth.user_disabled",
                "auth.user_enabled",
                "auth.user_deleted",
                "auth.key_revoked",
                "auth.key_rotated",
            ):
                for stored in store.entries(INSTANCE_LOG, kind=kind):
                    parsed = _parse(stored.index, stored.envelope, INSTANCE_LOG)
                    if parsed is not None:
                        view.instance.append(parsed)
        return view

    def of(self, *kinds: str) -> list[Entry]:
        """The entries of the given kinds, in log order."""
        if len(kinds) == 1:
            return list(self.by_kind.get(kinds[0], ()))
        found = [e for kind in kinds for e in self.by_kind.get(kind, ())]
        return sorted(found, key=lambda e: e.index)

    def family(self, prefix: str) -> Iterator[Entry]:
        """Entries whose kind starts with `prefix` (e.g. "auth."), in log order."""
        return (e for e in self.entries if e.kind.startswith(prefix))

    def within(self, period: Period, entries: Iterable[Entry] | None = None) -> list[Entry]:
        """The entries (all by default) whose timestamp falls in `period`."""
        return [e for e in (self.entries if entries is None else entries) if e.at in period]

    def at(self, index: int) -> Entry | None:
        """The entry at `index` of this log, if it parsed."""
        if 0 <= index < len(self.entries) and self.entries[index].index == index:
            return self.entries[index]
        return next((e for e in self.entries if e.index == index), None)


def _parse(index: int, envelope: bytes, log: str) -> Entry | None:
    try:
        event = Event.parse(envelope)
        return Entry(index=index, event=event, at=parse_ts(event.ts), log=log)
    except FlowLoomError:
        return None
