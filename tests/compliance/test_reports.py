"""Report renderers: HTML, PDF, JSON, CSV, the chain-verification statement, evidence packs.

Assessments are built here by hand (several controls passing and flagged, unicode names,
long text, hostile commit messages, 600-commit populations); the last test renders an
assessment produced by the real checks when their entry point is present. PDFs are
checked for real: text extracted with pypdfium2 and every page rendered to PNG (kept
under the test's tmp path).
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib
import itertools
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

import flowloom
from flowloom.compliance.model import (
    DISCLAIMER,
    AnchorRow,
    ApprovalRow,
    Assessment,
    AuditTrailRow,
    ChangeRow,
    CheckResult,
    Control,
    ControlResult,
    Finding,
    LedgerSummary,
)
from flowloom.compliance.reports import FORMATS, RENDERERS, render
from flowloom.compliance.reports import certificate as chain
from flowloom.compliance.reports import csv as csv_reports
from flowloom.compliance.reports.evidence_pack import (
    MANIFEST_JSON,
    MANIFEST_SHA256,
    PackProblemError,
    verify_evidence_pack,
)
from flowloom.compliance.reports.html import render as html_render
from flowloom.compliance.reports.html import render_html
from flowloom.compliance.reports.pdf import html_to_pdf, render_pdf
from flowloom.errors import InputError
from flowloom.ledger.bundle import export_bundle
from flowloom.ledger.provenance import Trust
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import fill, make_ledger
from tests.support.loopback import LoopbackServer, Reply, Request

ROOT = Path(__file__).resolve().parents[2]
SELF_APPROVED = "5f0c2a9e4b7d81c3a6e2f9d04b1c7a8e3d2f6b90"
DIRECT_PUSH = "c0ffee1234567890abcdef1234567890abcdef12"
SCRIPT = "<script>alert('x')</script>"
LONG = "Rework the ledger verifier so that very long explanations wrap " * 12
PERIOD = ("2026-10-01T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z")
GENERATED = "2026-11-22T06:00:00.000000Z"
ROOT_B64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="  # base64 of 32 bytes 0xab
PEOPLE = [
    "Zoë Ångström <zoe@example.com>",
    "李小龙 <li@example.com>",
    "Renée O'Connor <renee@example.com>",
    "Łukasz Żółć <lukasz@example.com>",
    'Ana "Quotes", Comma <ana@example.com>',
]


def _controls() -> tuple[ControlResult, ...]:
    def control(
        cid: str, clause: str, title: str, checks: tuple[str, ...], manual: str = ""
    ) -> Control:
        return Control(
            framework="sox",
            id=cid,
            clause=clause,
            title=title,
            requirement=f"{title}: evidence is taken from the ledger and git. {LONG[:120]}",
            checks=checks,
            manual=manual,
            version="2026.1",
        )

    return (
        ControlResult(
            control("sox-cm-1", "ITGC CM-1", "Changes are approved independently", ("sod",)),
            "flag",
            ("sod",),
        ),
        ControlResult(
            control("sox-cm-2", "ITGC CM-2", "All changes are in the record", ("completeness",)),
            "flag",
            ("completeness",),
        ),
        ControlResult(
            control("sox-cm-3", "ITGC CM-3", "Changes are tested before deploy", ("tested",)),
            "pass",
            ("tested",),
        ),
        ControlResult(
            control("sox-cm-4", "ITGC CM-4", "Trail integrity", ("integrity",)),
            "pass",
            ("integrity",),
        ),
        ControlResult(
            control("sox-cm-5", "ITGC CM-5", "Retention is respected", ("retention",)),
            "not_assessed",
            ("retention",),
            note="retention not assessed: the check could not run",
            automated="not_assessed",
        ),
        ControlResult(
            control(
                "sox-cm-6",
                "ITGC CM-6",
                "Emergency changes follow a procedure",
                (),
                manual="Show the emergency change procedure and its training records.",
            ),
            "manual",
            (),
        ),
    )


def _checks(count: int) -> tuple[CheckResult, ...]:
    sod = (
        Finding(
            check="sod",
            severity="high",
            what="self-approved",
            message=f"{SELF_APPROVED[:12]} was approved by its own author 李小龙",
            commit=SELF_APPROVED,
            entry=17,
            actor="u-li",
            ts="2026-11-03T10:00:00.000000Z",
            details={"approver": "u-li", "roles": ["author", "approver"]},
        ),
    )
    completeness = (
        Finding(
            check="completeness",
            severity="medium",
            what="unlinked-commit",
            message=f"direct push: {DIRECT_PUSH} {SCRIPT} is not linked in the ledger",
            commit=DIRECT_PUSH,
            actor="=cmd|' /C calc'!A0",
            ts="2026-11-04T09:30:00.000000Z",
        ),
    )
    return (
        CheckResult("sod", "Segregation of duties", "flag", "1 of N self-approved", sod, count),
        CheckResult(
            "completeness",
            "Completeness",
            "flag",
            "1 direct push",
            completeness,
            count,
            evidence_commits=(DIRECT_PUSH,),
        ),
        CheckResult(
            "tested",
            "Tested before deploy",
            "pass",
            "all changes had a passing CI result",
            (),
            count,
            evidence_entries=tuple(range(0, 300, 3)),
        ),
        CheckResult("integrity", "Trail integrity", "pass", "the chain verified", (), 1200),
        CheckResult(
            "retention",
            "Retention",
            "not_assessed",
            "the check could not run",
            limits="cannot see purges done outside FlowLoom",
            reason="the check could not run: the retention settings could not be read",
        ),
    )


def _changes(count: int) -> tuple[ChangeRow, ...]:
    rows: list[ChangeRow] = []
    for i in range(count):
        commit = hashlib.sha1(f"c{i}".encode()).hexdigest()
        author = PEOPLE[i % len(PEOPLE)]
        approver = PEOPLE[(i + 1) % len(PEOPLE)]
        title = f"Change {i}: tidy module {i % 17}"
        flags: tuple[str, ...] = ()
        link: str | None = "trailer"
        override = None
        if i == 0:
            commit, title, flags = SELF_APPROVED, f"Harden login {SCRIPT}", ("self-approved",)
        elif i == 1:
            commit, link, flags = DIRECT_PUSH, None, ("unlinked-commit",)
            title = '=HYPERLINK("http://evil.example/","click")'
            override = "+1 hotfix, approved later"
        elif i == 2:
            title = 'Line one\nline two, with "quotes" and, commas'
            author = "@mallory <m@example.com>"
        elif i == 3:
            title = "-2+3 " + LONG
        rows.append(
            ChangeRow(
                commit=commit,
                tree=hashlib.sha1(f"t{i}".encode()).hexdigest(),
                branch="main",
                title=title,
                author=author,
                committer=author,
                committed_at=f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00.000000Z",
                link=link,
                decisions=(f"D-{i:010x}",),
                sessions=(f"s-{i}",) if i % 2 else (),
                models=("claude-sonnet@4.5",) if i % 2 else (),
                operators=(author,) if i % 2 else (),
                approvals=(
                    ApprovalRow(
                        approver=f"u-{i % 5}",
                        printed_name=approver.split(" <")[0],
                        meaning="approved",
                        ts=f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:30:00.000000Z",
                        entry=100 + i,
                        signature=200 + i if i % 3 == 0 else None,
                        decision=f"D-{i:010x}",
                        bound_to_tree=True,
                        independent=i != 0,
                    ),
                ),
                tests="pass",
                ci_entries=(300 + i,),
                override=override,
                override_entry=42 if override else None,
                link_entry=400 + i if link else None,
                flags=flags,
            )
        )
    return tuple(rows)


def _ledger(**overrides: Any) -> LedgerSummary:
    fields: dict[str, Any] = {
        "project": "zahlungsverkehr-ü",
        "origin": "flowloom.test/proj",
        "size": 1200,
        "root": "ab" * 32,
        "checkpoint_size": 1200,
        "checkpoint_note": f"flowloom.test/proj\n1200\n{ROOT_B64}\n",
        "checkpoints_checked": 7,
        "vkey": None,
        "verified": True,
        "anchors": (
            AnchorRow(1100, "2026-11-20T00:00:00.000000Z", "tsa", 1100, "RFC 3161 token, TSA-Ω"),
            AnchorRow(1150, "2026-11-21T00:00:00.000000Z", "witness", 1150, "witness.example"),
        ),
    }
    fields.update(overrides)
    return LedgerSummary(**fields)


def make_assessment(count: int = 12, **overrides: Any) -> Assessment:
    """A realistic assessment: controls passing and flagged, hostile and unicode text."""
    exceptions = tuple(f for c in _checks(count) for f in c.findings)
    fields: dict[str, Any] = {
        "framework": "sox",
        "framework_title": "SOX IT general controls: change management",
        "catalogue_version": "2026.1",
        "period_from": PERIOD[0],
        "period_to": PERIOD[1],
        "generated_at": GENERATED,
        "repository": "/srv/git/zahlungsverkehr.git",
        "branches": ("main", "release/2026"),
        "project": "zahlungsverkehr-ü",
        "ledger": _ledger(),
        "verifier_version": flowloom.__version__,
        "controls": _controls(),
        "checks": _checks(count),
        "changes": _changes(count),
        "exceptions": exceptions,
        "audit_trail": (
            AuditTrailRow(
                11,
                "2026-11-02T08:00:00.000000Z",
                "u-zoe",
                "Zoë Ångström",
                "config.change",
                "policy.protected_branches",
                "main",
                "main, release/*",
                "release branches need review too",
            ),
            AuditTrailRow(
                12,
                "2026-11-02T09:00:00.000000Z",
                "u-li",
                None,
                "auth.role_revoked",
                "u-renee",
                "approver",
                None,
                f"left the team {SCRIPT}",
            ),
        ),
    }
    fields.update(overrides)
    return Assessment(**fields)


def pdf_text(data: bytes) -> tuple[str, int]:
    document = pdfium.PdfDocument(data)
    try:
        pages = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()
    return "\n".join(pages), len(pages)


def pdf_to_pngs(data: bytes, folder: Path) -> list[Path]:
    """Render every page to PNG; returns the files (kept as test artifacts)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = pdfium.PdfDocument(data)
    paths = []
    try:
        for i in range(len(document)):
            image = document[i].render(scale=1).to_pil().convert("L")
            path = folder / f"page-{i + 1:03d}.png"
            image.save(path)
            paths.append(path)
            low, high = image.getextrema()
            assert low < 128 < high or low < high, f"page {i + 1} is blank"
            dark = sum(image.histogram()[:200])
            assert dark > 200, f"page {i + 1} has almost no ink ({dark} dark pixels)"
    finally:
        document.close()
    return paths


