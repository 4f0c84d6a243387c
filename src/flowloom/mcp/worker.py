"""Worker: the one thread that owns the MCP server's services and runs every call on them.

The protocol runs on an event loop; the services (SQLite connections, git processes,
the memory index) are blocking and some of them belong to the thread that opened them.
So they are opened, used and closed on a single thread of their own, and calls from the
loop wait for it without blocking other requests' I/O.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["Worker"]

R = TypeVar("R")
T = TypeVar("T")


class Worker(Generic[R]):
    """Opens a resource with `open` on its own thread, on first use, and closes it there."""

    def __init__(self, open: Callable[[], R], close: Callable[[R], None]) -> None:
        self._open = open
        self._close = close
        self._resource: R | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowloom-mcp")
        self._lock = threading.Lock()
        self._closed = False

    def _resource_here(self) -> R:
        if self._resource is None:
            self._resource = self._open()
        return self._resource

    def call(self, fn: Callable[[R], T]) -> T:
        """Run `fn(resource)` on the worker thread and wait for it (from any thread)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the MCP worker is closed")
            future = self._executor.submit(lambda: fn(self._resource_here()))
        return future.result()

    async def run(self, fn: Callable[[R], T]) -> T:
        """Run `fn(resource)` on the worker thread; the event loop stays free meanwhile."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the MCP worker is closed")
            future = self._executor.submit(lambda: fn(self._resource_here()))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Close the resource on its thread (once), then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True

        def shut() -> None:
            if self._resource is not None:
                resource, self._resource = self._resource, None
                self._close(resource)

        try:
            self._executor.submit(shut).result()
        finally:
            self._executor.shutdown(wait=True)
