"""One snapshot per report: the signed checkpoint an assessment reads, and nothing after it.

A report's formats (and a web page) must agree, and a report must not be disturbed by
what is appended while it runs, nor by its own ``export.generate``. So a run first signs
a checkpoint (or, for a reader that may not write, takes the latest one signed) and the
assessment reads exactly the entries that checkpoint covers; the instance log's
security events are read up to its size at that moment. Everything the report says
about the ledger (entries, root, the checkpoint note) is then that checkpoint's.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowloom.compliance.history import INSTANCE_LOG
from flowloom.errors import NotFoundError
from flowloom.ledger.log import Ledger
from flowloom.store.interface import StoredCheckpoint

__all__ = ["Snapshot", "latest_snapshot", "take_snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """The project log's signed checkpoint an assessment reads, and how much of the
    instance log (None: the store has none, or the log is the instance log)."""

    checkpoint: StoredCheckpoint
    vkey: str
    """The verifier key of the key that signed the checkpoint."""
    instance_size: int | None = None

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> str:
        return self.checkpoint.root.hex()


def _instance_size(ledger: Ledger) -> int | None:
    store = ledger.store
    if ledger.log == INSTANCE_LOG or INSTANCE_LOG not in store.logs():
        return None
    return store.size(INSTANCE_LOG)


def _vkey(ledger: Ledger, size: int) -> str:
    if ledger.keyring is not None:
        key = ledger.keyring.history().at(size)
        if key is not None:
            return key.vkey
    return ledger.verifier.vkey


def take_snapshot(ledger: Ledger) -> Snapshot:
    """Sign a checkpoint over everything recorded so far (needs the log's key)."""
    checkpoint = ledger.checkpoint()
    return Snapshot(checkpoint, _vkey(ledger, checkpoint.size), _instance_size(ledger))


def latest_snapshot(ledger: Ledger) -> Snapshot:
    """The latest checkpoint already signed, for readers that may not write."""
    latest = ledger.store.latest_checkpoint(ledger.log)
    if latest is None:
        raise NotFoundError(
            f"log {ledger.log!r} has no signed checkpoint yet",
            hint="sign one with 'flowloom log checkpoint' (a report signs one itself)",
        )
    return Snapshot(latest, _vkey(ledger, latest.size), _instance_size(ledger))
