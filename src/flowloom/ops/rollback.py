"""Would restoring a backup roll a log back behind what was anchored outside?

Anchored and witnessed checkpoints are facts outside the database: a time-stamping
authority, an S3 Object Lock bucket or a witness saw them and will not forget. A
backup that holds fewer entries than an anchored checkpoint, or another tree at its
size, would make the restored log contradict that evidence: the restore must refuse
it unless an operator overrides with a recorded reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.ops.manifest import LogState

__all__ = ["Conflict", "RootAt", "conflicts"]

RootAt = Callable[[str, int], bytes]
"""The root of log ``log`` at tree size ``size`` in the data being restored."""


@dataclass(frozen=True)
class Conflict:
    """One anchored checkpoint the backup contradicts."""

    source: str
    record: AnchorRecord
    reason: str

    def line(self) -> str:
        return f"{self.reason} (anchor: {self.record.summary()}, from {self.source})"

    def to_json(self) -> dict[str, object]:
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