def squash(text: str) -> str:
    return " ".join(text.split())


def without_disclaimer(text: str) -> str:
    """The text with the model's disclaimer sentence (the one allowed mention) removed."""
    return squash(html.unescape(text)).replace(squash(DISCLAIMER), "")


def assert_no_claims(name: str, text: str, quoted: tuple[str, ...] = ()) -> None:
    """No "certif..." in `text` but for the disclaimer and `quoted` source data."""
    cleaned = without_disclaimer(text)
    for data in quoted:
        cleaned = cleaned.replace(squash(data), "")
    assert "certif" not in cleaned.lower(), f"{name} speaks of certification"


# -- registry ----------------------------------------------------------------------------


def test_registry_offers_each_format_with_one_signature(tmp_path: Path) -> None:
    assert set(FORMATS) <= set(RENDERERS)
    assert {"html", "pdf", "json", "csv", "zip"} < set(FORMATS)
    assessment = make_assessment(3)
    for fmt in ("html", "json", "csv", "exceptions-csv", "audit-trail-csv", "controls-csv"):
        out = tmp_path / f"out-{fmt}"
        assert RENDERERS[fmt](assessment, out, bundle_dir=None) == out
        assert out.stat().st_size > 0
    with pytest.raises(InputError, match="unknown report format"):
        render("docx", assessment, tmp_path / "x.docx")
    with pytest.raises(InputError, match="is a directory"):
        render("json", assessment, tmp_path)


