"""Report PDFs worth archiving: PDF/A-3b, tagged, the assessment embedded, honest layout.

Every check reads the real PDF: pypdfium2 renders each page and extracts its text and
character boxes, the embedded files are taken out with it, and the XMP metadata and
the catalogue are read from the file's (inflated) streams. The layout checks compare
the words of the HTML tables with the words of the PDF: a word broken across lines
("unlinke d") is missing from the PDF's words. Machine tokens (hashes, e-mail
addresses, marked ``token`` in the HTML) are the only text allowed to break.
"""

from __future__ import annotations

import ctypes
import html
import importlib
import json
import logging
import re
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from flowloom.compliance.model import Assessment, Finding
from flowloom.compliance.reports import charts
from flowloom.compliance.reports import json as json_report
from flowloom.compliance.reports.html import render_html
from flowloom.compliance.reports.pdf import (
    ASSESSMENT_ATTACHMENT,
    STATEMENT_ATTACHMENT,
    render_pdf,
)
from flowloom.compliance.reports.templating import is_token, tokens
from tests.compliance.test_reports import _real_assessment, make_assessment, pdf_to_pngs
from tests.conftest import in_ci

STATEMENT = b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}\n'
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"


GENERATOR = "山田太郎"
"""A Japanese name: the generator of the hostile report (its approvers include Chinese)."""


