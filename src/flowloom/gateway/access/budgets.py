"""Budgets: USD limits per UTC day or calendar month, checked in memory on each request.

A budget is held by a *scope*: one virtual key ("key:<id>") or one project
("project:<name>"). A scope's tracker knows what was spent in the current period —
``base`` (the database total plus this process's unflushed spend when it was last
loaded) plus ``local`` (settled here since) — and ``reserved``, the estimated input cost
of requests admitted but not yet settled. A request is admitted while
``base + local + reserved < budget``; it then reserves its estimate. So within one
process, spend exceeds a budget by at most the cost of the requests in flight when it
was reached, beyond their estimates (with exact estimates: by less than one request).
This is one process's view (it sees the others' spend as of its last refresh, every few
seconds); Access also leases every budget from the counters shared with the other
processes (quota.py), which keeps the same bound for all of them together.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime

from flowloom.gateway.access.records import Period

__all__ = ["BudgetTracker", "Calendar", "day_of", "period_bounds"]


def day_of(moment: float) -> str:
    """The UTC day 'YYYY-MM-DD' of a POSIX timestamp."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def period_bounds(period: Period, moment: float) -> tuple[str, float]:
    """The first day ('YYYY-MM-DD') of the period holding `moment`, and its end (POSIX)."""
    now = datetime.fromtimestamp(moment, UTC)
    if period == "day":
        start = date(now.year, now.month, now.day)
        end = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86_400
    else:
        start = date(now.year, now.month, 1)
        days = calendar.monthrange(now.year, now.month)[1]
        end = datetime(now.year, now.month, 1, tzinfo=UTC).timestamp() + days * 86_400
    return start.isoformat(), end


class Calendar:
    """day_of and period_bounds memoised per UTC day: the hot path asks them per request."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        self._bounds: dict[tuple[Period, int], tuple[str, float]] = {}

    def day(self, moment: float) -> str:
        number = int(moment // 86_400)
        found = self._days.get(number)
        if found is None:
            if len(self._days) > 64:
                self._days.clear()
            found = self._days[number] = day_of(moment)
        return found

    def bounds(self, period: Period, moment: float) -> tuple[str, float]:
        key = (period, int(moment // 86_400))
        found = self._bounds.get(key)
        if found is None:
            if len(self._bounds) > 64:
                self._bounds.clear()
            found = self._bounds[key] = period_bounds(period, moment)
        return found


@dataclass
class BudgetTracker:
    """What one scope spent in its current period, and what is reserved against it."""

    period_start: str
    base: float = 0.0
    local: float = 0.0
    reserved: float = 0.0
    last_used: float = 0.0

    @property
    def spent(self) -> float:
        return self.base + self.local