# -- HTML --------------------------------------------------------------------------------


def test_html_is_self_contained_and_accessible(tmp_path: Path) -> None:
    assessment = make_assessment(12)
    out = render("html", assessment, tmp_path / "r" / "report.html")
    text = out.read_text("utf-8")
    assert text == render_html(assessment)
    assert text.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in text
    assert text.count("<h1>") == 1 and text.count("<h2") >= 6
    assert "<style>" in text and "<link" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert "@page" in text and "counter(pages)" in text and "table-header-group" in text
    assert text.count('<th scope="col">') > 30 and '<th scope="row">' in text
    assert text.count("<caption>") >= 5
    for result in assessment.controls:
        assert result.control.id in text
    assert "Zoë Ångström" in text and "李小龙" in text
    assert "Evidence for SOX IT general controls" in text
    assert "main, release/*" in text and "→" in text  # the audit trail, old → new
    assert SELF_APPROVED in text and DIRECT_PUSH in text
    assert_no_claims("report.html", text)


class _Structure(HTMLParser):
    """Collects what accessibility checks need: headings, table parts, header scopes."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.tables = 0
        self.captions = 0
        self.theads = 0
        self.unscoped: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "table":
            self.tables += 1
        elif tag == "caption":
            self.captions += 1
        elif tag == "thead":
            self.theads += 1
        elif tag == "th" and values.get("scope") not in ("col", "row"):
            self.unscoped.append(str(values))
        for name in ("src", "href"):
            value = values.get(name) or ""
            if value and not value.startswith(("#", "data:")):
                self.external.append(value)


def test_html_structure_is_accessible() -> None:
    parser = _Structure()
    parser.feed(render_html(make_assessment(20)))
    assert parser.headings[0] == 1 and parser.headings.count(1) == 1
    steps = [b - a for a, b in itertools.pairwise(parser.headings)]
    assert max(steps) == 1, f"a heading level is skipped: {parser.headings}"
    assert parser.tables >= 6 and parser.captions == parser.tables == parser.theads
    assert parser.unscoped == []
    assert parser.external == []


def test_html_escapes_hostile_text(tmp_path: Path) -> None:
    text = render_html(make_assessment(4))
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "=HYPERLINK(&#34;http://evil.example/&#34;" in text


def test_html_caps_the_population_table_but_says_so(tmp_path: Path) -> None:
    assessment = make_assessment(30)
    out = html_render(assessment, tmp_path / "capped.html", max_rows=10)
    text = out.read_text("utf-8")
    assert "The first 10 are shown here" in text
    assert text.count('<tr class="flagged">') >= 2


# -- JSON --------------------------------------------------------------------------------


def test_json_holds_everything_and_round_trips(tmp_path: Path) -> None:
    assessment = make_assessment(25)
    out = render("json", assessment, tmp_path / "report.json")
    raw = out.read_text("utf-8")
    assert "Zoë Ångström" in raw  # UTF-8, not \\u escapes
    data = json.loads(raw)
    assert data["format"] == "flowloom-assessment/1"
    assert data == json.loads(json.dumps(assessment.to_json()))
    assert Assessment.from_json(data).to_json() == assessment.to_json()
    assert len(data["changes"]) == 25 and len(data["exceptions"]) == 2
    docs = (ROOT / "docs" / "reports.md").read_text("utf-8")
    for key in data:
        assert f"`{key}`" in docs, f"top-level key {key} is not documented in docs/reports.md"
    for key in data["ledger"]:
        assert f"`{key}`" in docs, f"ledger key {key} is not documented"
    assert_no_claims("report.json", raw)


# -- CSV ---------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_population_csv_is_rfc4180_and_defuses_formulas(tmp_path: Path) -> None:
    assessment = make_assessment(40)
    out = render("csv", assessment, tmp_path / "population.csv")
    raw = out.read_bytes()
    assert raw.count(b"\r\n") >= 41  # CRLF record ends
    rows = _read_csv(out)
    assert tuple(rows[0]) == csv_reports.POPULATION_COLUMNS
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(body) == 40
    assert [r["commit"] for r in body] == [c.commit for c in assessment.changes]
    first, second, third, fourth = body[:4]
    assert first["flags"] == "self-approved" and first["independent_approval"] == "no"
    assert second["link"] == "unlinked" and second["override_entry"] == "42"
    assert second["title"] == "'" + assessment.changes[1].title  # =HYPERLINK defused
    assert second["override"] == "'+1 hotfix, approved later"
    assert third["title"] == 'Line one\nline two, with "quotes" and, commas'
    assert third["author"] == "'@mallory <m@example.com>"
    assert fourth["title"].startswith("'-2+3 ")
    assert body[4]["author"] == PEOPLE[4]  # quote and comma survive quoting
    assert body[1]["sessions"] == "s-1" and body[1]["models"] == "claude-sonnet@4.5"
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell


def test_exceptions_audit_trail_and_controls_csv(tmp_path: Path) -> None:
    assessment = make_assessment(5)
    exceptions = _read_csv(render("exceptions-csv", assessment, tmp_path / "exceptions.csv"))
    assert tuple(exceptions[0]) == csv_reports.EXCEPTION_COLUMNS
    assert [r[1] for r in exceptions[1:]] == ["sod", "completeness"]
    assert exceptions[1][5] == SELF_APPROVED
    assert json.loads(exceptions[1][9]) == {"approver": "u-li", "roles": ["author", "approver"]}
    assert exceptions[2][7] == "'=cmd|' /C calc'!A0"
    assert exceptions[1][10:] == ["", "", "", "", ""]  # no management response recorded
    trail = _read_csv(render("audit-trail-csv", assessment, tmp_path / "audit.csv"))
    assert tuple(trail[0]) == csv_reports.AUDIT_TRAIL_COLUMNS
    assert trail[1][3:] == [
        "Zoë Ångström",
        "config.change",
        "policy.protected_branches",
        "main",
        "main, release/*",
        "release branches need review too",
        "",  # an event that counts: nothing unverified about it
    ]
    assert trail[2][7] == ""  # no new value: the role is gone
    controls = _read_csv(render("controls-csv", assessment, tmp_path / "controls.csv"))
    assert tuple(controls[0]) == csv_reports.CONTROL_COLUMNS
    by_id = {r[1]: dict(zip(controls[0], r, strict=True)) for r in controls[1:]}
    assert list(by_id) == [c.control.id for c in assessment.controls]
    assert by_id["sox-cm-1"]["status"] == "flag" and by_id["sox-cm-1"]["exceptions"] == "1"
    assert by_id["sox-cm-1"]["check_statuses"] == "sod=flag"
    assert by_id["sox-cm-3"]["evidence_entries"].startswith("0; 3; 6")
    assert (
        by_id["sox-cm-6"]["status"] == "manual"
        and "procedure" in by_id["sox-cm-6"]["manual_evidence"]
    )


def test_a_failed_render_leaves_no_half_file(tmp_path: Path) -> None:
    out = tmp_path / "population.csv"
    out.write_text("the previous report\n")

    def rows(count: int) -> Iterator[int]:
        yield from range(count)
        raise RuntimeError("crash in the middle of the population")

    with pytest.raises(RuntimeError):
        csv_reports.write_table(out, ("n",), rows(1000), lambda n: [str(n)])
    assert out.read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["population.csv"]
    fresh = tmp_path / "new" / "exceptions.csv"
    with pytest.raises(RuntimeError):
        csv_reports.write_table(fresh, ("n",), rows(10), lambda n: [str(n)])
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []


# -- chain-verification statement -------------------------------------------------------


def test_chain_verification_statement_in_three_forms(tmp_path: Path) -> None:
    assessment = make_assessment(3)
    text = render("chain-verification", assessment, tmp_path / "chain.txt").read_text("utf-8")
    data = json.loads(chain.render(assessment, tmp_path / "chain.json").read_text("utf-8"))
    page = chain.render(assessment, tmp_path / "chain.html").read_text("utf-8")
    assert data["format"] == "flowloom-chain-verification/1"
    assert data["range"] == {"first": 0, "last": 1199, "entries": 1200}
    assert data["root"] == "ab" * 32 and data["root_base64"] == ROOT_B64
    assert data["checkpoints_checked"] == 7 and data["checkpoint"]["size"] == 1200
    assert [a["type"] for a in data["anchors"]] == ["tsa", "witness"]
    assert data["verifier"]["version"] == flowloom.__version__
    assert data["verified_at"] == GENERATED and data["result"] == "verified"
    for needle in (
        "flowloom.test/proj",
        "entries 0 to 1199",
        "ab" * 32,
        "RFC 3161 token, TSA-Ω",
        f"FlowLoom {flowloom.__version__}",
        "sha256sum -c MANIFEST.sha256",
        "flowloom log verify-bundle ledger-bundle --vkey ledger.vkey",
        GENERATED,
    ):
        assert needle in text, needle
        assert needle in page, needle
    assert '<html lang="en">' in page and "<h1>Chain-verification statement</h1>" in page
    for name, content in (("txt", text), ("json", json.dumps(data)), ("html", page)):
        assert_no_claims(f"chain-verification.{name}", content)
    broken = make_assessment(
        3, ledger=_ledger(verified=False, problems=("entry 5: modified: leaf hash differs",))
    )
    broken_text = chain.render_text(broken)
    assert "Result:               problems found" in broken_text
    assert "- entry 5: modified: leaf hash differs" in broken_text
    empty = chain.document(make_assessment(1, ledger=_ledger(size=0, root="", anchors=())))
    assert empty["range"] == {"first": None, "last": None, "entries": 0}
    assert empty["root_base64"] is None or empty["root_base64"] == ""


# -- PDF ---------------------------------------------------------------------------------


def test_pdf_of_a_large_population_is_real(tmp_path: Path) -> None:
    # 100 changes already run to ~14 pages with the table header repeated on each: what is
    # proven is paging (running header, "Page n of N", repeated header), not sheer size.
    assessment = make_assessment(100)
    out = render("pdf", assessment, tmp_path / "report.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    text, pages = pdf_text(data)
    assert pages > 5
    flat = squash(text)
    assert "SOX IT general controls: change management" in flat
    assert PERIOD[0] in flat and PERIOD[1] in flat
    for result in assessment.controls:
        assert result.control.id in flat, result.control.id
    assert SELF_APPROVED in flat.replace(" ", "") and DIRECT_PUSH in flat.replace(" ", "")
    assert f"Page 1 of {pages}" in flat and f"Page {pages} of {pages}" in flat
    assert flat.count("Evidence for SOX IT general controls") >= pages  # running header
    assert flat.count("Commit Committed Author Title") >= 3  # table header repeats
    assert "Zoë Ångström" in flat and "李小龙" in flat
    assert "Chain verification" in flat and "How to verify again, offline" in flat
    assert "RFC 3161 token, TSA-Ω" in flat
    assert_no_claims("report.pdf", text)
    pngs = pdf_to_pngs(data, tmp_path / "pages")
    assert len(pngs) == pages


def test_pdf_and_html_fetch_nothing(tmp_path: Path) -> None:
    hits: list[str] = []

    def answer(request: Request) -> Reply:
        hits.append(request.path)
        return Reply.text(404, "not found")

    server = LoopbackServer(answer).start()
    secret = tmp_path / "secret.css"
    secret.write_text("body { background: red }")
    try:
        url = server.url
        page = (
            f'<html lang="en"><head><link rel="stylesheet" href="{url}/a.css">'
            f'<link rel="stylesheet" href="{secret.as_uri()}"></head><body>'
            f'<h1>Offline</h1><img src="{url}/b.png" alt="x">'
            '<img alt="dot" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf'
            'FcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="></body></html>'
        )
        data = html_to_pdf(page)
    finally:
        server.stop()
    assert hits == []
    assert "Offline" in pdf_text(data)[0]


def test_pdf_is_deterministic() -> None:
    assessment = make_assessment(8)
    assert render_pdf(assessment) == render_pdf(assessment)


# -- evidence pack -----------------------------------------------------------------------


@pytest.fixture
def real_ledger(tmp_path: Path) -> Iterator[tuple[Assessment, Path]]:
    """A real SQLite ledger, exported as a bundle, and an assessment describing it."""
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        ledger = make_ledger(store, tmp_path / "home")
        fill(ledger, 40)
        checkpoint = ledger.checkpoint()
        summary = _ledger(
            origin=ledger.origin,
            size=checkpoint.size,
            root=checkpoint.root.hex(),
            checkpoint_size=checkpoint.size,
            checkpoint_note=checkpoint.note,
            vkey=ledger.verifier.vkey,
        )
        bundle = tmp_path / "bundle"
        export_bundle(ledger, bundle)
        yield make_assessment(20, ledger=summary), bundle
    finally:
        store.close()


def _rewrite(source: Path, target: Path, change: dict[str, bytes | None]) -> None:
    """Copy a ZIP, replacing (bytes), dropping (None) or adding members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in change:
                replacement = change[info.filename]
                if replacement is not None:
                    new.writestr(info, replacement)
                continue
            new.writestr(info, old.read(info.filename))
        for name, data in change.items():
            if data is not None and name not in old.namelist():
                new.writestr(name, data)


