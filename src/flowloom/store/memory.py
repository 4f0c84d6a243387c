"""An in-memory store for unit tests: the Store protocol, no database, no durability.

Data model: the same as flowloom.store.interface, held in dictionaries:

- entries: per log, the list of StoredEntry in index order (indices are positions).
- nodes: per log, {(level, idx): hash}; a node is written once.
- checkpoints: per log, the list of StoredCheckpoint in size order.
- bodies: {digest: (log, StoredBody)}; erasable, never replaced.
- subject keys: {(log, subject): wrapped key}; first writer wins.

One re-entrant lock guards everything, so the store is thread-safe and each append or
checkpoint is atomic: the callback runs under the lock, and nothing is written unless
the whole batch can be.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from flowloom.errors import StoreError
from flowloom.store.interface import (
    CheckpointSigner,
    NodeId,
    PendingEntry,
    StoredBody,
    StoredCheckpoint,
    StoredEntry,
    TreeExtender,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """Store implementation in process memory."""

    dialect = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._entries: dict[str, list[StoredEntry]] = {}
        self._nodes: dict[str, dict[NodeId, bytes]] = {}
        self._checkpoints: dict[str, list[StoredCheckpoint]] = {}
        self._bodies: dict[str, tuple[str, StoredBody]] = {}
        self._keys: dict[tuple[str, str], bytes] = {}

    def __repr__(self) -> str:
        return "MemoryStore()"

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- reads -------------------------------------------------------------------

    def size(self, log: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._entries.get(log, ()))

    def logs(self) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(log for log, rows in self._entries.items() if rows)

    def entries(
        self, log: str, start: int = 0, end: int | None = None, kind: str | None = None
    ) -> Iterator[StoredEntry]:
        with self._lock:
            self._check_open()
            stored = self._entries.get(log, [])
            low = max(start, 0)
            high = len(stored) if end is None else max(min(end, len(stored)), low)
            rows = stored[low:high]
        for row in rows:
            if kind is None or row.kind == kind:
                yield row

    def rows(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, bytes, str]]:
        for entry in self.entries(log, start, end):
            yield entry.index, entry.envelope, entry.kind

    def entry(self, log: str, index: int) -> StoredEntry | None:
        with self._lock:
            self._check_open()
            rows = self._entries.get(log, [])
            return rows[index] if 0 <= index < len(rows) else None

    def nodes(self, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        with self._lock:
            self._check_open()
            return self._lookup(log, ids)

    def _lookup(self, log: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        with self._lock:
            stored = self._nodes.get(log, {})
            return {(lvl, idx): stored[(lvl, idx)] for lvl, idx in ids if (lvl, idx) in stored}

    def level(
        self, log: str, level: int, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        with self._lock:
            self._check_open()
            stored = self._nodes.get(log, {})
            run: list[bytes] = []
            idx = start
            while (end is None or idx < end) and (level, idx) in stored:
                run.append(stored[(level, idx)])
                idx += 1
        yield from run

    def latest_checkpoint(self, log: str) -> StoredCheckpoint | None:
        with self._lock:
            self._check_open()
            stored = self._checkpoints.get(log)
            return stored[-1] if stored else None

    def checkpoints(self, log: str) -> list[StoredCheckpoint]:
        with self._lock:
            self._check_open()
            return list(self._checkpoints.get(log, ()))

    def body(self, digest: str) -> StoredBody | None:
        with self._lock:
            self._check_open()
            found = self._bodies.get(digest)
            return found[1] if found else None

    def bodies(self, log: str) -> Iterator[StoredBody]:
        with self._lock:
            self._check_open()
            found = [body for owner, body in self._bodies.values() if owner == log]
        yield from found

    def body_digests(self, log: str, subject: str) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(
                digest
                for digest, (owner, body) in self._bodies.items()
                if owner == log and body.subject == subject
            )

    def subject_key(self, log: str, subject: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._keys.get((log, subject))

    # -- writes ------------------------------------------------------------------

    def append(self, log: str, items: Sequence[PendingEntry], extend: TreeExtender) -> int:
        with self._lock:
            self._check_open()
            size = len(self._entries.get(log, ()))
            if not items:
                return size
            plan = extend(
                size, lambda ids: self._lookup(log, ids), [item.leaf_hash for item in items]
            )
            # Check everything first (the keys a database would refuse), then write.
            stored = self._nodes.get(log, {})
            new_nodes: dict[NodeId, bytes] = {}
            for lvl, idx, node_hash in plan.nodes:
                if (lvl, idx) in stored or (lvl, idx) in new_nodes:
                    raise StoreError(
                        f"database error while appending: node ({lvl}, {idx}) already exists"
                    )
                new_nodes[(lvl, idx)] = bytes(node_hash)
            new_bodies: dict[str, StoredBody] = {}
            for item in items:
                body = item.body
                if body is None:
                    continue
                if body.digest in self._bodies or body.digest in new_bodies:
                    raise StoreError(
                        f"database error while appending: body {body.digest} already exists"
                    )
                new_bodies[body.digest] = body
            self._entries.setdefault(log, []).extend(
                StoredEntry(size + i, bytes(item.envelope), item.kind)
                for i, item in enumerate(items)
            )
            self._nodes.setdefault(log, {}).update(new_nodes)
            for key, stored_body in new_bodies.items():
                self._bodies[key] = (log, stored_body)
            return size

    def add_checkpoint(self, log: str, sign: CheckpointSigner) -> StoredCheckpoint:
        with self._lock:
            self._check_open()
            size = len(self._entries.get(log, ()))
            latest = self.latest_checkpoint(log)
            checkpoint = sign(size, lambda ids: self._lookup(log, ids), latest)
            if latest is not None and checkpoint.size <= latest.size:
                return latest  # nothing new was signed
            self._checkpoints.setdefault(log, []).append(checkpoint)
            return checkpoint

    def delete_bodies(self, log: str, subject: str) -> list[str]:
        with self._lock:
            self._check_open()
            digests = self.body_digests(log, subject)
            for digest in digests:
                del self._bodies[digest]
            self._keys.pop((log, subject), None)
            return digests

    def put_subject_key(self, log: str, subject: str, wrapped: bytes) -> bytes:
        with self._lock:
            self._check_open()
            return self._keys.setdefault((log, subject), bytes(wrapped))

    def subject_keys(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            self._check_open()
            return [(log, subject, key) for (log, subject), key in sorted(self._keys.items())]

    def replace_subject_key(self, log: str, subject: str, old: bytes, new: bytes) -> bool:
        with self._lock:
            self._check_open()
            if self._keys.get((log, subject)) != old:
                return False
            self._keys[(log, subject)] = bytes(new)
            return True
