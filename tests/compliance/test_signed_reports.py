"""Signed, re-performable, stable reports: `flowloom report` and `flowloom report verify`.

The real CLI over the month of tests/compliance/world.py (a real git repository and
SQLite ledger): every report is signed (an in-toto statement in DSSE, beside the file and
inside a pack), one run reads one checkpoint, and `report verify` re-performs a pack's
assessment from its ledger bundle. Tampering is tried for real: a byte flipped in each
file of a pack, and every "flag" rewritten to "pass" with the manifests rebuilt.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from flowloom.cli.main import main
from flowloom.compliance.reperform import verify_report
from flowloom.compliance.reports.evidence_pack import MANIFEST_JSON, MANIFEST_SHA256
from flowloom.ledger.dsse import Envelope
from flowloom.ledger.event import Event
from flowloom.ledger.note import Verifier
from tests.compliance.world import PROJECT, World, build_world, enter

PERIOD = ("--from", "2026-03-01", "--to", "2026-03-31")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("signed-world"))
    yield built
    built.close()


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    return enter(world, monkeypatch)


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def report(out: Path, fmt: str, framework: str = "part11", *extra: str) -> Path:
    code = run(
        "report", "--framework", framework, *PERIOD, "--format", fmt, "--out", str(out), *extra
    )
    assert code == 0
    return out


def vkey(world: World) -> str:
    return world.ledger.verifier.vkey


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packs")


@pytest.fixture
def pack(env: World, pack_dir: Path) -> Path:
    """One Part 11 evidence pack of March (made once per module)."""
    out = pack_dir / "part11.zip"
    if not out.exists():
        report(out, "zip")
    return out


def rewrite(source: Path, target: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change.get(info.filename, src.read(info.filename)))


# -- signed statements ---------------------------------------------------------------------


def test_every_report_has_a_signed_statement_and_is_recorded(env: World, tmp_path: Path) -> None:
    out = report(tmp_path / "p11.pdf", "pdf")
    beside = tmp_path / "p11.pdf.intoto.jsonl"
    envelope = Envelope.parse(beside.read_bytes())
    verifier = Verifier.from_vkey(vkey(env))
    assert envelope.verified_by([verifier]) == verifier
    statement = envelope.statement()
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [
        {"name": "p11.pdf", "digest": {"sha256": hashlib.sha256(out.read_bytes()).hexdigest()}}
    ]
    predicate = statement["predicate"]
    assert predicate["framework"] == "part11" and predicate["format"] == "pdf"
    assert predicate["period"]["from"] == "2026-03-01" and predicate["period"]["to"] == "2026-03-31"
    assert predicate["period"]["toInclusive"] is True and predicate["period"]["timezone"] == "UTC"
    assert predicate["scope"]["project"] == PROJECT and predicate["scope"]["branches"] == ["main"]
    size = predicate["checkpoint"]["size"]
    stored = {c.size: c for c in env.store.checkpoints(PROJECT)}
    assert stored[size].root.hex() == predicate["checkpoint"]["rootHash"]
    assert predicate["generator"]["name"] == "flowloom"
    # No allowed-signers file in this repository: nothing proves who ran it, and it says so.
    assert predicate["generatedBy"]["authenticated"] is False
    # The export is recorded after the checkpoint, with the statement's digest and body.
    stored_exports = list(env.store.entries(PROJECT, kind="export.generate"))
    last = stored_exports[-1]
    event = Event.parse(last.envelope)
    assert last.index >= size
    assert event.refs["statement"] == hashlib.sha256(beside.read_bytes()).hexdigest()
    assert event.refs["checkpoint"] == size and event.refs["format"] == "pdf"
    assert run("report", "verify", str(out), "--vkey", vkey(env)) == 0


def test_a_single_file_fails_when_edited_or_checked_with_another_key(
    env: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report(tmp_path / "controls.csv", "controls-csv")
    assert run("report", "verify", str(out), "--vkey", vkey(env)) == 0
    other = Verifier.from_vkey(vkey(env)).name
    from flowloom.ledger.note import Signer

    stranger = Signer.generate(other).verifier().vkey
    assert run("report", "verify", str(out), "--vkey", stranger) == 1
    assert "does not verify" in capsys.readouterr().out
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    assert run("report", "verify", str(out), "--vkey", vkey(env)) == 1
    assert "does not match the digest" in capsys.readouterr().out


# -- verify and re-perform -----------------------------------------------------------------


def test_an_untouched_pack_verifies_and_re_performs_without_difference(
    env: World, pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = verify_report(pack, trusted=[Verifier.from_vkey(vkey(env))], repo=env.repo)
    assert result.ok, (result.problems, result.differences)
    assert result.reperformed and result.files_checked > 10
    # Without the repository the ledger's checks are re-performed and the rest said.
    capsys.readouterr()
    assert run("report", "verify", str(pack), "--vkey", vkey(env)) == 0
    out = capsys.readouterr().out
    assert "re-performed: no difference" in out
    assert "were not re-performed: give the repository" in out
    assert run("report", "verify", str(pack), "--repo", str(env.repo.cwd)) == 0


def test_editing_any_byte_of_any_file_of_a_pack_fails(
    env: World, pack: Path, tmp_path: Path
) -> None:
    trusted = [Verifier.from_vkey(vkey(env))]
    with zipfile.ZipFile(pack) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        contents = {n: archive.read(n) for n in names}
    assert len(names) > 15 and "report.intoto.jsonl" in names
    for number, name in enumerate(names):
        data = bytearray(contents[name])
        data[(number * 7919) % len(data)] ^= 0x01
        edited = tmp_path / f"edited-{number}.zip"
        rewrite(pack, edited, {name: bytes(data)})
        result = verify_report(edited, trusted=trusted)
        assert not result.ok, f"an edit of {name} went unnoticed"
        edited.unlink()


def test_flags_rewritten_to_pass_with_rebuilt_manifests_fail(
    env: World, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(pack) as archive:
        contents = {n: archive.read(n) for n in archive.namelist()}
    assert b'"flag"' in contents["report.json"]
    changed = {
        "report.json": contents["report.json"].replace(b'"flag"', b'"pass"'),
        "report.html": contents["report.html"].replace(b">flag<", b">pass<"),
    }
    manifest = json.loads(contents[MANIFEST_JSON])
    for name, data in changed.items():
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    changed[MANIFEST_JSON] = (json.dumps(manifest, indent=2) + "\n").encode()
    sums = {
        n: hashlib.sha256(changed.get(n, contents[n])).hexdigest()
        for n in contents
        if n != MANIFEST_SHA256 and not n.endswith("/")
    }
    changed[MANIFEST_SHA256] = "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())).encode()
    forged = tmp_path / "forged.zip"
    rewrite(pack, forged, changed)
    shutil.copy(pack.with_name(pack.name + ".intoto.jsonl"), tmp_path / "forged.zip.intoto.jsonl")
    assert run("report", "verify", str(forged), "--vkey", vkey(env)) == 1
    out = capsys.readouterr().out
    assert "report.json does not match the digest the statement signs" in out
    assert "report.html does not match the digest the statement signs" in out
    assert "forged.zip does not match the digest of forged.zip.intoto.jsonl" in out


# -- one snapshot per run ------------------------------------------------------------------


def _results(data: dict[str, Any]) -> tuple[Any, ...]:
    controls = [(c["control"]["id"], c["status"]) for c in data["controls"]]
    checks = [
        (c["check"], c["status"], [(f["what"], f["entry"], f["commit"]) for f in c["findings"]])
        for c in data["checks"]
    ]
    return controls, checks


@pytest.mark.parametrize("framework", ["sox", "part11", "hipaa", "sec17a4"])
def test_two_reports_in_a_row_give_the_same_control_results(
    env: World, tmp_path: Path, framework: str
) -> None:
    first = json.loads(report(tmp_path / "1.json", "json", framework).read_text())
    second = json.loads(report(tmp_path / "2.json", "json", framework).read_text())
    assert _results(first) == _results(second)
    # The reports' own export.generate entries flag nothing.
    whats = {f["what"] for f in second["exceptions"]}
    assert "unsigned-tail" not in whats
    assert second["ledger"]["size"] > first["ledger"]["size"]  # it did read the new entries
    assert second["ledger"]["checkpoint_size"] == second["ledger"]["size"]


def test_all_formats_of_one_run_agree(env: World, pack: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(pack) as archive:
        data = json.loads(archive.read("report.json"))
        html_text = archive.read("report.html").decode()
        chain = archive.read("chain-verification.txt").decode()
        chain_json = json.loads(archive.read("chain-verification.json"))
        exceptions = archive.read("exceptions.csv").decode()
        pdf_bytes = archive.read("report.pdf")
        bundle = archive.read("ledger-bundle/checkpoint").decode()
        statement = Envelope.parse(archive.read("report.intoto.jsonl")).statement()
    size = data["ledger"]["size"]
    assert data["ledger"]["checkpoint_size"] == size
    assert statement["predicate"]["checkpoint"]["size"] == size
    assert bundle.split("\n")[1] == str(size)
    assert f"{size} entries" in html_text
    assert f"entries 0 to {size - 1} ({size} entries" in chain
    assert chain_json["tree_size"] == size
    pdf = pdfium.PdfDocument(pdf_bytes)
    text = " ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    assert f"{size} entries" in " ".join(text.split())
    # No other size of the ledger anywhere (the audit trail counts its rows).
    everywhere = " ".join(text.split()) + html_text + chain
    for found in re.findall(r"(?<!Audit trail \()\b(\d+) entries", everywhere):
        assert int(found) == size, found
    assert "not yet covered by a signed checkpoint" not in exceptions + html_text
    # The same counts of controls, findings, changes and trail rows in every format.
    from flowloom.compliance.reports.templating import STATUS_LABELS

    with zipfile.ZipFile(pack) as archive:
        tables = {
            name: list(csv.DictReader(io.StringIO(archive.read(name).decode())))
            for name in ("population.csv", "exceptions.csv", "audit-trail.csv",
                         "controls-requirements.csv")
        }  # fmt: skip
    assert len(tables["population.csv"]) == len(data["changes"]) > 0
    assert len(tables["exceptions.csv"]) == len(data["exceptions"]) > 0
    assert len(tables["audit-trail.csv"]) == len(data["audit_trail"])
    controls = tables["controls-requirements.csv"]
    assert [r["status"] for r in controls] == [c["status"] for c in data["controls"]]
    flat = " ".join(text.split())
    statuses = Counter(c["status"] for c in data["controls"])
    for status, label in STATUS_LABELS.items():
        count = statuses.get(status, 0)
        row = f'<th scope="row" class="status status-{status}">{status}</th><td>{label}</td>'
        assert f"{row}<td>{count}</td>" in html_text, status
        assert f"{status} {label} {count}" in flat, status
    notes = sum(f["severity"] == "info" for f in data["exceptions"])
    totals = (
        f"{len(data['exceptions']) - notes} exceptions and {notes} informational notes in "
        f"total; {len(data['changes'])} changes in the population."
    )
    assert totals in html_text and totals in flat
    # The period as requested: the last day included, the timezone stated.
    label = "2026-03-01 to 2026-03-31 (both days included, UTC)"
    assert label in html_text and label in chain and label in " ".join(text.split())
    assert "exclusive" not in html_text


def test_an_out_of_date_bundle_is_refused(
    env: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    assert run("log", "export", str(bundle)) == 0
    env.ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": "ann@example.com"}})
    out = tmp_path / "late.zip"
    code = run("report", "--framework", "sox", *PERIOD, "--format", "zip", "--out", str(out),
               "--bundle-dir", str(bundle))  # fmt: skip
    assert code == 3
    assert "covers" in capsys.readouterr().err and not out.exists()
    # A bundle exported just before, with nothing appended since, is the report's own.
    fresh = tmp_path / "fresh"
    assert run("log", "export", str(fresh)) == 0
    report(tmp_path / "fresh.zip", "zip", "sox", "--bundle-dir", str(fresh))
    assert verify_report(tmp_path / "fresh.zip", trusted=[Verifier.from_vkey(vkey(env))]).ok


# -- checking without FlowLoom (the commands of docs/reports.md) ---------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def doc_block(language: str, containing: str) -> str:
    """The fenced block of docs/reports.md in `language` that contains `containing`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"one {language} block with {containing!r} in docs/reports.md"
    return found[0]


