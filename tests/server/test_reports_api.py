"""Compliance over the API: reports in every format, the catalogue, legal holds, git subjects.

Real servers over loopback HTTP (uvicorn in a thread) on SQLite and PostgreSQL; the PDF is
read back with pypdfium2 and rendered to PNG, the evidence pack checked with
verify_evidence_pack against the log's verifier key fetched from the server.
"""

from __future__ import annotations

import hashlib
import html
import json
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from flowloom.compliance.changes import git_object_digest
from flowloom.compliance.model import DISCLAIMER
from flowloom.compliance.reports import FORMATS
from flowloom.compliance.reports.evidence_pack import verify_evidence_pack
from flowloom.ledger.event import Event
from flowloom.server.routes.reports import ReportFormat
from tests.server.support import OTHER, OWN, World, live_server

REPORTS = f"/api/v1/projects/{OWN}/reports"
HOLDS = f"/api/v1/projects/{OWN}/compliance/holds"
SIGNATURES = f"/api/v1/projects/{OWN}/signatures"
PASSWORD = "approver passphrase for signing"
TODAY = datetime.now(UTC).date()
PERIOD = {"from": (TODAY - timedelta(days=1)).isoformat(), "to": TODAY.isoformat()}


def populate(world: World) -> None:
    """A little history in alpha: a session with a personal body, a decision, a checkpoint."""
    ledger = world.server.ledger(OWN)
    ledger.record(
        "session.start",
        meta={"session": "s-1", "refs": {"model": "claude-sonnet-4-5-20250929"}},
    )
    ledger.record("agent.prompt", body=b"refactor the billing module", data_subject="dana")
    ledger.record("decision.record", meta={"subject": "D-1", "refs": {"title": "Ship it"}})
    ledger.checkpoint()


@pytest.fixture
def base(world: World) -> Iterator[str]:
    populate(world)
    with live_server(world.server) as url:
        yield url


def client(base: str, world: World, who: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers=world.headers(who), timeout=120)


def exports(world: World) -> list[tuple[int, Event]]:
    ledger = world.server.ledger(OWN)
    return [
        (e.index, Event.parse(e.envelope))
        for e in ledger.store.entries(OWN, kind="export.generate")
    ]


def no_claims(text: str) -> None:
    cleaned = " ".join(html.unescape(text).split()).replace(" ".join(DISCLAIMER.split()), "")
    assert "certif" not in cleaned.lower()


def check_recorded(world: World, response: httpx.Response, fmt: str, who: str) -> None:
    """The answer carries the SHA-256 and entry of the export.generate event that records it."""
    digest = hashlib.sha256(response.content).hexdigest()
    assert response.headers["x-flowloom-sha256"] == digest
    entry = int(response.headers["x-flowloom-export-entry"])
    recorded = dict(exports(world))[entry]
    assert recorded.refs["sha256"] == digest and recorded.refs["format"] == fmt
    assert recorded.refs["framework"] == "part11" and recorded.refs["via"] == "api"
    assert recorded.actor.id == world.user_ids[who]


def test_formats_match_the_cli() -> None:
    assert get_args(ReportFormat) == FORMATS


