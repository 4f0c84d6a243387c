"""Assessments computed off the request: the dashboard never waits for, nor lacks, one.

The compliance dashboard shows every framework's result at the latest checkpoint. An
assessment can take seconds, so a missing one is computed in one background worker (one
at a time per process: the machine's cores serve requests first) and cached by the
checkpoint it reads (size and root) in the web state's cache; meanwhile the page says
"computing" and refreshes itself. A failure is kept and shown with its reason until the
checkpoint moves, instead of a placeholder that never resolves. The worker ends with the
application (its lifespan's end, `flowloom.server.app`): what is queued is dropped and
the computation under way finishes before the store it reads is closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from flowloom.errors import FlowLoomError

__all__ = ["Background", "Progress"]

Progress = tuple[Literal["ready", "computing", "failed"], Any]
"""("ready", value), ("computing", None) or ("failed", the reason)."""


class Background:
    """Computes values for a cache in one worker thread, each key at most once at a time."""

    def __init__(self, cache: Any, *, workers: int = 1) -> None:
        self._cache = cache  # the web state's _Cache: get(key, compute), peek(key)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowloom-web")
        self._lock = threading.Lock()
        self._pending: set[Hashable] = set()
        self._failed: dict[Hashable, str] = {}
        self._closed = False

    def progress(self, key: Hashable, compute: Callable[[], Any]) -> Progress:
        """The cached value, or its computation started (once) in the background."""
        found = self._cache.peek(key)
        if found is not None:
            return ("ready", found)
        with self._lock:
            if key in self._failed:
                return ("failed", self._failed[key])
            if self._closed:
                return ("failed", "the server is shutting down")
            if key not in self._pending:
                self._pending.add(key)
                self._pool.submit(self._run, key, compute)
        return ("computing", None)

    def _run(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._cache.get(key, compute)
        except FlowLoomError as exc:
            with self._lock:
                self._failed[key] = exc.message
        except Exception as exc:
            with self._lock:
                self._failed[key] = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._pending.discard(key)

    def close(self) -> None:
        """Stop taking work, drop what is queued, and wait for the computation under way
        (the store it reads is closed after the app): no thread outlives this call."""
        with self._lock:  # closed and the queue dropped at once, as progress() sees it
            self._closed = True
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=True)
