"""Failed-login throttling: when too many recent failures lock an account or an address.

Failures are rows in the database (the Directory keeps them), so every server process
sees the same count. This module only decides from the failure times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowloom.errors import AuthError

__all__ = ["LoginThrottledError", "ThrottlePolicy"]


class LoginThrottledError(AuthError):
    """Sign-in refused because of recent failures; the server sends Retry-After."""

    def __init__(self, message: str, *, hint: str, until: datetime, retry_after: int) -> None:
        super().__init__(message, hint=hint)
        self.until = until
        """When sign-in becomes possible again."""
        self.retry_after = retry_after
        """Seconds until then, rounded up (the value for an HTTP Retry-After header)."""


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures, over how long, lock sign-in, and for how long."""

    max_failures: int = 5
    """Failures per account within `window` that lock it."""
    client_max_failures: int = 20
    """Failures from one client address within `window` (any accounts) that lock it out;
    higher than per account because many people may share one address."""
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    """How long after the last counted failure a lock lasts."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.client_max_failures < 1:
            raise ValueError("throttle limits must be at least 1")
        if self.window <= timedelta(0) or self.lockout <= timedelta(0):
            raise ValueError("throttle durations must be positive")

    @property
    def lookback(self) -> timedelta:
        """How far back failures can matter for a lock that is still running."""
        return self.window + self.lockout

    def locked_until(
        self, failures: Sequence[datetime], now: datetime, *, limit: int
    ) -> datetime | None:
        """When a lock from `failures` (times, any order) ends, or None if not locked now.

        A lock starts when `limit` failures fall within one `window` and lasts `lockout`
        after the last of them.
        """
        times = sorted(t for t in failures if t <= now)
        until: datetime | None = None
        for i in range(limit - 1, len(times)):
            if times[i] - times[i - limit + 1] < self.window:
                end = times[i] + self.lockout
                if end > now and (until is None or end > until):
                    until = end
        return until
