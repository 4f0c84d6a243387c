"""A password hasher that counts evaluations and holds each one until the test lets go.

It shows that sign-in attempts are counted before the slow hash: while some evaluations
are held, every other attempt must already have its answer (throttled), whatever the
timing; evaluations are counted, not timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from argon2 import PasswordHasher

__all__ = ["GatedHasher"]


class GatedHasher(PasswordHasher):
    """argon2id with a tiny cost; `verify` counts itself, then waits for `release`."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.evaluated = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.evaluated += 1
        self.release.wait(timeout=120)
        return super().verify(hash, password)

    def settle(self, answered: Callable[[], int], attempts: int, timeout: float = 60) -> None:
        """Wait (bounded) until each of `attempts` is answered or held in `verify`."""
        deadline = time.monotonic() + timeout
        while answered() + self.evaluated < attempts and time.monotonic() < deadline:
            time.sleep(0.01)