@dataclass(frozen=True)
class Rendered:
    assessment: Assessment
    html: str
    pdf: bytes
    logged: tuple[str, ...] = ()
    """What WeasyPrint warned about while rendering (a missing glyph, for one)."""


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def hostile() -> Rendered:
    """40 commits of unicode names (Chinese and Japanese among them), hostile titles and
    long text, with a statement."""
    assessment = make_assessment(
        40, generated_by=f"{GENERATOR} (authenticated by the FlowLoom server)"
    )
    handler = _Logged()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(handler)
    try:
        pdf = render_pdf(assessment, statement=STATEMENT)
    finally:
        logger.removeHandler(handler)
    return Rendered(assessment, render_html(assessment), pdf, tuple(handler.messages))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Part 11 assessed by the real checks (partly automated controls, real notes)."""
    assess_module = importlib.import_module("flowloom.compliance.assess")
    assessment = _real_assessment(assess_module, tmp_path_factory.mktemp("real"))
    return Rendered(assessment, render_html(assessment), render_pdf(assessment))


# -- reading the PDF -------------------------------------------------------------------


def pages_text(data: bytes) -> list[str]:
    """Each page's text; a line broken after a hyphen (pdfium marks it U+FFFE) or a slash
    joined again: those are the line-break opportunities of Unicode (UAX #14), where
    breaking is ordinary typesetting; breaking inside a word is not.
    """
    document = pdfium.PdfDocument(data)
    try:
        pages = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()
    return [re.sub("/\r?\n", "/", re.sub("\ufffe\\s*|-\r?\n", "-", page)) for page in pages]


def squash(text: str) -> str:
    """Whitespace collapsed."""
    return " ".join(text.split())


def inflated_streams(data: bytes) -> bytes:
    """Every Flate stream of the file, inflated (object streams hold the catalogue)."""
    found = []
    for match in re.finditer(rb"<<((?:(?!>>\s*stream).)*?)>>\s*stream\r?\n", data, re.S):
        if b"/FlateDecode" in match.group(1):
            try:
                found.append(zlib.decompressobj().decompress(data[match.end() :]))
            except zlib.error:
                continue
    return b"\n".join(found)


def xmp(data: bytes) -> ElementTree.Element:
    """The document's XMP metadata packet, parsed."""
    streams = inflated_streams(data)
    start = streams.index(b"<x:xmpmeta")
    end = streams.index(b"</x:xmpmeta>", start) + len(b"</x:xmpmeta>")
    return ElementTree.fromstring(streams[start:end])


def overlapping_characters(data: bytes) -> list[tuple[int, str, str]]:
    """Pairs of characters whose boxes overlap by more than a quarter (ligatures aside)."""
    document = pdfium.PdfDocument(data)
    found: list[tuple[int, str, str]] = []
    try:
        for number in range(len(document)):
            textpage = document[number].get_textpage()
            boxes = []
            for i in range(textpage.count_chars()):
                char = textpage.get_text_range(i, 1)
                left, bottom, right, top = textpage.get_charbox(i)
                if char.strip() and right - left > 0.5 and top - bottom > 0.5:
                    boxes.append((left, bottom, right, top, char))
            grid: dict[tuple[int, int], list[int]] = {}
            for k, (left, bottom, right, top, _) in enumerate(boxes):
                for gx in range(int(left // 20), int(right // 20) + 1):
                    for gy in range(int(bottom // 20), int(top // 20) + 1):
                        grid.setdefault((gx, gy), []).append(k)
            seen: set[tuple[int, int]] = set()
            for cell in grid.values():
                for x, i in enumerate(cell):
                    for j in cell[x + 1 :]:
                        a, b = boxes[i], boxes[j]
                        if (i, j) in seen or a[:4] == b[:4]:  # a ligature: one glyph
                            continue
                        seen.add((i, j))
                        width = min(a[2], b[2]) - max(a[0], b[0])
                        height = min(a[3], b[3]) - max(a[1], b[1])
                        smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
                        if width > 0 and height > 0 and width * height > 0.25 * smaller:
                            found.append((number + 1, a[4], b[4]))
    finally:
        document.close()
    return found


class TableWords(HTMLParser):
    """The words of the cells of every table of one class; tokens are left out."""

    def __init__(self, table_class: str) -> None:
        super().__init__()
        self.table_class = table_class
        self.inside = False
        self.stack: list[tuple[str, bool]] = []
        self.cells: list[str] = []
        self.current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table" and self.table_class in classes:
            self.inside = True
        if not self.inside:
            return
        self.stack.append((tag, "token" in classes))
        if tag in ("td", "th"):
            self.current = []
        elif tag in ("br", "li", "ul", "p", "div") and self.current is not None:
            self.current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self.inside:
            return
        while self.stack:
            name, _ = self.stack.pop()
            if name == tag:
                break
        if tag in ("td", "th") and self.current is not None:
            self.cells.append("".join(self.current))
            self.current = None
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.current is not None:
            token = any(is_token for _, is_token in self.stack)
            self.current.append("\0" if token else data)

    def words(self) -> list[str]:
        return [w for cell in self.cells for w in cell.split() if "\0" not in w]


def split_words(rendered: Rendered, table_class: str) -> list[str]:
    parser = TableWords(table_class)
    parser.feed(rendered.html)
    expected = parser.words()
    assert expected, f"no table of class {table_class}"
    printed = {w for page in pages_text(rendered.pdf) for w in page.split()}
    return sorted({w for w in expected if w not in printed})


# -- PDF/A, tags, attachments ----------------------------------------------------------


def test_pdf_a_3b_is_identified_in_the_xmp_metadata(hostile: Rendered) -> None:
    assert hostile.pdf.startswith(b"%PDF-1.7")
    description = next(
        d for d in xmp(hostile.pdf).iter(f"{RDF}Description") if f"{PDFAID}part" in d.attrib
    )
    assert description.attrib[f"{PDFAID}part"] == "3"
    assert description.attrib[f"{PDFAID}conformance"] == "B"
    text = ElementTree.tostring(xmp(hostile.pdf), encoding="unicode")
    assert "Evidence for SOX IT general controls" in text  # dc:title
    dates = [
        e.text for e in xmp(hostile.pdf).iter() if e.tag.endswith(("CreateDate", "ModifyDate"))
    ]
    assert dates == ["2026-11-22T06:00:00Z"] * 2  # the assessment's time, to the second
    streams = inflated_streams(hostile.pdf)
    assert b"/OutputIntents" in streams and b"/GTS_PDFA1" in streams  # sRGB output intent


def test_the_pdf_is_tagged_for_accessibility(hostile: Rendered) -> None:
    document = pdfium.PdfDocument(hostile.pdf)
    try:
        assert pdfium.raw.FPDFCatalog_IsTagged(document.raw)
    finally:
        document.close()
    streams = inflated_streams(hostile.pdf)
    assert re.search(rb"/MarkInfo\s*<<\s*/Marked true", streams)
    assert b"/StructTreeRoot" in streams and b"/Lang (en)" in streams
    for role in (b"/H1", b"/H2", b"/Table", b"/TH", b"/TD"):
        assert b"/S " + role in streams or b"/S" + role in streams, role


def test_the_assessment_and_its_statement_are_embedded(hostile: Rendered) -> None:
    document = pdfium.PdfDocument(hostile.pdf)
    try:
        found = {}
        for i in range(document.count_attachments()):
            attachment = document.get_attachment(i)
            found[attachment.get_name()] = (
                bytes(attachment.get_data()),
                attachment.get_subtype(),
            )
    finally:
        document.close()
    assert list(found) == [ASSESSMENT_ATTACHMENT, STATEMENT_ATTACHMENT]
    data, subtype = found[ASSESSMENT_ATTACHMENT]
    assert data == json_report.to_bytes(hostile.assessment) and subtype == "application/json"
    assert Assessment.from_json(json.loads(data)) == hostile.assessment
    assert found[STATEMENT_ATTACHMENT][0] == STATEMENT
    streams = inflated_streams(hostile.pdf)
    # PDF/A-3 associated files: each listed once in the catalogue's /AF, with its relation.
    assert re.findall(rb"/AFRelationship\s*/(\w+)", streams) == [b"Source", b"Supplement"]
    (listed,) = re.findall(rb"/AF\s*\[([^\]]*)\]", streams)
    references = re.findall(rb"\d+ 0 R", listed)
    assert len(references) == 2 == len(set(references))


def test_without_a_statement_only_the_assessment_is_embedded() -> None:
    assessment = make_assessment(3)
    data = render_pdf(assessment)
    assert data == render_pdf(assessment)  # dates pinned: the same bytes every time
    document = pdfium.PdfDocument(data)
    try:
        names = [document.get_attachment(i).get_name() for i in range(document.count_attachments())]
    finally:
        document.close()
    assert names == [ASSESSMENT_ATTACHMENT]


def _cjk_font_installed() -> bool:
    try:
        done = subprocess.run(["fc-list", "-q", ":lang=ja"], capture_output=True, timeout=60)
    except OSError:
        return False
    return done.returncode == 0


def test_cjk_names_are_drawn_with_real_glyphs(hostile: Rendered) -> None:
    """PDF/A forbids .notdef: a CJK name must be drawn with a font that has it (Noto CJK,
    installed by `make test`), and read back from the PDF."""
    if not _cjk_font_installed():
        message = "no CJK font: apt-get install fonts-noto-cjk (docs/reports.md)"
        if in_ci():
            pytest.fail(f"{message}; CI must render CJK names", pytrace=False)
        pytest.skip(message)
    assert not [m for m in hostile.logged if ".notdef" in m], hostile.logged
    text = squash(" ".join(pages_text(hostile.pdf)))
    assert f"Generated by {GENERATOR}" in text and "李小龙" in text
    fonts: dict[str, set[str]] = {}
    document = pdfium.PdfDocument(hostile.pdf)
    try:
        for number in range(len(document)):
            page = document[number].get_textpage()
            for i in range(page.count_chars()):
                char = chr(pdfium.raw.FPDFText_GetUnicode(page.raw, i))
                if "\u2e80" <= char <= "\u9fff":
                    name = ctypes.create_string_buffer(256)
                    flags = ctypes.c_int()
                    pdfium.raw.FPDFText_GetFontInfo(page.raw, i, name, 256, ctypes.byref(flags))
                    fonts.setdefault(char, set()).add(name.value.decode())
    finally:
        document.close()
    assert set(GENERATOR) | set("李小龙") <= set(fonts), fonts
    # Each drawn with a CJK font (DejaVu has none of these glyphs: it would be .notdef).
    assert all(all("CJK" in f for f in used) for used in fonts.values()), fonts


def test_the_documented_font_step_is_what_make_test_and_the_image_install() -> None:
    from tests.compliance.test_signed_reports import DOCS, doc_block

    install, check = doc_block("sh", "fonts-noto-cjk").strip().splitlines()
    packages = install.split("apt-get install ", 1)[1].split()
    assert packages == ["fonts-noto-cjk", "libharfbuzz-subset0"]
    root = DOCS.parents[1]
    recipe = (root / "Makefile").read_text().split("\nfonts:", 1)[1].split("\n\n", 1)[0]
    assert "apt-get install -y -qq fonts-noto-cjk libharfbuzz-subset0 " in recipe
    image = (root / "deploy" / "Dockerfile").read_text()
    assert all(f" {p}" in image for p in packages)
    if _cjk_font_installed():
        done = subprocess.run(["bash", "-euc", check], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "a CJK font is installed" in done.stdout


def test_every_page_renders(hostile: Rendered, tmp_path: Path) -> None:
    pngs = pdf_to_pngs(hostile.pdf, tmp_path / "pages")
    assert len(pngs) == len(pages_text(hostile.pdf)) > 4


# -- layout ----------------------------------------------------------------------------


def test_no_word_of_the_population_table_is_split(hostile: Rendered, real: Rendered) -> None:
    assert split_words(hostile, "population") == []
    # The defects seen before: narrow columns broke these words.
    printed = " ".join(pages_text(hostile.pdf)).split()
    for word in ("unlinked", "flagged:", "self-approved", "unlinked-commit", "Severity"):
        assert word in printed, word


@pytest.mark.parametrize("table", ["controls", "findings", "exceptions", "trail", "outcomes"])
def test_no_word_of_any_other_table_is_split(hostile: Rendered, real: Rendered, table: str) -> None:
    assert split_words(hostile, table) == []
    if table not in ("trail", "findings", "exceptions"):
        assert split_words(real, table) == []


def test_no_text_overlaps(hostile: Rendered, real: Rendered) -> None:
    assert overlapping_characters(hostile.pdf) == []
    assert overlapping_characters(real.pdf) == []


def test_the_running_header_is_in_the_margin_of_every_page_only(hostile: Rendered) -> None:
    pages = pages_text(hostile.pdf)
    head = squash("Evidence for SOX IT general controls: change management · zahlungsverkehr-ü ·")
    for number, text in enumerate(pages, 1):
        assert squash(text).count(head) == 1, f"page {number}"
    first = squash(pages[0])
    assert first.count("Evidence for SOX IT general controls") == 2  # the header and the h1


def test_no_heading_is_stranded_at_the_bottom_of_a_page(hostile: Rendered, real: Rendered) -> None:
    for rendered in (hostile, real):
        headings = [
            squash(html.unescape(re.sub(r"<[^>]+>", "", h)))
            for h in re.findall(r"<h[2-4][^>]*>(.*?)</h[2-4]>", rendered.html, re.S)
        ]
        header = re.search(r'<p class="running-header">(.*?)</p>', rendered.html, re.S)
        assert header is not None and headings
        running = squash(html.unescape(header.group(1)))
        pages = pages_text(rendered.pdf)
        for number, page in enumerate(pages, 1):
            body = squash(page).replace(f"Page {number} of {len(pages)}", "")
            body = body.replace(running, "").strip()
            assert body, f"page {number} is empty"
            for heading in headings:
                assert not body.endswith(heading), f"{heading!r} ends page {number}"


def test_each_note_is_printed_once(real: Rendered) -> None:
    """Each control's note, and the description of its automated part (which the note of a
    partly automated control quotes), is printed once; compared without whitespace, so
    where a line broke does not matter."""

    def bare(text: str) -> str:
        return "".join(text.split())

    text = bare(" ".join(pages_text(real.pdf)))
    controls = real.assessment.controls
    partly = [r for r in controls if r.control.automated and r.control.automated in r.note]
    assert partly, "the real Part 11 assessment has partly automated controls"
    for result in partly:
        described = bare(result.control.automated)
        expected = sum(bare(r.note).count(described) for r in controls) + sum(
            bare(r.control.requirement).count(described) for r in controls
        )
        assert text.count(described) == expected, result.control.id
    for note, count in Counter(bare(r.note) for r in controls if r.note).items():
        within = sum(bare(r.note).count(note) for r in controls) - count
        assert text.count(note) == count + within, note


# -- charts ----------------------------------------------------------------------------


def svgs(page: str) -> list[ElementTree.Element]:
    return [ElementTree.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def test_charts_are_well_formed_svg_with_text_alternatives(hostile: Rendered) -> None:
    found = svgs(hostile.html)
    assert len(found) == 3
    for svg in found:
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("role") == "img"
        title = svg.find("{http://www.w3.org/2000/svg}title")
        desc = svg.find("{http://www.w3.org/2000/svg}desc")
        assert title is not None and desc is not None and title.text and desc.text
        labelled = (svg.get("aria-labelledby") or "").split()
        assert labelled == [title.get("id"), desc.get("id")]
        assert f"{desc.text}." in hostile.html  # the same words printed beside it
    assert "39 of 40 commits linked to the ledger (98%), 1 unlinked (2%)" in hostile.html
    assert '<table class="chart-data">' in hostile.html  # the timeline's data as a table


def test_charts_are_drawn_in_the_pdf(hostile: Rendered) -> None:
    first = squash(" ".join(pages_text(hostile.pdf)[:3]))
    assert "linked 39 (98%)" in first and "unlinked 1 (2%)" in first  # SVG labels
    assert "Controls by status." in first and "overrides (1)" in first


def test_chart_counts_and_buckets() -> None:
    assessment = make_assessment(6)
    counted = charts.controls_chart(assessment.counts())
    assert (
        counted.summary == "6 controls: 2 pass, 2 flag, 1 manual, 0 not applicable, 1 not assessed"
    )
    weekly = charts.timeline_chart(assessment)  # 92 days: weeks
    assert weekly.title == "Overrides and exceptions per week"
    assert weekly.rows == (("2026-10-29", "1", "2"),)
    assert weekly.summary == "1 override and 2 exceptions in the period, counted per week"
    month = make_assessment(
        2,
        period_from="2026-11-01T00:00:00.000000Z",
        period_to="2026-12-01T00:00:00.000000Z",
        changes=(),
        exceptions=(
            Finding("x", "high", "w", "m", ts="2026-11-03T10:00:00.000000Z"),
            Finding("x", "info", "w", "a note is no exception", ts="2026-11-03T11:00:00Z"),
            Finding("x", "low", "w", "no time"),
        ),
    )
    daily = charts.timeline_chart(month)
    assert daily.title == "Overrides and exceptions per day"
    assert daily.rows == (("2026-11-03", "0", "1"),)
    assert "1 without a time in the period are not shown" in daily.summary
    year = make_assessment(
        2, period_from="2026-01-15T00:00:00.000000Z", period_to="2027-01-01T00:00:00.000000Z"
    )
    monthly = charts.timeline_chart(year)
    assert monthly.title == "Overrides and exceptions per month"
    assert monthly.rows == (("2026-11", "1", "2"),)
    empty = charts.linked_chart(make_assessment(1, changes=()))
    assert empty.summary == "no commits in the population"
    for chart in (counted, weekly, daily, monthly, empty):
        ElementTree.fromstring(chart.svg)


def test_tokens_break_only_machine_text() -> None:
    assert is_token("5f0c2a9e4b7d81c3a6e2f9d04b1c7a8e3d2f6b90")
    assert is_token("<lukasz@example.com>") and is_token("policy.protected_branches")
    assert not is_token("independently") and not is_token("unlinked-commit")
    assert not is_token("release/*") and not is_token("Ångström")
    marked = str(tokens("approved by <zoe@example.com> & 5f0c2a9e4b7d81c3"))
    assert marked == (
        'approved by <span class="token">&lt;zoe@example.com&gt;</span> &amp; '
        '<span class="token">5f0c2a9e4b7d81c3</span>'
    )
