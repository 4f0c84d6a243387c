"""BarChart: the geometry of a bar chart, computed on the server and drawn as inline SVG.

Charts are SVG in the HTML itself, so they show without JavaScript and print; each one
carries a title, a description and the same numbers as a table (screen readers and
people who would rather read get the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Bar", "BarChart", "bar_chart"]

_WIDTH = 640
_LABEL_W = 170
_VALUE_W = 90
_ROW_H = 22
_GAP = 6


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str
    """The value as text (e.g. "$1.23", "1,204")."""
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    """A horizontal bar chart: one row per label, the longest bar spans the plot."""

    id: str
    title: str
    unit: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    plot_width: int

    @property
    def empty(self) -> bool:
        return not self.bars


def bar_chart(
    chart_id: str,
    title: str,
    items: Iterable[tuple[str, float]],
    *,
    unit: str = "",
    money: bool = False,
    limit: int = 12,
) -> BarChart:
    """Lay out `items` (label, value) as bars, largest first unless `limit` is 0 (keep order)."""
    rows = list(items)
    if limit:
        rows = sorted(rows, key=lambda r: (-r[1], r[0]))[:limit]
    top = max((v for _, v in rows), default=0.0) or 1.0
    plot = _WIDTH - _LABEL_W - _VALUE_W
    bars = []
    for number, (label, value) in enumerate(rows):
        shown = f"${value:,.2f}" if money else f"{value:,.0f}"
        width = max(1.0, plot * value / top) if value > 0 else 0.0
        y = _GAP + number * (_ROW_H + _GAP)
        bars.append(Bar(label, value, shown, float(_LABEL_W), float(y), round(width, 1), _ROW_H))
    height = _GAP + len(bars) * (_ROW_H + _GAP)
    return BarChart(chart_id, title, unit, tuple(bars), _WIDTH, height, _LABEL_W, plot)
