"""A bounded least-recently-used cache whose entries also expire after a fixed time.

Used for verified virtual keys and decrypted provider keys: the bound keeps memory flat
under any number of distinct callers, the time-to-live makes a revocation (or rotation)
made by another process visible within ``ttl_s`` seconds. Not thread-safe by itself:
the owner holds its lock around calls.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TtlLru"]

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    """At most `size` entries, each valid for `ttl_s` seconds of `clock` time."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float]) -> None:
        if size < 1:
            raise ValueError("the cache size must be at least 1")
        self._size = size
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] >= self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard_where(self, predicate: Callable[[V], bool]) -> None:
        for key in [k for k, (_, v) in self._entries.items() if predicate(v)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