def without_flowloom(folder: Path, pack: Path, log_vkey: str) -> subprocess.CompletedProcess[str]:
    """The documented commands, run in an empty folder as the docs say."""
    folder.mkdir()
    (folder / "verify_statement.py").write_text(doc_block("python", "# verify_statement.py"))
    (folder / "log.vkey").write_text(log_vkey + "\n")
    script = doc_block("sh", 'unzip -q "$PACK"')
    return subprocess.run(
        ["bash", "-euc", script], cwd=folder, env={"PACK": str(pack), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_documented_checks_without_flowloom(env: World, pack: Path, tmp_path: Path) -> None:
    done = without_flowloom(tmp_path / "ok", pack, vkey(env))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signature OK" in done.stdout and "files match their digests" in done.stdout
    assert "checkpoint OK" in done.stdout
    # The same commands catch an edited file, and a statement checked with another key.
    with zipfile.ZipFile(pack) as archive:
        data = archive.read("report.json").replace(b'"flag"', b'"pass"')
        sums = archive.read(MANIFEST_SHA256).decode()
    old = hashlib.sha256(archive_bytes(pack, "report.json")).hexdigest()
    new_sums = sums.replace(old, hashlib.sha256(data).hexdigest())
    forged = tmp_path / "forged.zip"
    rewrite(pack, forged, {"report.json": data, MANIFEST_SHA256: new_sums.encode()})
    done = without_flowloom(tmp_path / "forged", forged, vkey(env))
    assert done.returncode != 0 and "report.json was changed" in done.stderr
    from flowloom.ledger.note import Signer

    stranger = Signer.generate(Verifier.from_vkey(vkey(env)).name).verifier().vkey
    done = without_flowloom(tmp_path / "stranger", pack, stranger)
    assert done.returncode != 0 and "no signature by the log's key" in done.stderr
    # A signature that does not verify: one byte of it changed (the manifests rebuilt).
    line = json.loads(archive_bytes(pack, "report.intoto.jsonl"))
    sig = bytearray(base64.b64decode(line["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    line["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    bad = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    old = hashlib.sha256(archive_bytes(pack, "report.intoto.jsonl")).hexdigest()
    sums = sums.replace(old, hashlib.sha256(bad).hexdigest())
    forged = tmp_path / "badsig.zip"
    rewrite(pack, forged, {"report.intoto.jsonl": bad, MANIFEST_SHA256: sums.encode()})
    done = without_flowloom(tmp_path / "badsig", forged, vkey(env))
    assert done.returncode != 0 and "InvalidSignature" in done.stderr


def embedded(pdf_bytes: bytes) -> dict[str, bytes]:
    """The files a report PDF embeds, by name."""
    document = pdfium.PdfDocument(pdf_bytes)
    try:
        return {
            document.get_attachment(i).get_name(): bytes(document.get_attachment(i).get_data())
            for i in range(document.count_attachments())
        }
    finally:
        document.close()


def test_a_pdf_carries_its_assessment_and_the_statement_over_it(
    env: World, pack: Path, tmp_path: Path
) -> None:
    out = report(tmp_path / "p11.pdf", "pdf")
    files = embedded(out.read_bytes())
    assert sorted(files) == ["report.json", "report.json.intoto.jsonl"]
    data, line = files["report.json"], files["report.json.intoto.jsonl"]
    verifier = Verifier.from_vkey(vkey(env))
    inner = Envelope.parse(line)
    assert inner.verified_by([verifier]) == verifier
    digest = hashlib.sha256(data).hexdigest()
    statement = inner.statement()
    assert statement["subject"] == [{"name": "report.json", "digest": {"sha256": digest}}]
    assert statement["predicate"]["format"] == "json"
    # The PDF's own statement, beside it, names the PDF and the same assessment.
    beside = Envelope.parse((tmp_path / "p11.pdf.intoto.jsonl").read_bytes()).statement()
    assert beside["predicate"]["assessment"]["sha256"] == digest
    assert beside["subject"][0]["digest"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert json.loads(data)["framework"] == "part11"
    # In a pack, report.pdf holds exactly the pack's report.json.
    with zipfile.ZipFile(pack) as archive:
        packed = embedded(archive.read("report.pdf"))
        assert packed["report.json"] == archive.read("report.json")
    assert Envelope.parse(packed["report.json.intoto.jsonl"]).verified_by([verifier]) == verifier
    # The documented commands take them out and check them without FlowLoom.
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "pdf_attachments.py").write_text(doc_block("python", "# pdf_attachments.py"))
    (folder / "verify_statement.py").write_text(doc_block("python", "# verify_statement.py"))
    (folder / "log.vkey").write_text(vkey(env) + "\n")
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # python3 with pypdfium2
    done = subprocess.run(
        ["bash", "-euc", doc_block("sh", "python3 pdf_attachments.py")], cwd=folder,
        env={"REPORT": str(out), "PATH": path}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote report.json" in done.stdout and "signature OK" in done.stdout
    assert "1 files match their digests" in done.stdout
    assert (folder / "report.json").read_bytes() == data


def archive_bytes(pack: Path, name: str) -> bytes:
    with zipfile.ZipFile(pack) as archive:
        return archive.read(name)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pdf_embedding(report_json: bytes, statement: bytes) -> bytes:
    """A small PDF/A embedding `report_json` and `statement`, as a report PDF does."""
    from flowloom.compliance.reports.pdf import Embedded, html_to_pdf

    return html_to_pdf(
        '<!doctype html><html lang="en"><head><title>Report</title></head>'
        "<body><h1>Report</h1><p>Every control passes.</p></body></html>",
        attachments=[
            Embedded("report.json", report_json, "application/json", "assessment", "Source"),
            Embedded("report.json.intoto.jsonl", statement, "application/jsonl", "statement"),
        ],
    )


def _resigned_pack(env: World, pack: Path, target: Path, pdf_bytes: bytes) -> None:
    """`pack` with report.pdf replaced and everything rebuilt and signed again with the
    log's own key: manifest.json, the statement inside, MANIFEST.sha256 and the
    statement beside it. Only what the PDF embeds is left to give it away."""
    from flowloom.compliance.statement import Generator, sign_statement

    signer = env.ledger.require_signer()
    with zipfile.ZipFile(pack) as archive:
        contents = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    predicate = Envelope.parse(contents["report.intoto.jsonl"]).statement()["predicate"]
    changed = {"report.pdf": pdf_bytes}
    manifest = json.loads(contents[MANIFEST_JSON])
    manifest["files"]["report.pdf"] = {"sha256": _sha(pdf_bytes), "size": len(pdf_bytes)}
    changed[MANIFEST_JSON] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    files = {**contents, **changed}
    subjects = sorted(
        (n, _sha(d)) for n, d in files.items() if n not in ("report.intoto.jsonl", MANIFEST_SHA256)
    )
    changed["report.intoto.jsonl"] = sign_statement(
        subjects, predicate, signer, Generator("")
    ).to_line()
    files.update(changed)
    sums = {n: _sha(d) for n, d in files.items() if n != MANIFEST_SHA256}
    changed[MANIFEST_SHA256] = "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())).encode()
    rewrite(pack, target, changed)
    beside = Envelope.parse(pack.with_name(pack.name + ".intoto.jsonl").read_bytes()).statement()
    outer = sign_statement(
        [(target.name, _sha(target.read_bytes()))], beside["predicate"], signer, Generator("")
    )
    target.with_name(target.name + ".intoto.jsonl").write_bytes(outer.to_line())


@pytest.mark.parametrize("forged", ["assessment", "assessment-and-statement"])
def test_a_pdf_embedding_another_assessment_fails(
    env: World, pack: Path, tmp_path: Path, forged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pack is signed again with the log's own key around a PDF that embeds another
    report.json (flags made passes), alone or with a statement signed over it: only the
    PDF's attachments differ, and verify lists them."""
    from flowloom.compliance.statement import Generator, sign_statement

    original = archive_bytes(pack, "report.json")
    other = original.replace(b'"flag"', b'"pass"')
    assert other != original
    statement = embedded(archive_bytes(pack, "report.pdf"))["report.json.intoto.jsonl"]
    if forged == "assessment-and-statement":  # self-consistent inside the PDF
        predicate = Envelope.parse(statement).statement()["predicate"]
        predicate["assessment"]["sha256"] = _sha(other)
        statement = sign_statement(
            [("report.json", _sha(other))], predicate, env.ledger.require_signer(), Generator("")
        ).to_line()
    target = tmp_path / "forged.zip"
    _resigned_pack(env, pack, target, pdf_embedding(other, statement))
    result = verify_report(target, trusted=[Verifier.from_vkey(vkey(env))])
    assert not result.ok and not result.reperformed
    assert all(p.startswith(("report.pdf ", "the statement report.pdf")) for p in result.problems)
    assert "report.pdf embeds a report.json that differs from the pack's report.json" in (
        result.problems
    )
    inner = [p for p in result.problems if p.startswith("the statement report.pdf embeds")]
    if forged == "assessment":
        assert inner == []
    else:  # signed by the right key, but over another assessment than the report's
        assert any("is not over the report's assessment" in p for p in inner), inner
        assert any(p.endswith("about: assessment") for p in inner), inner
    capsys.readouterr()
    assert run("report", "verify", str(target), "--vkey", vkey(env)) == 1
    assert "embeds a report.json that differs" in capsys.readouterr().out
    # Made with the pack's own attachments, the rebuilt pack verifies: the check is sound.
    honest = tmp_path / "honest.zip"
    _resigned_pack(env, pack, honest, pdf_embedding(original, embedded(
        archive_bytes(pack, "report.pdf"))["report.json.intoto.jsonl"]))  # fmt: skip
    result = verify_report(honest, trusted=[Verifier.from_vkey(vkey(env))])
    assert not result.problems, result.problems


def test_a_single_pdf_embedding_another_assessment_fails(
    env: World, pack: Path, tmp_path: Path
) -> None:
    """A PDF on its own, with a valid statement beside it, whose embedded report.json is
    not the assessment its statement names."""
    from flowloom.compliance.statement import Generator, sign_statement

    statement = embedded(archive_bytes(pack, "report.pdf"))["report.json.intoto.jsonl"]
    predicate = Envelope.parse(statement).statement()["predicate"]
    signer = env.ledger.require_signer()
    out = tmp_path / "p11.pdf"
    trusted = [Verifier.from_vkey(vkey(env))]
    for name, data in (("honest", archive_bytes(pack, "report.json")), ("forged", b"{}")):
        out.write_bytes(pdf_embedding(data, statement))
        beside = sign_statement(
            [(out.name, _sha(out.read_bytes()))], {**predicate, "format": "pdf"}, signer,
            Generator(""),
        )  # fmt: skip
        out.with_name(out.name + ".intoto.jsonl").write_bytes(beside.to_line())
        result = verify_report(out, trusted=trusted)
        if name == "honest":
            assert result.ok, result.problems
        else:
            assert result.problems == [
                "p11.pdf embeds a report.json that is not the assessment its statement names"
            ]


# -- a generator proven by their SSH key ---------------------------------------------------


def test_a_report_signed_by_the_person_who_ran_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.sshkeys import make_key, require_ssh_keygen

    require_ssh_keygen()
    repo = tmp_path / "repo"
    repo.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "FLOWLOOM_HOME": str(tmp_path / "flowloom-home"),
        "FLOWLOOM_DATABASE": str(tmp_path / "ledger.db"),
        "FLOWLOOM_PROJECT": "solo",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("FLOWLOOM_SERVER", "FLOWLOOM_API_KEY", "FLOWLOOM_API_KEY_FILE", "FLOWLOOM_ORIGIN"):
        monkeypatch.delenv(name, raising=False)
    key = make_key(tmp_path / "keys", "alice")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "user.email", "alice@example.com")
    git("config", "user.name", "Alice")
    git("config", "gpg.format", "ssh")
    git("config", "user.signingkey", str(key.private))
    (repo / ".flowloom").mkdir()
    (repo / ".flowloom" / "allowed_signers").write_text(
        f'alice@example.com namespaces="flowloom" {key.public_line}\n'
    )
    git("add", ".flowloom")
    git("commit", "-qm", "allowed signers")
    rev = git("rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    pack = tmp_path / "solo.zip"
    code = run("report", "--framework", "sox", *PERIOD, "--format", "zip", "--out", str(pack))
    assert code == 0
    statement = Envelope.parse(archive_bytes(pack, "report.intoto.jsonl")).statement()
    who = statement["predicate"]["generatedBy"]
    assert who["identity"] == "alice@example.com" and who["method"] == "ssh"
    assert who["sshKey"] == key.fingerprint()
    assert statement["predicate"]["trust"]["allowedSigners"]["rev"] == rev
    assert "alice@example.com (SSH signature by key" in archive_bytes(pack, "report.html").decode()
    capsys.readouterr()
    assert run("report", "verify", str(pack), "--repo", str(repo)) == 0
    assert "generated by alice@example.com (SSH signature verified)" in capsys.readouterr().out
    # The documented commands that make and check a pack, as written.
    documented = subprocess.run(
        ["bash", "-euc", doc_block("sh", "flowloom report verify q1.zip")],
        cwd=repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert documented.returncode == 0, documented.stdout + documented.stderr
    assert "re-performed: no difference" in documented.stdout
    # The documented OpenSSH check of the generator's signature.
    log_vkey = subprocess.run(
        [sys.executable, "-m", "flowloom", "log", "vkey"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    folder = tmp_path / "check"
    done = without_flowloom(folder, pack, log_vkey)
    assert done.returncode == 0, done.stderr
    assert "generator: alice@example.com" in done.stdout
    ssh = subprocess.run(
        ["bash", "-euc", doc_block("sh", "ssh-keygen -Y verify")],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={"REPO": str(repo), "REV": rev, "WHO": "alice@example.com", "PATH": "/usr/bin:/bin",
             "HOME": str(home)},
    )  # fmt: skip
    assert ssh.returncode == 0, ssh.stderr
    assert 'Good "flowloom" signature for alice@example.com' in ssh.stdout + ssh.stderr
    # Someone else's identity does not verify.
    wrong = subprocess.run(
        ["bash", "-euc", doc_block("sh", "ssh-keygen -Y verify")],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={"REPO": str(repo), "REV": rev, "WHO": "mallory@example.com",
             "PATH": "/usr/bin:/bin", "HOME": str(home)},
    )  # fmt: skip
    assert wrong.returncode != 0


def test_periods_are_printed_as_requested() -> None:
    from flowloom.compliance.assess import parse_period

    days = parse_period("2026-12-01", "2026-12-07")
    assert days.label == "2026-12-01 to 2026-12-07 (both days included, UTC)"
    assert days.end.isoformat() == "2026-12-08T00:00:00+00:00"  # assessed half-open
    times = parse_period("2026-12-01T10:00:00+02:00", "2026-12-07T12:30:00.5Z")
    assert times.label == "2026-12-01T08:00:00Z to 2026-12-07T12:30:00.5Z (end excluded, UTC)"
