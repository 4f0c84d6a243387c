"""The anchor book: anchors recorded as `checkpoint.anchor` events, and checked later.

Anchoring takes a checkpoint the log signed, hands it to an `Anchor`, and only when
the outside party's evidence has verified records it in the log (so a failed anchor
leaves nothing behind). Checking an anchor means two things: its evidence still holds
(token, cosignature, locked object), and the log as the database holds it now is
consistent with the anchored checkpoint. The second is what catches a database
restored from an old backup or rewritten: the anchored size is larger than the log,
or the log's tree at the anchored size has another root.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flowloom.compliance.anchors.interface import Anchor, AnchorRecord
from flowloom.errors import FlowLoomError, InputError, VerificationError
from flowloom.ledger import merkle
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.log import Ledger

__all__ = ["ANCHOR_KIND", "AnchorBook", "AnchorCheck", "AnchoredEntry"]

ANCHOR_KIND = "checkpoint.anchor"


@dataclass(frozen=True)
class AnchoredEntry:
    """A `checkpoint.anchor` event: its index in the log and the record it holds."""

    index: int
    record: AnchorRecord


@dataclass(frozen=True)
class AnchorCheck:
    """The outcome of checking one anchor: ``problem`` is None when it holds."""

    record: AnchorRecord
    source: str  # "ledger entry N", a file name, "witness URL", "s3 bucket"
    problem: str | None
    evidence_checked: bool

    @property
    def ok(self) -> bool:
        return self.problem is None


AnchorFor = Callable[[AnchorRecord], Anchor | None]
"""The verifier to use for a record's evidence, or None to check only the log side."""


class AnchorBook:
    """Anchors of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def anchor(self, anchor: Anchor, note: str | None = None) -> AnchoredEntry:
        """Anchor ``note`` (default: the latest checkpoint, signed now if behind)."""
        if note is None:
            note = self.ledger.checkpoint().note
        open_checkpoint(note, self.ledger.verifier)  # only what this log signed
        record = anchor.anchor(note)
        record.matches(note)
        ack = self.ledger.record(
            ANCHOR_KIND,
            meta={"subject": f"checkpoint {record.size}", "refs": record.to_refs()},
        )
        return AnchoredEntry(ack.index, record)

    def entries(self) -> list[AnchoredEntry]:
        """Every `checkpoint.anchor` event in the log, oldest first."""
        found: list[AnchoredEntry] = []
        store, log = self.ledger.store, self.ledger.log
        for entry in store.entries(log, 0, store.size(log)):
            if entry.kind != ANCHOR_KIND:
                continue
            envelope = json.loads(entry.envelope)
            refs = envelope.get("refs", {})
            try:
                found.append(AnchoredEntry(entry.index, AnchorRecord.from_refs(refs)))
            except FlowLoomError:
                continue  # an anchor event FlowLoom did not write (e.g. a git ref); not ours
        return found

    def latest(self, type_: str, where: str) -> AnchorRecord | None:
        """The most recent anchor of ``type_`` at ``where`` recorded in the log."""
        for entry in reversed(self.entries()):
            if entry.record.type == type_ and entry.record.where == where:
                return entry.record
        return None

    def check_log(self, record: AnchorRecord) -> None:
        """Raise unless the log, as the database holds it now, extends the anchored tree."""
        if record.origin != self.ledger.origin:
            raise InputError(
                f"the anchor is for log {record.origin}, not {self.ledger.origin}",
                hint="pick the project the anchor belongs to with --project",
            )
        open_checkpoint(record.note, self.ledger.verifier)
        size = self.ledger.size()
        if size < record.size:
            raise VerificationError(
                f"the {record.type} anchor at {record.where} holds checkpoint {record.size}, "
                f"but the database has only {size} entries: it was rolled back or truncated",
                hint="restore the database from a copy that holds the anchored entries",
            )
        root = merkle.root_at(record.size, self.ledger.lookup()) if record.size else b""
        if record.size and root != record.root:
            raise VerificationError(
                f"the database's tree at size {record.size} does not match the {record.type} "
                f"anchor at {record.where}: the log was rewritten or forked",
                hint="run 'flowloom log verify' and restore from a trusted copy",
            )

    def check(self, record: AnchorRecord, source: str, anchor: Anchor | None) -> AnchorCheck:
        """Check one record against the log and, when ``anchor`` is given, its evidence."""
        try:
            self.check_log(record)
            if anchor is not None:
                anchor.verify(record, record.note)
        except FlowLoomError as exc:
            return AnchorCheck(record, source, exc.diagnostics(), anchor is not None)
        return AnchorCheck(record, source, None, anchor is not None)

    def check_all(
        self,
        anchor_for: AnchorFor,
        *,
        extra: Iterable[tuple[str, AnchorRecord]] = (),
    ) -> list[AnchorCheck]:
        """Check every anchor recorded in the log, then the ``extra`` (source, record)."""
        results = [
            self.check(entry.record, f"ledger entry {entry.index}", anchor_for(entry.record))
            for entry in self.entries()
        ]
        results.extend(self.check(record, source, anchor_for(record)) for source, record in extra)
        return results
