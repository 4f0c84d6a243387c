"""The PDF report: the HTML report laid out for print by WeasyPrint, as PDF/A-3b.

The PDF comes from the very HTML `flowloom.compliance.reports.html` renders, so the two
never disagree. It is written for archiving: PDF/A-3b (ISO 19005-3, identified in the
XMP metadata), tagged for accessibility (structure tree from the HTML's headings and
tables), with the assessment's JSON document embedded as an associated file
(``report.json``, AFRelationship ``Source``: the report is rendered from it) and, when
the caller has one, the signed statement over that JSON (``report.json.intoto.jsonl``,
``Supplement``). The PDF cannot carry a statement over itself (signing needs its final
bytes), so its own statement stays beside it; the embedded one lets the JSON taken out
of the PDF be checked on its own (`read_embedded` takes them out again, for
`flowloom report verify`). WeasyPrint is given a fetcher that refuses every URL except inline
`data:` ones: a report is rendered from the assessment alone, never from the network
or the local disk, whatever a commit message might try to reference.

Same input, same bytes: the PDF's dates come from the assessment's `generated_at`
(via the page's dcterms meta tags), and font subsetting is pinned to that moment
through SOURCE_DATE_EPOCH (fontTools otherwise stamps the current time into each
embedded font). The variable is set only while rendering, and only when the caller
has not set it already.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from flowloom.compliance.model import Assessment
from flowloom.compliance.reports import json as json_report
from flowloom.compliance.reports.atomic import write_atomic
from flowloom.compliance.reports.html import MAX_TABLE_ROWS, render_html
from flowloom.compliance.statement import STATEMENT_SUFFIX
from flowloom.errors import FlowLoomError, VerificationError

__all__ = [
    "ASSESSMENT_ATTACHMENT",
    "PDF_VARIANT",
    "STATEMENT_ATTACHMENT",
    "Embedded",
    "ReportRenderError",
    "embedded_files",
    "epoch_of",
    "html_to_pdf",
    "read_embedded",
    "render",
    "render_pdf",
]

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


@dataclass(frozen=True)
class Embedded:
    """A file embedded in the PDF as a PDF/A-3 associated file."""

    name: str
    data: bytes
    media_type: str
    description: str
    relationship: str = "Supplement"
    """ISO 32000-2 AFRelationship: Source, Data, Alternative, Supplement or Unspecified."""


ASSESSMENT_ATTACHMENT: Final = "report.json"
STATEMENT_ATTACHMENT: Final = "report.json" + STATEMENT_SUFFIX
PDF_VARIANT: Final = "pdf/a-3b"


def _attachment(item: Embedded, fetcher: Any, moment: datetime) -> Any:
    import weasyprint  # type: ignore[import-untyped]

    # A data: URL carries the media type, which WeasyPrint writes as the file's Subtype.
    url = f"data:{item.media_type};base64,{base64.b64encode(item.data).decode('ascii')}"
    return weasyprint.Attachment(
        url=url,
        url_fetcher=fetcher,
        name=item.name,
        description=item.description,
        created=moment,
        modified=moment,
        relationship=item.relationship,
    )


def _finish(document: Any, pdf: Any) -> None:
    """List each associated file once in the catalogue's /AF (WeasyPrint adds them twice)."""
    files = pdf.catalog.get("AF")
    if files:
        unique = list(dict.fromkeys(files))
        files.clear()
        files.extend(unique)


def html_to_pdf(html: str, *, epoch: int = 0, attachments: Sequence[Embedded] = ()) -> bytes:
    """Lay out `html` as a tagged PDF/A-3b with no network or file access."""
    import weasyprint

    moment = datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
    try:
        with _pinned_epoch(epoch):
            fetcher = _offline_fetcher()
            document = weasyprint.HTML(
                string=html, base_url=None, url_fetcher=fetcher, media_type="print"
            )
            data = document.write_pdf(
                finisher=_finish,
                pdf_variant=PDF_VARIANT,
                pdf_tags=True,
                attachments=[_attachment(a, fetcher, moment) for a in attachments],
            )
    except (ValueError, OSError, RuntimeError) as exc:
        raise ReportRenderError(
            f"the PDF report could not be laid out: {exc}",
            hint="render the HTML report instead and report this problem",
        ) from exc
    if not isinstance(data, bytes):
        raise ReportRenderError("the PDF renderer returned no document")
    return data


def embedded_files(assessment: Assessment, statement: bytes | None = None) -> list[Embedded]:
    """What a report PDF carries: the assessment's JSON and, when given, its statement."""
    files = [
        Embedded(
            ASSESSMENT_ATTACHMENT,
            json_report.to_bytes(assessment),
            "application/json",
            f"The assessment this report is rendered from ({json_report.SCHEMA})",
            relationship="Source",
        )
    ]
    if statement is not None:
        files.append(
            Embedded(
                STATEMENT_ATTACHMENT,
                statement,
                "application/jsonl",
                "Signed in-toto statement (DSSE envelope) over report.json",
            )
        )
    return files


_PDFIUM: Final = threading.Lock()
"""PDFium keeps process-wide state and is not thread-safe: one caller at a time (the
server verifies uploads in worker threads)."""


def read_embedded(data: bytes) -> dict[str, bytes]:
    """The files a PDF embeds, by name (what `flowloom report verify` compares).

    Raises VerificationError when the bytes are not a PDF PDFium can open, or when two
    embedded files have the same name (a reader could be shown either).
    """
    import pypdfium2  # type: ignore[import-untyped]

    found: dict[str, bytes] = {}
    with _PDFIUM:
        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            raise VerificationError(f"not a readable PDF: {exc}") from None
        try:
            for i in range(document.count_attachments()):
                attachment = document.get_attachment(i)
                name = attachment.get_name()
                if name in found:
                    raise VerificationError(f"it embeds two files named {name!r}")
                found[name] = bytes(attachment.get_data())
        except pypdfium2.PdfiumError as exc:
            raise VerificationError(f"its embedded files cannot be read: {exc}") from None
        finally:
            document.close()
    return found


def render_pdf(
    assessment: Assessment,
    *,
    max_rows: int = MAX_TABLE_ROWS,
    statement: bytes | None = None,
) -> bytes:
    """The report as PDF/A-3b bytes; `statement` is the signed statement over its JSON."""
    html = render_html(assessment, max_rows=max_rows)
    return html_to_pdf(
        html,
        epoch=epoch_of(assessment.generated_at),
        attachments=embedded_files(assessment, statement),
    )


def render(
    assessment: Assessment,
    out: Path,
    *,
    bundle_dir: Path | None = None,
    max_rows: int = MAX_TABLE_ROWS,
    statement: bytes | None = None,
) -> Path:
    """Write the PDF report to `out` (`statement`: the signed statement over report.json)."""
    return write_atomic(out, render_pdf(assessment, max_rows=max_rows, statement=statement))
