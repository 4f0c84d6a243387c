"""The single log writer: group commit of concurrent appends.

Appenders hand entries to one writer thread, which takes everything queued (up to a
batch limit, optionally lingering a moment for more) and appends it in one durable
transaction. Each appender's future resolves only after that transaction commits, so an
acknowledgement always means the entry is on disk. Indices come from the store inside
the transaction, so writers in other processes interleave safely by whole batches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from flowloom.errors import StoreError
from flowloom.ledger.merkle import Frontier
from flowloom.store.interface import AppendPlan, NodeLookup, PendingEntry, Store

__all__ = ["Ack", "LogMovedOnError", "LogWriter"]


@dataclass(frozen=True)
class Ack:
    """A durable append: the entry's index and leaf hash.

    `queued`: not appended yet but safely in the outbox for a team server (which will
    assign the index; `index` is then -1)."""

    index: int
    leaf_hash: bytes
    queued: bool = False


class LogMovedOnError(StoreError):
    """The log was not at the size the batch was prepared for (another writer appended
    first): nothing was appended; prepare again and retry."""


BatchObserver = Callable[[int, float], None]  # (entries in batch, seconds in transaction)


class LogWriter:
    """Appends to one log, batching concurrent callers into shared transactions."""

    def __init__(
        self,
        store: Store,
        log: str,
        *,
        max_batch: int = 2000,
        linger_s: float = 0.0,
        observer: BatchObserver | None = None,
    ) -> None:
        self._store = store
        self._log = log
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._observer = observer
        self._frontier: Frontier | None = None
        self._frontier_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[PendingEntry, Future[Ack]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._appended = False
        self.before_first_append: Callable[[], None] | None = None
        """Called before each append until one succeeds: the ledger pins a new log's key
        there (`Ledger._pin_new_log`, idempotent), so it precedes the log's first entry."""

    # -- direct path: one batch in the caller's thread (CLI, hooks) ---------------

    def append_many(self, entries: Sequence[PendingEntry], *, at: int | None = None) -> list[Ack]:
        """Append `entries` as one durable batch and return their acknowledgements.

        `at`: the batch must start at this index (its entries name their own indices,
        as follow-ups do); when the log has moved on, nothing is appended and
        `LogMovedOnError` is raised.
        """
        if not entries:
            return []
        if not self._appended and self.before_first_append is not None:
            self.before_first_append()
        extended: list[Frontier] = []

        def extend(size: int, lookup: NodeLookup, leaf_hashes: Sequence[bytes]) -> AppendPlan:
            if at is not None and size != at:
                raise LogMovedOnError(f"the log is at {size}, not {at}")
            frontier, plan = self._extend(size, lookup, leaf_hashes)
            extended[:] = [frontier]
            return plan

        first = self._store.append(self._log, entries, extend)
        self._appended = True
        # Only a committed transaction makes the extended frontier true.
        with self._frontier_lock:
            self._frontier = extended[0] if extended else None
        return [Ack(first + i, e.leaf_hash) for i, e in enumerate(entries)]

    # -- group-commit path ----------------------------------------------------------

    def submit(self, entry: PendingEntry) -> Future[Ack]:
        """Queue `entry`; the future resolves once its batch is durable."""
        if self._closed:
            raise StoreError("the log writer is closed")
        self._ensure_thread()
        future: Future[Ack] = Future()
        self._queue.put((entry, future))
        return future

    def append(self, entry: PendingEntry) -> Ack:
        """Append one entry through the group commit and wait until it is durable."""
        return self.submit(entry).result()

    def close(self) -> None:
        """Flush everything queued, then stop the writer thread."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"flowloom-writer-{self._log}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self._linger_s
            while len(batch) < self._max_batch:
                try:
                    timeout = deadline - time.monotonic()
                    item = (
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[PendingEntry, Future[Ack]]]) -> None:
        started = time.perf_counter()
        try:
            acks = self.append_many([entry for entry, _ in batch])
        except BaseException as exc:  # every waiter must learn of the failure
            for _, future in batch:
                future.set_exception(exc)
            return
        if self._observer is not None:
            self._observer(len(batch), time.perf_counter() - started)
        for (_, future), ack in zip(batch, acks, strict=True):
            future.set_result(ack)

    # -- tree extension, called inside the store's append transaction --------------

    def _extend(
        self, size: int, lookup: NodeLookup, leaf_hashes: Sequence[bytes]
    ) -> tuple[Frontier, AppendPlan]:
        with self._frontier_lock:
            cached = self._frontier
        if cached is not None and cached.size == size:
            frontier = cached.copy()
        else:
            frontier = Frontier.load(size, lookup)
        nodes: list[tuple[int, int, bytes]] = []
        for leaf in leaf_hashes:
            nodes.append((0, frontier.size, leaf))
            nodes.extend(frontier.append(leaf))
        return frontier, AppendPlan(nodes)
