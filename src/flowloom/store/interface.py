"""The Store protocol: what the ledger needs from a database, and nothing more.

Data model (one set of tables per database, many logs in it, one log per project):

- entries(log, idx, envelope, kind): the canonical event envelopes in log order.
  Append-only: the database refuses UPDATE and DELETE.
- nodes(log, level, idx, hash): every perfect Merkle subtree hash, leaf hashes (level
  0) included, so proofs and roots need O(log n) reads and a verifier can tell which
  entry was altered or moved. Append-only.
- checkpoints(log, size, root, note): every signed checkpoint, in size order.
  Append-only.
- bodies(digest, log, salt, content, nonce, subject): event bodies beside their
  envelopes, keyed by the salted commitment. Rows may be deleted (erasure), never
  updated.
- subject_keys(log, subject, wrapped_key): per-data-subject body keys, wrapped under
  the installation's master key. Deleting a row erases that subject's bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "AppendPlan",
    "CheckpointSigner",
    "NodeId",
    "NodeLookup",
    "PendingEntry",
    "Store",
    "StoredBody",
    "StoredCheckpoint",
    "StoredEntry",
    "TreeExtender",
]

NodeId = tuple[int, int]
NodeLookup = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]


class StoredBody(NamedTuple):
    """A body as kept in the database: content is ciphertext when `nonce` is set.

    A tuple, like StoredEntry: verification reads one per entry.
    """

    digest: str
    salt: bytes
    content: bytes
    nonce: bytes | None = None
    subject: str | None = None


@dataclass(frozen=True)
class PendingEntry:
    """An entry ready to be appended: everything but its index is already known."""

    envelope: bytes
    leaf_hash: bytes
    kind: str
    body: StoredBody | None = None


class StoredEntry(NamedTuple):
    """One row of the log (a tuple: verification reads millions of them)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nobody needs here
    envelope: bytes
    kind: str


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: the note text is authoritative."""

    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class AppendPlan:
    """The perfect nodes (leaves included) that extending the tree produces."""

    nodes: list[tuple[int, int, bytes]]


# Called inside the append transaction with the durable size and a lookup that reads
# inside that transaction; returns the perfect nodes the new leaves complete.
TreeExtender = Callable[[int, NodeLookup, Sequence[bytes]], AppendPlan]

# Called inside the checkpoint transaction with the durable size, a lookup and the
# latest stored checkpoint; returns the checkpoint to store (or the latest one).
CheckpointSigner = Callable[[int, NodeLookup, StoredCheckpoint | None], StoredCheckpoint]


class Store(Protocol):
    """A durable home for logs. Implementations: sqlite, postgres, memory."""

    dialect: str

    def close(self) -> None: ...

    def size(self, log: str) -> int: ...

    def append(self, log: str, items: Sequence[PendingEntry], extend: TreeExtender) -> int:
        """Append atomically and durably; return the index of the first item.

        Indices are assigned inside the transaction, under the log's write lock, so
        concurrent appenders in any number of processes get contiguous indices.
        """
        ...

    def entries(
        self, log: str, start: int = 0, end: int | None = None, kind: str | None = None
    ) -> Iterator[StoredEntry]: ...

    def rows(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, bytes, str]]:
        """(index, envelope, kind) as plain tuples, for bulk readers such as the verifier."""
        ...

    def entry(self, log: str, index: int) -> StoredEntry | None: ...

    def nodes(self, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...

    def level(
        self, log: str, level: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The stored hashes of one tree level from index `start`, in index order.

        Stops at the first gap, so the caller sees exactly the contiguous run.
        """
        ...

    def add_checkpoint(self, log: str, sign: CheckpointSigner) -> StoredCheckpoint: ...

    def latest_checkpoint(self, log: str) -> StoredCheckpoint | None: ...

    def checkpoints(self, log: str) -> list[StoredCheckpoint]: ...

    def body(self, digest: str) -> StoredBody | None: ...

    def bodies(self, log: str) -> Iterator[StoredBody]: ...

    def body_digests(self, log: str, subject: str) -> list[str]: ...

    def delete_bodies(self, log: str, subject: str) -> list[str]:
        """Erase every body of `subject` and its key; return the erased digests."""
        ...

    def subject_key(self, log: str, subject: str) -> bytes | None: ...

    def put_subject_key(self, log: str, subject: str, wrapped: bytes) -> bytes:
        """Store the key unless one exists; return the stored one (first writer wins)."""
        ...

    def subject_keys(self) -> list[tuple[str, str, bytes]]:
        """Every wrapped subject key as (log, subject, wrapped): for a master-key rotation."""
        ...

    def replace_subject_key(self, log: str, subject: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key for the same key wrapped anew, only if it is still `old`.

        False when the row changed or was erased meanwhile (a rotation then skips it).
        """
        ...

    def logs(self) -> list[str]: ...
