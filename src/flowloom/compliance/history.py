"""The ledger as the checks read it: every event parsed once, indexed by kind and body.

A compliance run reads a whole log (and the security events of the instance log in the
same store, where disabled users and revoked keys are recorded) into `LedgerView`, so
each check asks questions of memory instead of the database. Entries that do not parse
are skipped here; the trail-integrity check reports them through full verification.

The view also says which events *count*. An authority-bearing event (an approval, a
signature, a hold, a CI verdict, an anchor, an erasure, ``auth.*``, ``key.*``: see
`flowloom.ledger.attest`) is only its writer's claim until its origin is proven under
the reader's `Trust` (`flowloom.ledger.provenance`). `LedgerView.of` and
`LedgerView.family` give only the events that count, so a check cannot count a forged
one by accident; `LedgerView.unverified` lists the others, for the report to show them
for what they are. Approvals and signatures count only when the person is proven too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from flowloom.errors import FlowLoomError
from flowloom.ledger.attest import is_authority_kind
from flowloom.ledger.event import Event, parse_ts
from flowloom.ledger.provenance import Provenance, Trust, judge
from flowloom.store.interface import Store

__all__ = [
    "INSTANCE_KINDS",
    "INSTANCE_LOG",
    "PERSONAL_KINDS",
    "Entry",
    "LedgerView",
    "Period",
    "believed",
    "security_rows",
    "unverified_note",
]

INSTANCE_LOG: Final = "flowloom-instance"
"""The log of instance-wide security events (users created and disabled, keys revoked)."""

INSTANCE_KINDS: Final = (
    "auth.user_created",
    "auth.oidc_linked",
    "auth.saml_linked",
    "auth.user_disabled",
    "auth.user_enabled",
    "auth.user_deleted",
    "auth.key_revoked",
    "auth.key_rotated",
    "auth.role_granted",
    "auth.role_revoked",
    "auth.team_member_added",
    "auth.team_member_removed",
)
"""The instance log's security events a project's assessment reads: who exists, who was
disabled, which keys were revoked, and the instance-wide ("*") roles and team members."""

PERSONAL_KINDS: Final = frozenset({"decision.approve", "signature.apply", "compliance.response"})
"""Kinds that are a person's own act: they count only when that person is proven (a
server that authenticated them attested it, or their own key signed it). FlowLoom's
attestation alone proves only that FlowLoom's command wrote it, for whoever ran it."""

_NAMES: Final = {
    "decision.approve": "approval",
    "signature.apply": "signature",
    "retention.set": "legal hold change",
    "erasure.tombstone": "erasure",
    "checkpoint.anchor": "anchor",
    "export.generate": "export record",
    "ci.result": "CI verdict",
    "test.result": "test result",
    "compliance.response": "management response",
}


def believed(kind: str, proven: Provenance) -> bool:
    """Whether an event of `kind` with this provenance counts (see `PERSONAL_KINDS`)."""
    if not is_authority_kind(kind):
        return True
    if kind in PERSONAL_KINDS:
        return proven.proven_person
    return proven.attested


def unverified_note(kind: str, actor: str, index: int, reason: str, *, log: str = "") -> str:
    """For people: "unverified approval by bob at entry 12: not counted (why)"."""
    what = _NAMES.get(kind, kind)
    where = f"entry {index}" + (f" of {log}" if log else "")
    because = f" ({reason})" if reason else ""
    return f"unverified {what} by {actor or 'nobody'} at {where}: not counted{because}"


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
    """A half-open time range [start, end) in UTC, and how it was asked for."""

    start: datetime
    end: datetime
    first: str = ""
    """The start as requested (``2026-12-01``); empty when built from times."""
    last: str = ""
    """The end as requested (``2026-12-07``)."""
    last_included: bool = False
    """Whether `last` is included: a day given as ``YYYY-MM-DD`` is."""

    @property
    def label(self) -> str:
        """The period as requested, for people: "2026-12-01 to 2026-12-07 (both days
        included, UTC)" or "... to 2026-12-07T12:00:00Z (end excluded, UTC)"."""
        if not (self.first and self.last):
            return ""
        how = "both days included" if self.last_included else "end excluded"
        return f"{self.first} to {self.last} ({how}, UTC)"

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end


