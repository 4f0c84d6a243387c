"""The HTML report: the one template both the browser view and the PDF are made from.

The page is self-contained (stylesheet inlined, no scripts, no images or external
links to fetch: the charts are inline SVG), accessible (one h1, nested headings,
captions and scoped table headers, `lang`, a text alternative beside every chart) and
carries print rules (running header, page numbers, repeated table headers, landscape
pages for wide tables) that WeasyPrint uses for the PDF. Its text depends only on the
assessment, so the same assessment always gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from flowloom.compliance.model import CHECK_STATUSES, Assessment
from flowloom.compliance.reports import certificate, charts
from flowloom.compliance.reports.atomic import atomic_text
from flowloom.compliance.reports.templating import environment, stylesheet

__all__ = ["MAX_TABLE_ROWS", "auditmeta_html", "context", "render", "render_html"]

MAX_TABLE_ROWS: Final = 5000
"""Population rows shown in the HTML/PDF table; the CSV and JSON always hold all of them."""


def context(assessment: Assessment, *, max_rows: int = MAX_TABLE_ROWS) -> dict[str, Any]:
    """The template's variables."""
    return {
        "a": assessment,
        "doc": certificate.document(assessment),
        "css": stylesheet(),
        "counts": assessment.counts(),
        "check_counts": {s: sum(c.status == s for c in assessment.checks) for s in CHECK_STATUSES},
        "checks_by_id": {c.check: c for c in assessment.checks},
        "exceptions": [f for f in assessment.exceptions if f.severity != "info"],
        "notes": [f for f in assessment.exceptions if f.severity == "info"],
        "rows": assessment.changes[:max_rows],
        "total_changes": len(assessment.changes),
        "period": certificate.period_text(assessment),
        "charts": charts.charts(assessment),
    }


def render_html(assessment: Assessment, *, max_rows: int = MAX_TABLE_ROWS) -> str:
    """The report as one HTML string (what the PDF renderer lays out)."""
    template = environment().get_template("report.html.j2")
    return template.render(context(assessment, max_rows=max_rows))


def auditmeta_html(assessment: Assessment) -> str:
    """The report's scope, completeness and sampling sections alone, as HTML: the web
    framework page shows them from the very template the report prints."""
    return environment().get_template("_auditmeta.html.j2").render(a=assessment)


def render(
    assessment: Assessment,
    out: Path,
    *,
    bundle_dir: Path | None = None,
    max_rows: int = MAX_TABLE_ROWS,
) -> Path:
    """Write the HTML report to `out`, streaming the template's output."""
    template = environment().get_template("report.html.j2")
    with atomic_text(out, newline="\n") as handle:
        for chunk in template.generate(context(assessment, max_rows=max_rows)):
            handle.write(chunk)
    return out
