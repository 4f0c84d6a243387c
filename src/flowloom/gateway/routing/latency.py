"""Measured latency of one target: an EWMA and the median of recent calls.

Updated by `Router.outcome` (successful calls only) and read by the latency strategy; the
summary is computed when a sample arrives so that planning only reads one float.
"""

from __future__ import annotations

from collections import deque

from flowloom.gateway.routing.config import LatencySettings

__all__ = ["LatencyTracker"]


class LatencyTracker:
    """EWMA and recent-p50 of one target's latency in seconds; `score` is None until measured."""

    __slots__ = ("_recent", "ewma", "p50", "samples")

    def __init__(self, window: int) -> None:
        self.ewma: float | None = None
        self.p50: float | None = None
        self.samples = 0
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, latency_s: float, s: LatencySettings) -> None:
        """Fold one measured latency into both summaries."""
        if latency_s < 0 or latency_s != latency_s:  # negative or NaN: not a measurement
            return
        self.samples += 1
        self.ewma = (
            latency_s if self.ewma is None else (s.alpha * latency_s + (1.0 - s.alpha) * self.ewma)
        )
        if self._recent.maxlen != s.window:
            self._recent = deque(self._recent, maxlen=s.window)
        self._recent.append(latency_s)
        ordered = sorted(self._recent)
        n = len(ordered)
        mid = n // 2
        self.p50 = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0

    def score(self, s: LatencySettings) -> float | None:
        """The figure the latency strategy sorts by, per the configured metric."""
        return self.ewma if s.metric == "ewma" else self.p50
