"""The circuit breaker of one target: stop sending calls to a target that keeps failing.

closed → open after N consecutive failures or a failure rate over a time window;
open → half-open after a cool-down; half-open lets a limited number of probes through;
a successful probe closes the circuit, a failed one opens it again. Time comes from the
router's injected clock, so tests drive it without sleeping.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Literal

from flowloom.gateway.routing.config import BreakerSettings

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]
_MAX_WINDOW: Final = 4096  # outcomes kept for the failure rate; bounded whatever the traffic


class CircuitBreaker:
    """State machine for one target; `allow` is called by plan, `record` by outcome."""

    __slots__ = ("_failures_in_window", "_probes", "_window", "consecutive", "opened_at", "state")

    def __init__(self) -> None:
        self.state: State = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self._window: deque[tuple[float, bool]] = deque(maxlen=_MAX_WINDOW)
        self._failures_in_window = 0
        self._probes: list[float] = []  # reservation times of probes in flight

    def current(self, now: float, s: BreakerSettings) -> State:
        """The state at `now` (an open circuit whose cool-down has passed is half-open)."""
        if self.state == "open" and now - self.opened_at >= s.cooldown_s:
            self.state = "half_open"
            self._probes.clear()
        return self.state

    def available(self, now: float, s: BreakerSettings) -> bool:
        """Whether a call may go to this target now, without reserving anything."""
        state = self.current(now, s)
        if state == "closed":
            return True
        if state == "open":
            return False
        self._expire(now, s)
        return len(self._probes) < s.half_open_probes

    def allow(self, now: float, s: BreakerSettings) -> bool:
        """Whether a call may go now; in half-open this reserves one of the probe slots.

        A reserved probe is released by the next outcome of the target, or expires after
        `probe_timeout_s` if the pipeline never tried it (it was later in a cascade).
        """
        if not self.available(now, s):
            return False
        if self.state == "half_open":
            self._probes.append(now)
        return True

    def retry_in(self, now: float, s: BreakerSettings) -> float:
        """Seconds until this target may be tried again (0 when it may be tried now)."""
        state = self.current(now, s)
        if state == "open":
            return max(0.0, self.opened_at + s.cooldown_s - now)
        if state == "half_open" and not self.available(now, s):
            return max(0.0, min(self._probes) + s.probe_timeout_s - now)
        return 0.0

    def record(self, now: float, ok: bool, s: BreakerSettings) -> None:
        """Feed one outcome that says something about the target's health."""
        state = self.current(now, s)
        if state == "half_open":
            if self._probes:
                self._probes.pop(0)
            if ok:
                self._close()
            else:
                self._open(now)
            return
        if state == "open":
            return  # a late answer from before the circuit opened changes nothing
        self._push(now, ok, s)
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.consecutive >= s.consecutive_failures:
            self._open(now)
            return
        total = len(self._window)
        if total >= s.min_requests and self._failures_in_window / total >= s.failure_rate:
            self._open(now)

    def release(self) -> None:
        """An outcome that says nothing about health (a 429, a 4xx): free a probe slot."""
        if self._probes:
            self._probes.pop(0)

    def _push(self, now: float, ok: bool, s: BreakerSettings) -> None:
        window = self._window
        cutoff = now - s.window_s
        while window and window[0][0] < cutoff:
            if not window.popleft()[1]:
                self._failures_in_window -= 1
        if len(window) == window.maxlen and not window[0][1]:
            self._failures_in_window -= 1
        window.append((now, ok))
        if not ok:
            self._failures_in_window += 1

    def _expire(self, now: float, s: BreakerSettings) -> None:
        if self._probes and now - self._probes[0] >= s.probe_timeout_s:
            self._probes = [t for t in self._probes if now - t < s.probe_timeout_s]

    def _open(self, now: float) -> None:
        self.state = "open"
        self.opened_at = now
        self.consecutive = 0
        self._probes.clear()
        self._window.clear()
        self._failures_in_window = 0

    def _close(self) -> None:
        self.state = "closed"
        self.consecutive = 0
        self._probes.clear()
        self._window.clear()
        self._failures_in_window = 0
