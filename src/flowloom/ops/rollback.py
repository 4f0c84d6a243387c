"""Would restoring a backup roll a log back behind what was anchored outside?

Anchored and witnessed checkpoints are facts outside the database: a time-stamping
authority, an S3 Object Lock bucket or a witness saw them and will not forget. A
backup that holds fewer entries than an anchored checkpoint, or another tree at its
size, would make the restored log contradict that evidence: the restore must refuse
it unless an operator overrides with a recorded reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.errors import InputError, RemoteError
from flowloom.ops.manifest import LogState

__all__ = ["Conflict", "RootAt", "conflicts", "witness_conflicts"]

RootAt = Callable[[str, int], bytes]
"""The root of log ``log`` at tree size ``size`` in the data being restored."""


@dataclass(frozen=True)
class Conflict:
    """One anchored checkpoint the backup contradicts."""

    source: str
    record: AnchorRecord | None
    """None when the outside party itself refused (a witness asked now)."""
    reason: str

    def line(self) -> str:
        if self.record is None:
            return f"{self.reason} (from {self.source})"
        return f"{self.reason} (anchor: {self.record.summary()}, from {self.source})"

    def to_json(self) -> dict[str, object]:
        if self.record is None:
            return {"source": self.source, "reason": self.reason}
        return {
            "source": self.source,
            "reason": self.reason,
            "anchor": {
                "type": self.record.type,
                "origin": self.record.origin,
                "size": self.record.size,
                "where": self.record.where,
                "anchored_at": self.record.anchored_at,
            },
        }


def conflicts(
    records: Iterable[tuple[str, AnchorRecord]],
    states: Mapping[str, LogState],
    root_at: RootAt | None,
) -> list[Conflict]:
    """Every (source, record) the backup's logs do not extend; [] when it is safe."""
    by_origin: dict[str, LogState] = {}
    for state in states.values():
        if state.origin is not None:
            by_origin[state.origin] = state
    found: list[Conflict] = []
    seen: set[tuple[str, int, bytes]] = set()
    for source, record in records:
        key = (record.origin, record.size, record.root)
        if key in seen:
            continue  # the same checkpoint from several sources: one judgement
        seen.add(key)
        reason = _judge(record, by_origin.get(record.origin), root_at)
        if reason is not None:
            found.append(Conflict(source, record, reason))
    return found


def _judge(record: AnchorRecord, state: LogState | None, root_at: RootAt | None) -> str | None:
    if state is None:
        return (
            f"rollback: log {record.origin} was anchored at size {record.size}, "
            "but the backup holds no checkpoint of that log"
        )
    if state.size < record.size:
        return (
            f"rollback: the backup holds {state.size} entries of log {state.log} "
            f"({record.origin}), older than the checkpoint of size {record.size} anchored "
            f"at {record.anchored_at}"
        )
    root = state.checkpoints.get(record.size)
    if root is None and record.size == state.size:
        root = state.root
    if root is None and root_at is not None:
        root = root_at(state.log, record.size)
    if root is None:
        return (
            f"cannot confirm: the backup's manifest has no checkpoint of log {state.log} "
            f"at the anchored size {record.size}"
        )
    if root != record.root:
        return (
            f"fork: the backup's tree of log {state.log} at size {record.size} differs "
            "from the anchored checkpoint"
        )
    return None


Proofs = Callable[[str, int, int], Sequence[bytes]]
"""Consistency proof in log ``log`` from size old to size new, from the data restored."""

_NOT_ITS_LOG = ("does not know this log's origin", "does not trust this log's signing key")


def witness_conflicts(
    url: str,
    vkey: str,
    states: Mapping[str, LogState],
    proofs: Proofs | None,
    timeout: float,
    skipped: Callable[[str], None] = lambda log: None,
) -> list[Conflict]:
    """Ask the witness at ``url`` about each log's latest checkpoint in the backup.

    A witness that cosigned a larger or another tree refuses (a rollback or a fork). One
    that is behind is shown the consistency proof when the data is at hand (``proofs``);
    without it (a PostgreSQL dump, judged before it is loaded) that log is not a rollback
    and the fork check is the verification after the restore. Logs the witness does not
    follow are skipped; a witness that cannot be reached is an error.
    """
    from flowloom.compliance.anchors.witness import (
        CosignatureVerifier,
        WitnessAnchor,
        WitnessConflictError,
    )

    verifier = CosignatureVerifier.from_vkey(vkey)
    found: list[Conflict] = []
    for state in states.values():
        if state.latest_note is None:
            skipped(state.log)  # no signed checkpoint to show the witness
            continue
        log = state.log
        source = None if proofs is None else (lambda old, new, log=log: proofs(log, old, new))
        probe = WitnessAnchor(verifier, url=url, proofs=source, timeout=timeout)
        try:
            probe.probe(state.latest_note)
        except WitnessConflictError as exc:
            found.append(Conflict(f"witness {url}", None, f"log {log}: {exc.message}"))
        except RemoteError as exc:
            if not any(text in exc.message for text in _NOT_ITS_LOG):
                raise
        except InputError:
            if proofs is not None:
                raise  # with the data at hand a proof is always available
    return found
