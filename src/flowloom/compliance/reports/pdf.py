"""The PDF report: the HTML report laid out for print by WeasyPrint.

The PDF comes from the very HTML `flowloom.compliance.reports.html` renders, so the two
never disagree. WeasyPrint is given a fetcher that refuses every URL except inline
`data:` ones: a report is rendered from the assessment alone, never from the network
or the local disk, whatever a commit message might try to reference.

Same input, same bytes: the PDF's dates come from the assessment's `generated_at`
(via the page's dcterms meta tags), and font subsetting is pinned to that moment
through SOURCE_DATE_EPOCH (fontTools otherwise stamps the current time into each
embedded font). The variable is set only while rendering, and only when the caller
has not set it already.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowloom.compliance.model import Assessment
from flowloom.compliance.reports.atomic import write_atomic
from flowloom.compliance.reports.html import MAX_TABLE_ROWS, render_html
from flowloom.errors import FlowLoomError

__all__ = ["ReportRenderError", "epoch_of", "html_to_pdf", "render", "render_pdf"]

_EPOCH_VAR = "SOURCE_DATE_EPOCH"


class ReportRenderError(FlowLoomError):
    """WeasyPrint could not lay out the report."""


def epoch_of(timestamp: str) -> int:
    """Seconds since 1970 of an event-form timestamp; 0 when it cannot be read."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp()))


@contextlib.contextmanager
def _pinned_epoch(epoch: int) -> Iterator[None]:
    if _EPOCH_VAR in os.environ:
        yield
        return
    os.environ[_EPOCH_VAR] = str(epoch)
    try:
        yield
    finally:
        os.environ.pop(_EPOCH_VAR, None)


def _offline_fetcher() -> Any:
    """A WeasyPrint URL fetcher that serves `data:` URLs and refuses everything else."""
    from weasyprint.urls import URLFetcher  # type: ignore[import-untyped]

    class OfflineFetcher(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            raise ValueError(f"reports are rendered offline; refused to fetch {url[:80]}")

    return OfflineFetcher(allowed_protocols=("data",), allow_redirects=False)


def html_to_pdf(html: str, *, epoch: int = 0) -> bytes:
    """Lay out `html` as a PDF with no network or file access."""
    import weasyprint  # type: ignore[import-untyped]

    try:
        with _pinned_epoch(epoch):
            document = weasyprint.HTML(
                string=html, base_url=None, url_fetcher=_offline_fetcher(), media_type="print"
            )
            data = document.write_pdf()
    except (ValueError, OSError, RuntimeError) as exc:
        raise ReportRenderError(
            f"the PDF report could not be laid out: {exc}",
            hint="render the HTML report instead and report this problem",
        ) from exc
    if not isinstance(data, bytes):
        raise ReportRenderError("the PDF renderer returned no document")
    return data


def render_pdf(assessment: Assessment, *, max_rows: int = MAX_TABLE_ROWS) -> bytes:
    """The report as PDF bytes."""
    html = render_html(assessment, max_rows=max_rows)
    return html_to_pdf(html, epoch=epoch_of(assessment.generated_at))


def render(
    assessment: Assessment,
    out: Path,
    *,
    bundle_dir: Path | None = None,
    max_rows: int = MAX_TABLE_ROWS,
) -> Path:
    """Write the PDF report to `out`."""
    return write_atomic(out, render_pdf(assessment, max_rows=max_rows))
