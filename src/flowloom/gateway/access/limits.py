"""Rate limits: a sliding window of requests and tokens per virtual key, in process memory.

Each key has a window of the last ``window_s`` seconds (60) kept in slots of ``slot_s``
seconds (1), so memory per key is bounded (at most window_s/slot_s + 1 slots) whatever
the request rate, and a check costs a few comparisons. A slot is forgotten when its
*newest* entry is ``window_s`` old, so the window errs on the side of limiting: an entry
may be remembered up to one slot longer than exact, never shorter. Retry-After is the
time until enough slots are forgotten for the refused request to fit.

This window is one process's view; Access also counts every admission in the quotas
shared with the other gateway processes over the same database (quota.py), so N
processes together still grant a key its limit once.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Requests and tokens of one key over the last `window_s` seconds."""

    __slots__ = ("_slot_s", "_slots", "_window_s", "last_used", "requests", "tokens")

    def __init__(self, window_s: float = 60.0, slot_s: float = 1.0) -> None:
        self._window_s = window_s
        self._slot_s = slot_s
        # each slot: [slot start, newest entry time, requests, tokens]
        self._slots: deque[list[float]] = deque()
        self.requests = 0
        self.tokens = 0
        self.last_used = 0.0

    def _expire(self, now: float) -> None:
        slots = self._slots
        while slots and slots[0][1] + self._window_s <= now:
            gone = slots.popleft()
            self.requests -= int(gone[2])
            self.tokens -= int(gone[3])
        if not slots:
            self.requests = 0
            self.tokens = 0

    def retry_after(self, now: float, *, rpm: int | None, tpm: int | None, tokens: int) -> float:
        """Seconds until one more request of `tokens` fits; 0.0 when it fits now.

        A request larger than the whole tpm is counted as exactly tpm, so it is let
        through once the window is empty rather than refused forever.
        """
        self._expire(now)
        need_requests = self.requests + 1 - rpm if rpm is not None else 0
        need_tokens = self.tokens + min(tokens, tpm) - tpm if tpm is not None else 0
        if need_requests <= 0 and need_tokens <= 0:
            return 0.0
        freed_requests = 0
        freed_tokens = 0
        for slot in self._slots:
            freed_requests += int(slot[2])
            freed_tokens += int(slot[3])
            if freed_requests >= need_requests and freed_tokens >= need_tokens:
                return max(slot[1] + self._window_s - now, 0.001)
        return self._window_s  # not reachable with consistent counts; be safe

    def add(self, now: float, tokens: int) -> float:
        """Count one request of `tokens` now; returns the slot it was counted in."""
        start = now - (now % self._slot_s)
        slots = self._slots
        if slots and slots[-1][0] == start:
            slot = slots[-1]
            slot[1] = max(slot[1], now)
            slot[2] += 1
            slot[3] += tokens
        else:
            slots.append([start, now, 1, float(tokens)])
        self.requests += 1
        self.tokens += tokens
        self.last_used = now
        return start

    def adjust(self, slot_start: float, delta_tokens: int) -> None:
        """Correct the tokens counted in `slot_start` by `delta_tokens` (actual - estimate).

        When the slot has already left the window, only extra tokens are kept (in the
        newest slot); a refund for a forgotten slot has nothing left to refund.
        """
        if delta_tokens == 0:
            return
        for slot in reversed(self._slots):
            if slot[0] == slot_start:
                applied = max(int(slot[3]) + delta_tokens, 0) - int(slot[3])
                slot[3] += applied
                self.tokens += applied
                return
        if delta_tokens > 0 and self._slots:
            self._slots[-1][3] += delta_tokens
            self.tokens += delta_tokens

    @property
    def empty(self) -> bool:
        return not self._slots