def test_evidence_pack_holds_everything_and_verifies(
    tmp_path: Path, real_ledger: tuple[Assessment, Path]
) -> None:
    assessment, bundle = real_ledger
    pack = render("zip", assessment, tmp_path / "out" / "evidence.zip", bundle_dir=bundle)
    with zipfile.ZipFile(pack) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        for name in (
            "README.txt",
            "report.html",
            "report.pdf",
            "report.json",
            "population.csv",
            "exceptions.csv",
            "audit-trail.csv",
            "controls-requirements.csv",
            "chain-verification.txt",
            "chain-verification.json",
            "chain-verification.html",
            "ledger.vkey",
            "checkpoint.txt",
            "ledger-bundle/checkpoint",
            "ledger-bundle/manifest.json",
            MANIFEST_JSON,
            MANIFEST_SHA256,
        ):
            assert name in names, name
        assert {i.date_time for i in archive.infolist()} == {(2026, 11, 22, 6, 0, 0)}
        sums = archive.read(MANIFEST_SHA256).decode()
        for line in sums.splitlines():
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(archive.read(name)).hexdigest() == digest
        assert len(sums.splitlines()) == len(names) - 1
        manifest = json.loads(archive.read(MANIFEST_JSON))
        assert manifest["format"] == "flowloom-evidence-pack/1"
        assert manifest["ledger"]["root"] == assessment.ledger.root
        text, pages = pdf_text(archive.read("report.pdf"))
        assert pages >= 2 and "sox-cm-1" in text
        for name in names:
            if name.endswith((".html", ".json", ".csv", ".txt")):
                assert_no_claims(name, archive.read(name).decode("utf-8"))
        assert_no_claims("report.pdf", text)
        extracted = tmp_path / "extracted"
        archive.extractall(extracted)
    if shutil.which("sha256sum"):
        done = subprocess.run(
            ["sha256sum", "--strict", "-c", MANIFEST_SHA256],
            cwd=extracted,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    report = verify_evidence_pack(pack, vkey=assessment.ledger.vkey)
    assert report.ok, report.problems
    assert report.ledger_checked and report.files_checked == len(names) - 1
    report.raise_for_problems()


def test_evidence_pack_is_deterministic(
    tmp_path: Path, real_ledger: tuple[Assessment, Path]
) -> None:
    assessment, bundle = real_ledger
    first = RENDERERS["zip"](assessment, tmp_path / "a.zip", bundle_dir=bundle).read_bytes()
    second = RENDERERS["zip"](assessment, tmp_path / "b.zip", bundle_dir=bundle).read_bytes()
    assert first == second


def test_evidence_pack_detects_tampering(
    tmp_path: Path, real_ledger: tuple[Assessment, Path]
) -> None:
    assessment, bundle = real_ledger
    pack = render("zip", assessment, tmp_path / "evidence.zip", bundle_dir=bundle)
    with zipfile.ZipFile(pack) as archive:
        population = archive.read("population.csv")
        entries = [n for n in archive.namelist() if n.startswith("ledger-bundle/tile/entries/")]
        entry_bundle = archive.read(entries[0])

    modified = tmp_path / "modified.zip"
    _rewrite(pack, modified, {"population.csv": population.replace(b"approved", b"aproved")})
    report = verify_evidence_pack(modified)
    assert not report.ok
    assert report.problems == ["population.csv does not match its SHA-256 in MANIFEST.sha256"]
    with pytest.raises(PackProblemError, match=r"population\.csv"):
        report.raise_for_problems()

    dropped = tmp_path / "dropped.zip"
    _rewrite(pack, dropped, {"exceptions.csv": None, "extra.txt": b"slipped in"})
    problems = verify_evidence_pack(dropped).problems
    assert "exceptions.csv is listed in MANIFEST.sha256 but missing" in problems
    assert "extra.txt is in the archive but not in MANIFEST.sha256" in problems

    # An insider edits a ledger entry and rewrites both manifests to match: the
    # manifests agree, but the ledger bundle no longer verifies against the vkey.
    forged = entry_bundle.replace(b"prompt", b"prOmpt", 1)
    assert forged != entry_bundle
    with zipfile.ZipFile(pack) as archive:
        sums = archive.read(MANIFEST_SHA256).decode()
        manifest = json.loads(archive.read(MANIFEST_JSON))
    new_digest = hashlib.sha256(forged).hexdigest()
    manifest["files"][entries[0]]["sha256"] = new_digest
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    lines = []
    for line in sums.splitlines():
        digest, name = line.split("  ", 1)
        if name == entries[0]:
            digest = new_digest
        elif name == MANIFEST_JSON:
            digest = hashlib.sha256(manifest_bytes).hexdigest()
        lines.append(f"{digest}  {name}\n")
    rehashed = tmp_path / "rehashed.zip"
    _rewrite(
        pack,
        rehashed,
        {
            entries[0]: forged,
            MANIFEST_JSON: manifest_bytes,
            MANIFEST_SHA256: "".join(lines).encode(),
        },
    )
    report = verify_evidence_pack(rehashed, vkey=assessment.ledger.vkey)
    assert report.ledger_checked
    assert any(p.startswith("ledger bundle:") for p in report.problems), report.problems
    assert verify_evidence_pack(rehashed, ledger=False).ok  # why the ledger check matters

    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"PK but not really")
    with pytest.raises(InputError, match="not a readable ZIP"):
        verify_evidence_pack(not_zip)


