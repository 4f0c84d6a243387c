"""The five control statuses in every output format, each with its reason.

A real assessment (SQLite ledger, directory, no repository) of 21 CFR Part 11 where a
disabled user still acts: it has a control of each status — pass (§11.70), flag
(§11.10(d)), manual (§11.10(h), with its evidence requests), not_applicable (§11.50: no
signature in the period) and not_assessed (§11.10(f): commit checks without git). The
JSON summary, the controls CSV, the HTML and the PDF (text extracted with pypdfium2)
must each show all five with their reasons: none folded into pass, and an
informational note never called an exception. (The web tiles: tests/web.)
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.model import CONTROL_STATUSES, Assessment
from flowloom.compliance.reports import render
from tests.compliance.world import MALLORY, RITA, World, at, empty_world

EXPECTED = {
    "part11-11.70": "pass",
    "part11-11.10d": "flag",
    "part11-11.10h": "manual",
    "part11-11.50": "not_applicable",
    "part11-11.10f": "not_assessed",
}
REASONS = {
    "part11-11.70": "found nothing to report",
    "part11-11.10d": "access_revocation flagged 1 exception",
    "part11-11.10h": "no automated check covers this control",
    "part11-11.50": "no electronic signature or approval was recorded in the period",
    "part11-11.10f": "needs the git repository",
}


@pytest.fixture(scope="module")
def assessment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assessment]:
    world: World = empty_world(tmp_path_factory.mktemp("statuses") / "w")
    try:
        world.user(RITA)
        world.user(MALLORY)
        world.clock.set(at(3))
        mallory = world.users[MALLORY[1]].id
        world.directory.disable_user(mallory)
        world.clock.set(at(4))
        world.ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": mallory}})
        world.clock.set(at(31, 12))
        world.ledger.checkpoint()
        yield assess(
            world.ledger,
            framework="part11",
            period=parse_period("2026-03-01", "2026-03-31"),
            trust=world.trust,
            now=datetime(2026, 4, 2, tzinfo=UTC),
        )
    finally:
        world.close()


def test_the_assessment_has_each_status_with_its_reason(assessment: Assessment) -> None:
    controls = {c.control.id: c for c in assessment.controls}
    for control_id, status in EXPECTED.items():
        assert controls[control_id].status == status, controls[control_id]
        assert REASONS[control_id] in controls[control_id].note
    assert set(assessment.counts()) == set(CONTROL_STATUSES)
    assert all(assessment.counts()[s] for s in CONTROL_STATUSES)
    # The integrity check passes with an informational note (no external anchor).
    integrity = assessment.check("trail_integrity")
    assert integrity.status == "pass" and integrity.notes and not integrity.exceptions


def test_json(assessment: Assessment, tmp_path: Path) -> None:
    data = json.loads(render("json", assessment, tmp_path / "r.json").read_text())
    assert data["summary"] == assessment.counts()
    assert list(data["summary"]) == list(CONTROL_STATUSES)
    controls = {c["control"]["id"]: c for c in data["controls"]}
    for control_id, status in EXPECTED.items():
        assert controls[control_id]["status"] == status
        assert REASONS[control_id] in controls[control_id]["note"]
    manual = controls["part11-11.10h"]
    assert manual["requests"] and manual["control"]["coverage"] == "manual"
    assert manual["automated"] == ""
    partial = controls["part11-11.10a"]  # validation: integrity passes, the control does not
    assert (partial["status"], partial["automated"]) == ("manual", "pass")
    assert partial["control"]["coverage"] == "partly automated"
    checks = {c["check"]: c for c in data["checks"]}
    assert checks["completeness"]["status"] == "not_assessed"
    assert "needs the git repository" in checks["completeness"]["reason"]
    assert Assessment.from_json(data) == assessment


def test_controls_csv(assessment: Assessment, tmp_path: Path) -> None:
    path = render("controls-csv", assessment, tmp_path / "controls.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        table = {row["control"]: row for row in csv.DictReader(handle)}
    for control_id, status in EXPECTED.items():
        assert table[control_id]["status"] == status
        assert REASONS[control_id] in table[control_id]["reason"]
    assert {row["status"] for row in table.values()} == set(CONTROL_STATUSES)
    assert "Training records" in table["part11-11.10i"]["requests"]
    assert table["part11-11.10a"]["automated_status"] == "pass"
    assert table["part11-11.10a"]["coverage"] == "partly automated"
    assert table["part11-11.70"]["exceptions"] == "0" and table["part11-11.70"]["notes"] == "1"


def _html_rows(text: str) -> dict[str, str]:
    table = text.split('<table class="controls">', 1)[1].split("</table>", 1)[0]
    found = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
        cells = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
        control_id = re.search(r"part11-[0-9.a-z]+", cells)
        assert control_id is not None
        found[control_id.group(0)] = cells
    return found


def test_html(assessment: Assessment, tmp_path: Path) -> None:
    text = render("html", assessment, tmp_path / "r.html").read_text()
    found = _html_rows(text)
    for control_id, status in EXPECTED.items():
        assert f" {status} " in f" {found[control_id]} ", found[control_id]
        assert REASONS[control_id] in found[control_id]
    assert "the devices allowed to enter data" in found["part11-11.10h"]
    summary = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
    counts = assessment.counts()
    for status in CONTROL_STATUSES:
        assert re.search(rf"\b{status} [^0-9]+ {counts[status]}\b", summary), status
    # A note is a note: the passing integrity check shows "1 note", no exception.
    assert "<code>trail_integrity</code> (pass, 1 note)" in text
    assert "note (info)" in text and "Informational notes" in text


def _pdf_text(data: bytes) -> str:
    document = pdfium.PdfDocument(data)
    try:
        pages = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()
    return " ".join(" ".join(pages).split())


def test_pdf(assessment: Assessment, tmp_path: Path) -> None:
    text = _pdf_text(render("pdf", assessment, tmp_path / "r.pdf").read_bytes())
    counts = assessment.counts()
    for status in CONTROL_STATUSES:
        assert re.search(rf"\b{status} [^0-9]+ {counts[status]}\b", text), status
        assert text.count(status) >= 2  # in the summary and on its control's row
    for control_id in EXPECTED:
        assert control_id in text
    assert "needs the git" in text and "no electronic signature" in text
    assert "(pass, 1 note)" in text and "(pass, 1 exception)" not in text
