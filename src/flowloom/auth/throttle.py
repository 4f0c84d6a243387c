"""Sign-in throttling: when the next password may be tried for an account from an address.

Two limits, both on rows of the Directory's database so every server process sees the
same counts. Per (account, address), a few failures are free, then each further attempt
waits twice as long as the one before (exponential backoff): a person who mistypes waits
seconds, a guesser from one address gets a handful of guesses an hour. Per address, a
ceiling on failures over all accounts stops one address from trying many accounts.
Nothing is keyed on the account alone, so no one can lock a person out (an approver who
must sign, say) by failing on purpose from elsewhere.

Attempts are counted when they start, before the password is hashed (the Directory
reserves a row, then verifies), so parallel attempts cannot slip past the limits: at most
`max_failures` passwords are evaluated before the backoff starts. This module decides
from attempt times only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowloom.errors import AuthError

__all__ = ["LoginThrottledError", "ThrottlePolicy", "client_key"]


class LoginThrottledError(AuthError):
    """Sign-in refused because of recent failures; the server answers 429 + Retry-After."""

    def __init__(self, message: str, *, hint: str, until: datetime, retry_after: int) -> None:
        super().__init__(message, hint=hint)
        self.until = until
        """When sign-in becomes possible again."""
        self.retry_after = retry_after
        """Seconds until then, rounded up (the value for an HTTP Retry-After header)."""


def client_key(client: str) -> str:
    """What the throttle counts for address `client`: the address itself, except that an
    IPv6 address counts as its /64 (one host usually has the whole /64)."""
    text = str(client or "unknown")[:200]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return text


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures are free, how the backoff grows, and the per-address ceiling."""

    max_failures: int = 5
    """Failures per (account, address) within `window` before the backoff starts."""
    backoff: timedelta = timedelta(seconds=30)
    """The wait after the first failure past `max_failures`; each further one doubles it."""
    max_backoff: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(hours=1)
    """How long a failure counts towards its (account, address) backoff."""
    client_max_failures: int = 20
    """Failures from one address (any accounts) within `client_window`; higher than per
    account because many people may share one address."""
    client_window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.client_max_failures < 1:
            raise ValueError("throttle limits must be at least 1")
        durations = (self.backoff, self.max_backoff, self.window, self.client_window)
        if any(d <= timedelta(0) for d in durations):
            raise ValueError("throttle durations must be positive")

    @property
    def lookback(self) -> timedelta:
        """How far back an attempt can still matter."""
        return max(self.window, self.client_window)

    def delay_after(self, failures: int) -> timedelta:
        """The wait after the latest of `failures` before another attempt may start."""
        if failures < self.max_failures:
            return timedelta(0)
        doublings = min(failures - self.max_failures, 32)
        grown: timedelta = self.backoff * (1 << doublings)
        return min(self.max_backoff, grown)

    def wait_until(
        self, pair: Sequence[datetime], client: Sequence[datetime], now: datetime
    ) -> datetime | None:
        """When the next attempt may start, or None if it may start now.

        `pair`: times of the failures (and attempts in flight) of this account from this
        address; `client`: those of this address for any account.
        """
        # Times after `now` count too: another process's clock may run a little ahead.
        ends: list[datetime] = []
        recent = [t for t in pair if t > now - self.window]
        if recent:
            end = max(recent) + self.delay_after(len(recent))
            if end > now:
                ends.append(end)
        near = sorted(t for t in client if t > now - self.client_window)
        if len(near) >= self.client_max_failures:
            # Free again when enough of them have left the window.
            ends.append(near[len(near) - self.client_max_failures] + self.client_window)
        return max(ends) if ends else None