@dataclass
class LedgerView:
    """Every entry of one log (and the instance log's security events), parsed.

    `trust` says whose attestations and signatures prove an authority-bearing event;
    `instance` holds only the instance log's security events that count.
    """

    log: str
    trust: Trust
    entries: list[Entry] = field(default_factory=list)
    instance: list[Entry] = field(default_factory=list)
    by_kind: dict[str, list[Entry]] = field(default_factory=dict)
    by_body: dict[str, Entry] = field(default_factory=dict)
    unreadable: list[int] = field(default_factory=list)
    instance_unverified: list[Entry] = field(default_factory=list)
    _proven: dict[tuple[str, int], Provenance] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        store: Store,
        log: str,
        trust: Trust,
        *,
        size: int | None = None,
        instance: Iterable[tuple[int, bytes]] | None = None,
    ) -> LedgerView:
        """The view of `log` (its first `size` entries when given: a report's snapshot).

        `instance` gives the instance log's security events as (index, envelope) pairs
        (`security_rows`; an evidence pack carries them); by default they are read from
        `store`.
        """
        view = cls(log=log, trust=trust)
        for index, envelope, _kind in store.rows(log, 0, size):
            entry = _parse(index, envelope, log)
            if entry is None:
                view.unreadable.append(index)
                continue
            view.entries.append(entry)
            view.by_kind.setdefault(entry.kind, []).append(entry)
            if entry.event.body is not None:
                view.by_body.setdefault(entry.event.body, entry)
        if instance is None and log != INSTANCE_LOG:
            instance = security_rows(store)
        for index, envelope in instance or ():
            parsed = _parse(index, envelope, INSTANCE_LOG)
            if parsed is None:
                continue
            if view.counts(parsed):
                view.instance.append(parsed)
            else:
                view.instance_unverified.append(parsed)
        return view

    def provenance(self, entry: Entry) -> Provenance:
        """What `trust` proves about the entry's origin (judged once per entry)."""
        key = (entry.log, entry.index)
        found = self._proven.get(key)
        if found is None:
            found = judge(entry.event.to_json(), self.trust)
            self._proven[key] = found
        return found

    def counts(self, entry: Entry) -> bool:
        """Whether the entry counts: any event that carries no authority, or an
        authority-bearing one whose origin (and, for `PERSONAL_KINDS`, person) is proven."""
        if not is_authority_kind(entry.kind):
            return True
        return believed(entry.kind, self.provenance(entry))

    def note(self, entry: Entry) -> str:
        """For an entry that does not count: "unverified approval by bob at entry 12: not
        counted (why)"."""
        proven = self.provenance(entry)
        reason = proven.reason or (
            "no signature proves who the person was" if proven.attested else "origin unproven"
        )
        log = entry.log if entry.log != self.log else ""
        return unverified_note(entry.kind, entry.event.actor.id, entry.index, reason, log=log)

    def of(self, *kinds: str) -> list[Entry]:
        """The entries of the given kinds that count, in log order (forged or unproven
        authority-bearing events are left out: `unverified` lists them)."""
        if len(kinds) == 1:
            return [e for e in self.by_kind.get(kinds[0], ()) if self.counts(e)]
        found = [e for kind in kinds for e in self.by_kind.get(kind, ()) if self.counts(e)]
        return sorted(found, key=lambda e: e.index)

    def unverified(self, *kinds: str) -> list[Entry]:
        """The authority-bearing entries (of `kinds`; all kinds when none are given) that
        do not count, in log order."""
        pool = (
            self.entries
            if not kinds
            else sorted((e for k in kinds for e in self.by_kind.get(k, ())), key=lambda e: e.index)
        )
        return [e for e in pool if is_authority_kind(e.kind) and not self.counts(e)]

    def family(self, prefix: str) -> Iterator[Entry]:
        """Entries that count whose kind starts with `prefix` (e.g. "auth."), in log order."""
        return (e for e in self.entries if e.kind.startswith(prefix) and self.counts(e))

    def within(self, period: Period, entries: Iterable[Entry] | None = None) -> list[Entry]:
        """The entries (all by default, counted or not) whose timestamp falls in `period`."""
        return [e for e in (self.entries if entries is None else entries) if e.at in period]

    def at(self, index: int) -> Entry | None:
        """The entry at `index` of this log, if it parsed (whether it counts or not)."""
        if 0 <= index < len(self.entries) and self.entries[index].index == index:
            return self.entries[index]
        return next((e for e in self.entries if e.index == index), None)


def security_rows(store: Store, size: int | None = None) -> list[tuple[int, bytes]]:
    """The instance log's security events (of its first `size` entries), in log order."""
    if INSTANCE_LOG not in store.logs():
        return []
    found = [
        (stored.index, stored.envelope)
        for kind in INSTANCE_KINDS
        for stored in store.entries(INSTANCE_LOG, kind=kind)
        if size is None or stored.index < size
    ]
    return sorted(found)


def _parse(index: int, envelope: bytes, log: str) -> Entry | None:
    try:
        event = Event.parse(envelope)
        return Entry(index=index, event=event, at=parse_ts(event.ts), log=log)
    except FlowLoomError:
        return None
