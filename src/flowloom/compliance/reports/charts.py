"""Small inline SVG charts for the HTML and PDF report, each with its text alternative.

Three pictures a reader takes in faster than a table: controls by status, the share of
commits linked to the ledger, and overrides and exceptions over the period. The SVG is
written here by hand (a few rectangles and labels, no charting library), so it is the
same bytes for the same assessment and renders alike in a browser and in WeasyPrint.
Every chart carries a `<title>` and `<desc>` (``role="img"``), and the template prints
its `summary` and, where there is one, its data table beside it, so nothing is shown
only as a picture. All text is XML-escaped: labels come from the assessment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from flowloom.compliance.model import CONTROL_STATUSES, Assessment

__all__ = ["Chart", "charts", "controls_chart", "linked_chart", "timeline_chart"]

_WIDTH: Final = 640
_FONT: Final = "DejaVu Sans, Arial, sans-serif"
_COLOURS: Final[Mapping[str, str]] = {
    "pass": "#1a7f37",
    "flag": "#bc4c00",
    "manual": "#8250df",
    "not_applicable": "#8c959f",
    "not_assessed": "#a40e26",
    "linked": "#1a7f37",
    "unlinked": "#bc4c00",
    "overrides": "#8250df",
    "exceptions": "#bc4c00",
}


@dataclass(frozen=True)
class Chart:
    """One chart: its SVG markup and what a reader who cannot see it is given instead."""

    id: str
    title: str
    summary: str
    svg: str
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _svg(chart_id: str, title: str, summary: str, height: int, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" role="img" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" font-family={quoteattr(_FONT)} '
        f'font-size="14">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(summary)}</desc>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = "#1b1f24") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">{escape(text)}</text>'
    )


def _rect(x: float, y: float, width: float, height: float, fill: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{fill}"/>'
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def controls_chart(counts: Mapping[str, int]) -> Chart:
    """Horizontal bars: how many controls have each of the five statuses."""
    total = sum(counts.values())
    summary = f"{total} controls: " + ", ".join(
        f"{counts.get(s, 0)} {s.replace('_', ' ')}" for s in CONTROL_STATUSES
    )
    label_width, bar_height, gap = 130, 18, 8
    most = max(counts.values(), default=0) or 1
    span = _WIDTH - label_width - 60
    body: list[str] = []
    for i, status in enumerate(CONTROL_STATUSES):
        count = counts.get(status, 0)
        y = 6 + i * (bar_height + gap)
        length = span * count / most
        body.append(_text(label_width - 8, y + 13, status.replace("_", " "), anchor="end"))
        body.append(_rect(label_width, y, max(length, 1.0), bar_height, _COLOURS[status]))
        body.append(_text(label_width + length + 6, y + 13, str(count)))
    height = 6 + len(CONTROL_STATUSES) * (bar_height + gap)
    title = "Controls by status"
    return Chart(
        "chart-controls", title, summary, _svg("chart-controls", title, summary, height, body)
    )


def linked_chart(assessment: Assessment) -> Chart:
    """One bar split in two: commits linked to the ledger and commits not linked."""
    total = len(assessment.changes)
    linked = sum(c.link is not None for c in assessment.changes)
    unlinked = total - linked
    summary = (
        f"{linked} of {total} commits linked to the ledger ({_percent(linked, total)}), "
        f"{unlinked} unlinked ({_percent(unlinked, total)})"
        if total
        else "no commits in the population"
    )
    body: list[str] = []
    x, width = 10.0, _WIDTH - 20
    if total:
        first = width * linked / total
        body.append(_rect(x, 6, first, 26, _COLOURS["linked"]))
        body.append(_rect(x + first, 6, width - first, 26, _COLOURS["unlinked"]))
    else:
        body.append(_rect(x, 6, width, 26, "#eaeef2"))
    body.append(_rect(x, 44, 12, 12, _COLOURS["linked"]))
    body.append(_text(x + 18, 55, f"linked {linked} ({_percent(linked, total)})"))
    body.append(_rect(x + 260, 44, 12, 12, _COLOURS["unlinked"]))
    body.append(_text(x + 278, 55, f"unlinked {unlinked} ({_percent(unlinked, total)})"))
    title = "Commits linked to the ledger"
    return Chart("chart-linked", title, summary, _svg("chart-linked", title, summary, 64, body))


def _moment(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    try:
        value = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _buckets(start: datetime, end: datetime) -> tuple[list[datetime], str]:
    """Bucket starts over [start, end): days up to a month, weeks up to half a year, months."""
    days = (end - start).days
    if days <= 31:
        step, unit = timedelta(days=1), "day"
    elif days <= 183:
        step, unit = timedelta(days=7), "week"
    else:
        starts, moment = [], start
        while moment < end:
            starts.append(moment)
            year, month = divmod(moment.month, 12)
            moment = moment.replace(year=moment.year + year, month=month + 1, day=1)
        return starts, "month"
    starts, moment = [], start
    while moment < end:
        starts.append(moment)
        moment += step
    return starts, unit


def timeline_chart(assessment: Assessment) -> Chart:
    """Grouped bars per day, week or month: overrides and exceptions in the period."""
    start, end = _moment(assessment.period_from), _moment(assessment.period_to)
    if start is None or end is None or end <= start:
        starts: list[datetime] = []
        unit = "period"
    else:
        starts, unit = _buckets(start, end)
    overrides = [0] * len(starts)
    exceptions = [0] * len(starts)
    outside = 0

    def place(timestamp: str | None, series: list[int]) -> None:
        nonlocal outside
        moment = _moment(timestamp)
        index = next(
            (i for i in range(len(starts) - 1, -1, -1) if moment and moment >= starts[i]), None
        )
        if moment is None or index is None or (end is not None and moment >= end):
            outside += 1
            return
        series[index] += 1

    for change in assessment.changes:
        if change.override is not None:
            place(change.committed_at, overrides)
    for finding in assessment.exceptions:
        if finding.severity != "info":
            place(finding.ts, exceptions)
    labels = [s.strftime("%Y-%m" if unit == "month" else "%Y-%m-%d") for s in starts]
    summary = (
        f"{_count(sum(overrides), 'override')} and {_count(sum(exceptions), 'exception')} "
        f"in the period, counted per {unit}"
    )
    if outside:
        summary += f"; {outside} without a time in the period are not shown"
    peak = max([*overrides, *exceptions, 1])
    top, plot_height, left = 8, 110, 36
    slot = (_WIDTH - left - 10) / max(len(starts), 1)
    bar = max(min(slot * 0.4, 18.0), 1.0)
    body = [
        f'<line x1="{left}" y1="{top + plot_height}" x2="{_WIDTH - 10}" '
        f'y2="{top + plot_height}" stroke="#57606a" stroke-width="1"/>',
        _text(left - 6, top + 10, str(peak), anchor="end"),
        _text(left - 6, top + plot_height, "0", anchor="end"),
    ]
    every = max(1, math.ceil(100 / slot))  # a date label is about 85 units wide
    for i, label in enumerate(labels):
        x = left + i * slot + slot / 2
        for offset, value, series in (
            (-bar, overrides[i], "overrides"),
            (0, exceptions[i], "exceptions"),
        ):
            if value:
                length = plot_height * value / peak
                body.append(
                    _rect(x + offset, top + plot_height - length, bar, length, _COLOURS[series])
                )
        if i % every == 0:
            body.append(_text(x, top + plot_height + 16, label, anchor="middle"))
    legend = top + plot_height + 30
    body.append(_rect(left, legend, 12, 12, _COLOURS["overrides"]))
    body.append(_text(left + 18, legend + 11, f"overrides ({sum(overrides)})"))
    body.append(_rect(left + 200, legend, 12, 12, _COLOURS["exceptions"]))
    body.append(_text(left + 218, legend + 11, f"exceptions ({sum(exceptions)})"))
    title = f"Overrides and exceptions per {unit}"
    rows = tuple(
        (label, str(o), str(e))
        for label, o, e in zip(labels, overrides, exceptions, strict=True)
        if o or e
    )
    return Chart(
        "chart-timeline",
        title,
        summary,
        _svg("chart-timeline", title, summary, legend + 18, body),
        headers=(unit.capitalize() + " starting", "Overrides", "Exceptions"),
        rows=rows,
    )


def charts(assessment: Assessment) -> tuple[Chart, ...]:
    """The report's charts, in the order they are printed."""
    return (
        controls_chart(assessment.counts()),
        linked_chart(assessment),
        timeline_chart(assessment),
    )