def test_evidence_pack_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "nope").mkdir()
    out = tmp_path / "evidence.zip"
    with pytest.raises(InputError, match="not a ledger bundle"):
        render("zip", make_assessment(2), out, bundle_dir=tmp_path / "nope")
    assert not out.exists()


# -- an assessment from the real checks --------------------------------------------------


def test_renders_an_assessment_from_the_real_checks(tmp_path: Path) -> None:
    assess_module = importlib.import_module("flowloom.compliance.assess")
    assessment = _real_assessment(assess_module, tmp_path)
    json_out = render("json", assessment, tmp_path / "real.json")
    assert Assessment.from_json(json.loads(json_out.read_text("utf-8"))).to_json() == (
        assessment.to_json()
    )
    text = render("html", assessment, tmp_path / "real.html").read_text("utf-8")
    for result in assessment.controls:
        assert result.control.id in text
    data = render("pdf", assessment, tmp_path / "real.pdf").read_bytes()
    pdf_plain, pages = pdf_text(data)
    assert pages >= 1 and assessment.framework_title.split(":")[0] in squash(pdf_plain)
    pdf_to_pngs(data, tmp_path / "real-pages")
    # Anchor details are quoted data (a TSA anchor may name its X.509 certificate), not
    # claims; catalogue text is scanned like the rest of the report.
    quoted = tuple(a.detail for a in assessment.ledger.anchors)
    assert_no_claims("real.pdf", pdf_plain, quoted)
    assert_no_claims("real.html", text, quoted)


def _real_assessment(assess_module: Any, tmp_path: Path) -> Assessment:
    """Run the core helper's assessment over a small real ledger (no git repository)."""
    store = SQLiteStore(tmp_path / "real.db")
    try:
        ledger = make_ledger(store, tmp_path / "real-home")
        fill(ledger, 12)
        ledger.checkpoint()
        period = assess_module.parse_period("2026-01-01", "2027-12-31")
        trust = Trust.of_log([ledger.verifier])
        result = assess_module.assess(ledger, framework="part11", period=period, trust=trust)
        assert isinstance(result, Assessment)
        return result
    finally:
        store.close()