def test_reports_in_every_format_over_http(base: str, world: World, tmp_path: Path) -> None:
    with client(base, world, "auditor") as http:
        # JSON: the assessment itself, git checks honestly not applicable.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "json"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        data = response.json()
        assert data["format"] == "flowloom-assessment/1" and data["project"] == OWN
        assert data["repository"] == "" and data["changes"] == []
        assert data["statement"] == DISCLAIMER
        statuses = {c["check"]: c["status"] for c in data["checks"]}
        assert statuses["segregation_of_duties"] == "not_assessed"  # no repository here
        sod = next(c for c in data["checks"] if c["check"] == "segregation_of_duties")
        assert "needs the git repository" in sod["reason"]
        assert set(data["summary"]) == {
            "pass", "flag", "manual", "not_applicable", "not_assessed"
        }  # fmt: skip
        assert statuses["trail_integrity"] in ("pass", "flag")
        assert data["ledger"]["verified"] is True
        check_recorded(world, response, "json", "auditor")

        # HTML: an attachment, self-contained, evidence language only.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "html"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment;") and f"{OWN}-part11-" in disposition
        first, last = PERIOD["from"], PERIOD["to"]
        assert disposition.endswith(f'filename="{OWN}-part11-{first}-{last}.html"')
        assert "<html" in response.text and "§11.100" in response.text
        no_claims(response.text)
        check_recorded(world, response, "html", "auditor")

        # PDF: text extracted and every page rendered.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "pdf"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
        text, pages = pdf_text(response.content, tmp_path / "pages")
        squashed = " ".join(text.split())
        assert pages >= 1 and "21 CFR Part 11" in squashed and "§11.10(e)" in squashed
        no_claims(text)
        check_recorded(world, response, "pdf", "auditor")

        # ZIP: the evidence pack verifies, ledger bundle included, against the served vkey.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "zip"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        pack = tmp_path / "pack.zip"
        pack.write_bytes(response.content)
        vkey = http.get(f"/api/v1/projects/{OWN}/ledger/vkey").text.strip()
        report = verify_evidence_pack(pack, vkey=vkey)
        assert report.ok, report.problems
        assert report.ledger_checked and report.files_checked > 10
        with zipfile.ZipFile(pack) as archive:
            manifest = json.loads(archive.read("ledger-bundle/manifest.json"))
            names = archive.namelist()
        # The data subject's body stays on the server; the plain diff-free log still verifies.
        assert len(manifest["withheld_bodies"]) == 1
        assert "report.pdf" in names and "report.json" in names
        check_recorded(world, response, "zip", "auditor")

        # CSV: the change population (empty without a repository), with its header.
        response = http.post(REPORTS, json={"framework": "sox", **PERIOD, "format": "csv"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert response.text.startswith("commit,tree,branch")


def pdf_text(data: bytes, folder: Path) -> tuple[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    document = pdfium.PdfDocument(data)
    try:
        texts = []
        for i in range(len(document)):
            page = document[i]
            texts.append(page.get_textpage().get_text_range())
            image = page.render(scale=1).to_pil().convert("L")
            image.save(folder / f"page-{i + 1:03d}.png")
            assert sum(image.histogram()[:200]) > 200, f"page {i + 1} is blank"
        return "\n".join(texts), len(texts)
    finally:
        document.close()


def test_who_may_generate(base: str, world: World) -> None:
    body = {"framework": "sox", **PERIOD, "format": "json"}
    before = len(exports(world))
    for who in ("owner", "admin", "auditor", "instance_owner"):
        with client(base, world, who) as http:
            assert http.post(REPORTS, json=body).status_code == 200, who
    for who in ("developer", "approver", "service"):
        with client(base, world, who) as http:
            response = http.post(REPORTS, json=body)
            assert response.status_code == 403, (who, response.text)
            assert response.json()["error"]["code"] == "forbidden"
    with client(base, world, "auditor") as http:
        other = http.post(f"/api/v1/projects/{OTHER}/reports", json=body)
        assert other.status_code in (403, 404)
        missing = http.post("/api/v1/projects/nowhere/reports", json=body)
        assert missing.status_code in (403, 404)
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        assert anonymous.post(REPORTS, json=body).status_code == 401
    assert len(exports(world)) == before + 4  # refused requests leave no export behind


def test_bad_requests_are_refused_before_any_work(base: str, world: World) -> None:
    before = len(exports(world))
    with client(base, world, "auditor") as http:
        unknown = http.post(REPORTS, json={"framework": "pci", **PERIOD})
        assert unknown.status_code == 422
        empty = http.post(
            REPORTS, json={"framework": "sox", "from": "2026-02-01", "to": "2026-01-01"}
        )
        assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
        long = http.post(
            REPORTS, json={"framework": "sox", "from": "2020-01-01", "to": "2026-01-01"}
        )
        assert long.status_code == 400 and "limit" in long.json()["error"]["message"]
        bad_format = http.post(REPORTS, json={"framework": "sox", **PERIOD, "format": "docx"})
        assert bad_format.status_code == 422
    with client(base, world, "instance_owner") as http:
        instance = http.post(
            "/api/v1/projects/flowloom-instance/reports", json={"framework": "sox", **PERIOD}
        )
        assert instance.status_code == 403
    assert len(exports(world)) == before


def test_catalogue(base: str, world: World) -> None:
    with client(base, world, "developer") as http:
        response = http.get(f"{REPORTS}/frameworks")
    assert response.status_code == 200, response.text
    data = response.json()
    names = [f["name"] for f in data["frameworks"]]
    assert {"sox", "part11", "iso27001", "hipaa", "gdpr", "soc2", "euaiact"} <= set(names)
    part11 = next(f for f in data["frameworks"] if f["name"] == "part11")
    clauses = {c["clause"]: c for c in part11["controls"]}
    assert "§11.10(a)" in clauses and "§11.300(e)" in clauses
    assert "legally binding" in clauses["§11.100(c)"]["requests"][0]
    # Each control says how far automation covers it, and what stays manual.
    validation = clauses["§11.10(a)"]
    assert validation["coverage"] == "partly automated" and validation["requests"]
    assert validation["automated"].startswith("the ability to discern altered records")
    assert clauses["§11.10(h)"]["coverage"] == "manual" and not clauses["§11.10(h)"]["checks"]
    assert "certif" not in json.dumps(data["frameworks"]).lower()
    assert data["formats"] == list(FORMATS) and data["git"] is False
    assert any(c["id"] == "completeness" and c["needs_git"] for c in data["checks"])


def test_legal_holds(base: str, world: World) -> None:
    with client(base, world, "developer") as http:
        assert (
            http.post(HOLDS, json={"action": "hold", "id": "LH-9", "reason": "x"}).status_code
            == 403
        )
        assert http.get(HOLDS).status_code == 403
    with client(base, world, "admin") as http:
        placed = http.post(
            HOLDS,
            json={"action": "hold", "id": "LH-1", "reason": "Doe v. Acme", "data_subject": "dana"},
        )
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert hold["active"] and hold["scope"].startswith("subject:subj:")
        assert "dana" not in placed.text  # only the pseudonym is kept
        again = http.post(HOLDS, json={"action": "hold", "id": "LH-1", "reason": "twice"})
        assert again.status_code == 409
        unknown = http.post(HOLDS, json={"action": "release", "id": "LH-7", "reason": "no"})
        assert unknown.status_code == 404
    with client(base, world, "auditor") as http:
        [listed] = http.get(HOLDS).json()["holds"]
        assert listed["id"] == "LH-1" and listed["reason"] == "Doe v. Acme"
    with client(base, world, "owner") as http:
        released = http.post(HOLDS, json={"action": "release", "id": "LH-1", "reason": "settled"})
        assert released.status_code == 201, released.text
        assert released.json()["active"] is False and released.json()["release_entry"] is not None
        assert http.get(HOLDS, params={"active": "true"}).json()["holds"] == []
    ledger = world.server.ledger(OWN)
    events = [Event.parse(e.envelope) for e in ledger.store.entries(OWN, kind="retention.set")]
    assert [e.refs["action"] for e in events] == ["hold", "release"]
    assert events[0].actor.id == world.user_ids["admin"]
    assert events[1].actor.id == world.user_ids["owner"]


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.org",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.org",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_tree_and_commit_signatures_are_checked_against_a_configured_repository(
    base: str, world: World, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hello')\n")
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "first")
    commit = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    world.server.directory.set_password(world.user_ids["approver"], PASSWORD)
    creds = {"email": "approver@example.org", "password": PASSWORD}

    def sign(http: httpx.Client, subject: str, object_id: str) -> httpx.Response:
        return http.post(
            SIGNATURES,
            json={
                "subject": subject,
                "content_digest": git_object_digest(object_id),
                "meaning": "approved",
                **creds,
            },
        )

    def content_check(http: httpx.Client, sig: int) -> dict[str, Any]:
        verdict = http.get(f"{SIGNATURES}/{sig}/verify").json()
        return next(c for c in verdict["checks"] if c["name"] == "content")

    with client(base, world, "approver") as http:
        # No repository on the server: the binding cannot be checked, and says so.
        signed = sign(http, f"tree:{tree}", tree)
        assert signed.status_code == 201, signed.text
        tree_sig = signed.json()["id"]
        assert content_check(http, tree_sig)["status"] == "unchecked"
        short = sign(http, f"commit:{commit[:12]}", commit[:12])
        assert short.status_code == 400 and "full git object id" in short.text

        world.server.repositories = {OWN: repo}
        try:
            assert content_check(http, tree_sig)["status"] == "pass"
            signed = sign(http, f"commit:{commit}", commit)
            assert signed.status_code == 201, signed.text
            assert content_check(http, signed.json()["id"])["status"] == "pass"
            # A commit id named as a tree, or an object the repository lacks, is refused.
            assert sign(http, f"tree:{commit}", commit).status_code == 404
            assert sign(http, f"tree:{'0' * 40}", "0" * 40).status_code == 404
            with client(base, world, "auditor") as auditor:
                catalogue = auditor.get(f"{REPORTS}/frameworks").json()
                assert catalogue["git"] is True
                data = auditor.post(
                    REPORTS, json={"framework": "sox", **PERIOD, "format": "json"}
                ).json()
            assert data["repository"] == str(repo)
            assert [c["commit"] for c in data["changes"]] == [commit]
        finally:
            world.server.repositories = {}


def test_reports_on_postgresql(pg_world: World, tmp_path: Path) -> None:
    populate(pg_world)
    with live_server(pg_world.server) as base, client(base, pg_world, "auditor") as http:
        response = http.post(REPORTS, json={"framework": "gdpr", **PERIOD, "format": "json"})
        assert response.status_code == 200, response.text
        assert response.json()["ledger"]["verified"] is True
        response = http.post(REPORTS, json={"framework": "gdpr", **PERIOD, "format": "zip"})
        assert response.status_code == 200, response.text
        pack = tmp_path / "pg-pack.zip"
        pack.write_bytes(response.content)
        vkey = http.get(f"/api/v1/projects/{OWN}/ledger/vkey").text.strip()
        report = verify_evidence_pack(pack, vkey=vkey)
        assert report.ok and report.ledger_checked, report.problems
    with live_server(pg_world.server) as base, client(base, pg_world, "developer") as http:
        assert http.post(REPORTS, json={"framework": "gdpr", **PERIOD}).status_code == 403
    recorded = [
        Event.parse(e.envelope)
        for e in pg_world.server.ledger(OWN).store.entries(OWN, kind="export.generate")
    ]
    assert [e.refs.get("format") for e in recorded if e.subject == "report:gdpr"] == ["json", "zip"]


def test_management_responses_are_recorded_and_shown(base: str, world: World) -> None:
    """POST .../reports/responses (project.admin) records a compliance.response for the
    signed-in user; the next report shows it beside the exception, under the same id."""
    responses = f"{REPORTS}/responses"
    body = {"framework": "part11", **PERIOD, "format": "json"}
    with client(base, world, "auditor") as http:
        first = http.post(REPORTS, json=body)
        assert first.status_code == 200, first.text
        findings = first.json()["exceptions"]
        assert findings and all(f["id"].startswith("PART11-") for f in findings)
        assert first.json()["responses"] == []
        target = findings[0]["id"]
        said = {"exception": target, "response": "Anchoring to the TSA from next month"}
        assert http.post(responses, json=said).status_code == 403  # auditors do not respond
    with client(base, world, "developer") as http:
        assert http.post(responses, json=said).status_code == 403
    with client(base, world, "admin") as http:
        bad = http.post(responses, json={**said, "exception": "not-an-id"})
        assert bad.status_code == 400, bad.text
        late = http.post(responses, json={**said, "due": "next week"})
        assert late.status_code == 400, late.text
        done = http.post(responses, json={**said, "owner": "Ops", "due": "2026-12-31"})
        assert done.status_code == 201, done.text
        recorded = done.json()
        assert recorded["exception"] == target and recorded["by"] == world.user_ids["admin"]
    with client(base, world, "auditor") as http:
        world.server.ledger(OWN).checkpoint()
        second = http.post(REPORTS, json=body).json()
    assert [f["id"] for f in second["exceptions"]][: len(findings)] == [f["id"] for f in findings]
    [shown] = second["responses"]
    assert shown["exception"] == target and shown["entry"] == recorded["entry"]
    assert shown["by"] == world.user_ids["admin"] and shown["owner"] == "Ops"
    assert shown["due"] == "2026-12-31"
