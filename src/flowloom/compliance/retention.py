"""Retention: how long bodies are kept per record class, legal holds, and the purge.

Only bodies are ever purged; envelopes stay in the tree forever, so the chain still
verifies after a purge. A purge goes through the ledger's erasure path: an
``erasure.tombstone`` event is appended first (who, which bodies, why, with
``purpose = "retention"``), then the data subject's key and bodies are deleted. The
store deletes bodies per data subject, so the unit of a purge is one data subject: it is
purged only when every one of its bodies is past its retention period and no legal
hold covers it. Bodies stored without a data subject cannot be deleted individually by
the store and are never purged (docs/compliance.md).

Legal holds are ``retention.set`` events::

    refs = {"action": "hold", "hold": "<hold id>", "scope": "all" | "class:<record class>"
            | "subject:<pseudonym>", "reason": "..."}
    refs = {"action": "release", "hold": "<hold id>", "reason": "..."}

A hold applies from its event until the release event of the same hold id. A hold or a
release counts only when its origin is proven under the reader's `Trust` (written by
FlowLoom's own command or the server's holds endpoint, with its attestation): one
appended by hand neither holds nor releases anything (`LedgerView.of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from flowloom.compliance.history import LedgerView
from flowloom.compliance.settings import RECORD_CLASSES, ComplianceSettings, record_class
from flowloom.errors import ConflictError, InputError
from flowloom.ledger.body import subject_pseudonym
from flowloom.ledger.event import format_ts
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust

__all__ = [
    "Hold",
    "PurgeCandidate",
    "PurgeResult",
    "hold_covers",
    "holds",
    "place_hold",
    "plan_purge",
    "purge",
    "release_hold",
]

RETENTION_PURPOSE: Final = "retention"


@dataclass(frozen=True)
class Hold:
    """A legal hold: what it covers, from when, until when (None: still in force)."""

    id: str
    scope: str
    reason: str
    placed_at: datetime
    entry: int
    released_at: datetime | None = None
    release_entry: int | None = None

    def active(self, moment: datetime) -> bool:
        return self.placed_at <= moment and (self.released_at is None or moment < self.released_at)


def _check_scope(scope: str) -> str:
    if scope == "all":
        return scope
    kind, _, ref = scope.partition(":")
    if kind == "class" and ref in RECORD_CLASSES:
        return scope
    if kind == "subject" and ref.startswith("subj:"):
        return scope
    raise InputError(
        f"hold scope {scope!r} is not 'all', 'class:<record class>' or 'subject:<pseudonym>'",
        hint=f"record classes: {', '.join(RECORD_CLASSES)}",
    )


def place_hold(
    ledger: Ledger,
    hold_id: str,
    *,
    reason: str,
    scope: str = "all",
    data_subject: str | None = None,
    actor: Mapping[str, Any] | None = None,
) -> int:
    """Record a legal hold; returns its entry. `data_subject` scopes it to one person."""
    if not hold_id.strip() or not reason.strip():
        raise InputError("a legal hold needs an id and a reason")
    if data_subject is not None:
        scope = "subject:" + subject_pseudonym(ledger.log, data_subject)
    refs = {"action": "hold", "hold": hold_id, "scope": _check_scope(scope), "reason": reason}
    meta: dict[str, Any] = {"subject": f"hold:{hold_id}", "refs": refs}
    if actor is not None:
        meta["actor"] = dict(actor)
    return ledger.record("retention.set", meta=meta).index


def release_hold(
    ledger: Ledger,
    hold_id: str,
    *,
    reason: str,
    trust: Trust,
    actor: Mapping[str, Any] | None = None,
) -> int:
    """Record the end of a legal hold; InputError when no hold of that id is in force
    (under `trust`: a hold appended by hand is not one)."""
    view = LedgerView.load(ledger.store, ledger.log, trust)
    if not any(h.id == hold_id and h.released_at is None for h in holds(view)):
        raise InputError(f"no legal hold {hold_id!r} is in force", hint="list holds first")
    refs = {"action": "release", "hold": hold_id, "reason": reason}
    meta: dict[str, Any] = {"subject": f"hold:{hold_id}", "refs": refs}
    if actor is not None:
        meta["actor"] = dict(actor)
    return ledger.record("retention.set", meta=meta).index


def holds(view: LedgerView) -> list[Hold]:
    """Every legal hold the log records, with its release when there is one; only holds
    and releases whose origin the view's trust proves count."""
    found: dict[str, Hold] = {}
    ordered: list[Hold] = []
    for entry in view.of("retention.set"):
        refs = entry.event.refs
        action, hold_id = refs.get("action"), refs.get("hold")
        if not isinstance(hold_id, str):
            continue
        if action == "hold":
            scope = refs.get("scope", "all")
            hold = Hold(
                id=hold_id,
                scope=scope if isinstance(scope, str) else "all",
                reason=str(refs.get("reason", "")),
                placed_at=entry.at,
                entry=entry.index,
            )
            found[hold_id] = hold
            ordered.append(hold)
        elif action == "release" and hold_id in found and found[hold_id].released_at is None:
            old = found[hold_id]
            released = Hold(
                old.id, old.scope, old.reason, old.placed_at, old.entry, entry.at, entry.index
            )
            found[hold_id] = released
            ordered[ordered.index(old)] = released
    return ordered


