"""Signed reports over the API: the statement of every report, verification and re-performance.

Real servers over loopback HTTP on SQLite and PostgreSQL. The server signs each report's
statement with the project log's key, names the authenticated principal, assesses at one
signed checkpoint, and `POST .../reports/verify` re-performs an uploaded evidence pack
from its own ledger bundle (the instance log's security events included).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import httpx
import pytest

from flowloom.compliance.reperform import verify_report
from flowloom.compliance.statement import Generator, sign_statement
from flowloom.ledger.dsse import Envelope
from flowloom.ledger.event import Event
from flowloom.ledger.note import Verifier
from tests.compliance.test_signed_reports import pdf_embedding
from tests.server.support import OWN, World, live_server
from tests.server.test_reports_api import PERIOD, REPORTS, client, populate

VERIFY = f"/api/v1/projects/{OWN}/reports/verify"


def _statement(response: httpx.Response) -> Envelope:
    return Envelope.parse(base64.b64decode(response.headers["x-flowloom-statement"]))


def _exercise(world: World, tmp_path: Path) -> None:
    populate(world)
    with live_server(world.server) as base, client(base, world, "auditor") as http:
        vkey = http.get(f"/api/v1/projects/{OWN}/ledger/vkey").text.strip()
        verifier = Verifier.from_vkey(vkey)
        # Every format comes with its statement, signed by the log's key, naming the auditor.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "html"})
        assert response.status_code == 200, response.text
        envelope = _statement(response)
        assert envelope.verified_by([verifier]) == verifier
        statement = envelope.statement()
        digest = hashlib.sha256(response.content).hexdigest()
        assert statement["subject"][0]["digest"]["sha256"] == digest
        predicate = statement["predicate"]
        who = predicate["generatedBy"]
        assert who == {"identity": "auditor@example.org", "authenticated": True, "method": "server"}
        size = int(response.headers["x-flowloom-checkpoint"])
        assert predicate["checkpoint"]["size"] == size
        entry = int(response.headers["x-flowloom-export-entry"])
        assert entry >= size  # the export is recorded after the checkpoint it reads
        recorded = Event.parse(world.server.ledger(OWN).entry(entry).envelope)
        line = base64.b64decode(response.headers["x-flowloom-statement"]) + b"\n"
        assert recorded.refs["statement"] == hashlib.sha256(line).hexdigest()

        # A single file verifies with its statement, and fails once edited.
        html_file = tmp_path / "report.html"
        html_file.write_bytes(response.content)
        files = {"file": ("report.html", response.content), "statement": ("s", line)}
        answer = http.post(VERIFY, files=files)
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is True, answer.json()
        edited = response.content.replace(b"<h1>", b"<h1>X", 1)
        answer = http.post(
            VERIFY, files={"file": ("report.html", edited), "statement": ("s", line)}
        )
        assert answer.json()["ok"] is False

        # A PDF whose embedded report.json is not the assessment its (validly signed)
        # statement names: the API's verification lists it too.
        pdf = pdf_embedding(b"{}", line)
        beside = sign_statement(
            [("report.pdf", hashlib.sha256(pdf).hexdigest())], {**predicate, "format": "pdf"},
            world.server.ledger(OWN).require_signer(), Generator(""),
        ).to_line()  # fmt: skip
        answer = http.post(VERIFY, files={"file": ("report.pdf", pdf), "statement": ("s", beside)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is False
        assert any(
            "embeds a report.json that is not the assessment" in p
            for p in answer.json()["problems"]
        ), answer.json()

        # Two reports in a row: the same control results; the first's export flags nothing.
        runs = []
        for _ in range(2):
            response = http.post(REPORTS, json={"framework": "sox", **PERIOD, "format": "json"})
            assert response.status_code == 200, response.text
            data = response.json()
            runs.append(
                (
                    [(c["control"]["id"], c["status"]) for c in data["controls"]],
                    [(c["check"], c["status"], len(c["findings"])) for c in data["checks"]],
                )
            )
            assert "unsigned-tail" not in {f["what"] for f in data["exceptions"]}
        assert runs[0] == runs[1]

        # An evidence pack re-performs without difference, here and over the API.
        response = http.post(REPORTS, json={"framework": "part11", **PERIOD, "format": "zip"})
        assert response.status_code == 200, response.text
        pack = tmp_path / "pack.zip"
        pack.write_bytes(response.content)
        with zipfile.ZipFile(pack) as archive:
            assert "instance-events.jsonl" in archive.namelist()
            report_json = json.loads(archive.read("report.json"))
        assert report_json["ledger"]["size"] == int(response.headers["x-flowloom-checkpoint"])
        local = verify_report(pack, trusted=[verifier])
        assert local.ok and local.reperformed, (local.problems, local.differences)
        answer = http.post(VERIFY, files={"file": ("pack.zip", response.content)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ok"] is True and body["reperformed"] is True, body
        assert body["generated_by"].startswith("auditor@example.org")

        # Every flag rewritten to pass: the statement no longer matches.
        with zipfile.ZipFile(pack) as archive:
            contents = {n: archive.read(n) for n in archive.namelist()}
        forged = tmp_path / "forged.zip"
        with zipfile.ZipFile(forged, "w") as archive:
            for name, data in contents.items():
                if name in ("report.json", "report.html"):
                    data = data.replace(b'"flag"', b'"pass"').replace(b">flag<", b">pass<")
                archive.writestr(name, data)
        answer = http.post(VERIFY, files={"file": ("pack.zip", forged.read_bytes())})
        assert answer.json()["ok"] is False
        assert any("report.json" in p for p in answer.json()["problems"])
    with live_server(world.server) as base, client(base, world, "developer") as http:
        assert http.post(VERIFY, files={"file": ("p.zip", b"x")}).status_code == 403


def test_signed_reports_on_sqlite(world: World, tmp_path: Path) -> None:
    _exercise(world, tmp_path)


@pytest.mark.timeout(600)
def test_signed_reports_on_postgresql(pg_world: World, tmp_path: Path) -> None:
    _exercise(pg_world, tmp_path)