def hold_covers(hold: Hold, *, subject: str | None, classes: Sequence[str]) -> bool:
    """Whether `hold` covers bodies of `subject` (a pseudonym) in `classes`."""
    if hold.scope == "all":
        return True
    kind, _, ref = hold.scope.partition(":")
    if kind == "class":
        return ref in classes
    return kind == "subject" and ref == subject


@dataclass(frozen=True)
class PurgeCandidate:
    """One data subject's bodies and whether they may be purged now."""

    subject: str  # the pseudonym
    digests: tuple[str, ...]
    classes: tuple[str, ...]
    due_at: datetime | None  # when the last of its bodies reaches the end of retention
    blocked: str | None  # why it may not be purged now; None: it may

    @property
    def purgeable(self) -> bool:
        return self.blocked is None


@dataclass
class PurgeResult:
    """What a purge did: tombstone entries written, and what it left alone and why."""

    purged: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    refused: list[PurgeCandidate] = field(default_factory=list)


def plan_purge(
    ledger: Ledger, settings: ComplianceSettings, *, now: datetime, trust: Trust
) -> list[PurgeCandidate]:
    """Every data subject with stored bodies, and whether retention lets it go at `now`
    (under the holds `trust` believes)."""
    view = LedgerView.load(ledger.store, ledger.log, trust)
    by_subject: dict[str, list[str]] = {}
    for stored in ledger.store.bodies(ledger.log):
        if stored.subject is not None:
            by_subject.setdefault(stored.subject, []).append(stored.digest)
    active = [h for h in holds(view) if h.active(now)]
    plans = []
    for subject, digests in sorted(by_subject.items()):
        classes: list[str] = []
        due: datetime | None = None
        unknown = False
        for digest in digests:
            entry = view.by_body.get(digest)
            if entry is None:
                unknown = True  # a body no envelope names: keep it, someone should look
                continue
            cls = record_class(entry.kind)
            classes.append(cls)
            until = entry.at + settings.retention(cls)
            due = until if due is None or until > due else due
        classes = list(dict.fromkeys(classes))
        blocked: str | None = None
        covering = [h for h in active if hold_covers(h, subject=subject, classes=classes)]
        if covering:
            names = ", ".join(h.id for h in covering)
            blocked = f"under legal hold {names}"
        elif unknown or due is None:
            blocked = "a body is not referenced by any entry; not purged automatically"
        elif now < due:
            blocked = f"retention runs until {format_ts(due)}"
        plans.append(PurgeCandidate(subject, tuple(sorted(digests)), tuple(classes), due, blocked))
    return plans


def purge(
    ledger: Ledger,
    settings: ComplianceSettings,
    *,
    now: datetime,
    trust: Trust,
    reason: str = "retention period ended",
    subjects: Sequence[str] | None = None,
    actor: Mapping[str, Any] | None = None,
) -> PurgeResult:
    """Purge the bodies whose retention ended at `now` and that no hold covers.

    With `subjects` (pseudonyms), purge exactly those and raise ConflictError, purging
    nothing, when any of them is not yet due or is under hold. Without, purge every
    subject that is due and report the others in `refused`.
    """
    if not reason.strip():
        raise InputError("a purge needs a reason")
    plans = plan_purge(ledger, settings, now=now, trust=trust)
    result = PurgeResult()
    if subjects is not None:
        wanted = set(subjects)
        chosen = [p for p in plans if p.subject in wanted]
        missing = wanted - {p.subject for p in chosen}
        if missing:
            raise InputError(f"no stored bodies for {', '.join(sorted(missing))}")
        refused = [p for p in chosen if not p.purgeable]
        if refused:
            first = refused[0]
            raise ConflictError(
                f"refusing to purge {first.subject}: {first.blocked}",
                hint="nothing was purged; wait for the retention period or release the hold",
            )
    else:
        chosen = [p for p in plans if p.purgeable]
        result.refused = [p for p in plans if not p.purgeable]
    for plan in chosen:
        refs = {
            "subject": plan.subject,
            "bodies": list(plan.digests),
            "reason": reason,
            "purpose": RETENTION_PURPOSE,
            "classes": list(plan.classes),
        }
        meta: dict[str, Any] = {"subject": plan.subject, "refs": refs}
        if actor is not None:
            meta["actor"] = dict(actor)
        # The tombstone first, then the keys go: the same order as Ledger.erase.
        ack = ledger.record("erasure.tombstone", meta=meta)
        erased = ledger.store.delete_bodies(ledger.log, plan.subject)
        result.purged.append((plan.subject, ack.index, tuple(sorted(erased))))
    return result
