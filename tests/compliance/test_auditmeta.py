"""What auditors expect in a report, over the real month of tests/compliance/world.py.

A real git repository and SQLite ledger: exception ids stay the same across runs and
formats; the population reconciles git with the ledger and lists commits before the
baseline apart (never as exceptions); the manual-testing sample is drawn again from its
seed, with FlowLoom and with plain SHA-256; a management response recorded in the
ledger shows beside its exception, an unproven one does not; a GDPR report names
nobody; and a pack with a chosen seed re-performs without difference.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.model import Assessment
from flowloom.compliance.reperform import verify_report
from flowloom.compliance.reports import render
from flowloom.compliance.responses import record_response
from flowloom.compliance.sampling import FREQUENCY_TABLE, draw, frequency_of
from flowloom.compliance.settings import ComplianceSettings
from flowloom.compliance.snapshot import take_snapshot
from flowloom.errors import InputError
from flowloom.ledger import merkle
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.note import Verifier
from flowloom.store.interface import PendingEntry
from tests.compliance.test_signed_reports import env as env
from tests.compliance.test_signed_reports import run
from tests.compliance.world import ANN, BOB, CAROL, PROJECT, World, at, build_world

MARCH = parse_period("2026-03-01", "2026-03-31")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("auditmeta-world"))
    yield built
    built.close()


def march(world: World, framework: str = "sox", **extra: object) -> Assessment:
    return assess(
        world.ledger,
        framework=framework,
        period=MARCH,
        trust=world.trust,
        repo=world.repo,
        now=at(31, 12),
        snapshot=take_snapshot(world.ledger),
        **extra,  # type: ignore[arg-type]
    )


def exceptions(assessment: Assessment) -> list[tuple[str, str, str | None]]:
    return [(f.id, f.what, f.commit) for f in assessment.exceptions]


# -- exception ids -------------------------------------------------------------------------


def test_exception_ids_are_stable_across_runs_and_shown_in_every_format(
    world: World, tmp_path: Path
) -> None:
    first = march(world)
    world.ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": "ops"}})
    second = march(world)  # another checkpoint, more entries: the same exceptions
    assert first.ledger.size != second.ledger.size
    assert exceptions(first) == exceptions(second) and exceptions(first)
    ids = [f.id for f in first.exceptions]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SOX-[0-9a-f]{10}(-\d+)?", i) for i in ids), ids
    # The same finding in another framework's report has that framework's id.
    part11 = march(world, "part11")
    assert all(f.id.startswith("PART11-") for f in part11.exceptions)
    # Every format shows them: JSON, the exceptions CSV, the HTML (checks and exceptions).
    data = json.loads(render("json", first, tmp_path / "r.json").read_text())
    assert [e["id"] for e in data["exceptions"]] == ids
    rows = list(csv.DictReader(io.StringIO(render("exceptions-csv", first, tmp_path / "e.csv")
                                           .read_text(), newline="")))  # fmt: skip
    assert [r["id"] for r in rows] == ids
    page = render("html", first, tmp_path / "r.html").read_text()
    assert all(f"<code>{i}</code>" in page for i in ids)
    assert Assessment.from_json(data).exceptions == first.exceptions


# -- population, completeness, baseline ----------------------------------------------------


def test_the_population_reconciles_git_and_the_ledger(world: World) -> None:
    result = march(world)
    found = result.completeness
    assert found is not None and not found.needs
    assert found.commits == len(result.changes) and found.reconciled
    assert found.unlinked == sum(1 for c in result.changes if c.link is None) >= 1
    assert found.linked + found.unlinked == found.commits
    assert found.ledger_links >= 1 and "first-parent commit of main" in found.definition
    assert found.baseline_source == "first ledger entry" and not found.pre_adoption
    # Without the repository it says what it needs rather than reconciling nothing.
    blind = assess(world.ledger, framework="sox", period=MARCH, trust=world.trust, now=at(31))
    assert blind.completeness is not None and "repository" in blind.completeness.needs
    assert blind.sampling is None


def test_commits_before_the_baseline_are_listed_apart_never_as_exceptions(world: World) -> None:
    direct_push = world.expected["c3"]  # "Quick fix", pushed straight to main on 7 March
    before = march(world)
    assert direct_push in {f.commit for f in before.exceptions if f.severity != "info"}
    adopted = march(world, settings=ComplianceSettings(baseline=at(8, 0)))
    found = adopted.completeness
    assert found is not None
    assert found.baseline == "2026-03-08T00:00:00.000000Z"
    assert found.baseline_source.startswith("configured")
    listed = {p.commit for p in found.pre_adoption}
    assert direct_push in listed
    assert all(p.committed_at < found.baseline for p in found.pre_adoption)
    assert not listed & {f.commit for f in adopted.exceptions}
    assert not listed & {c.commit for c in adopted.changes}
    assert found.commits == len(before.changes) - len(listed) and found.reconciled
    page = render("html", adopted, world.root / "baseline.html").read_text()
    assert "Pre-adoption commits" in page and direct_push[:12] in page


# -- sampling ------------------------------------------------------------------------------


def test_the_sample_is_drawn_again_from_its_seed(world: World) -> None:
    result = march(world, sample_seed="auditor-2026")
    sample = result.sampling
    assert sample is not None and sample.seed == "auditor-2026"
    population = [c.commit for c in result.changes]
    assert sample.population == len(population)
    assert march(world, sample_seed="auditor-2026").sampling == sample  # same seed, same
    other = march(world, sample_seed="another-seed").sampling
    assert other is not None and other.items != sample.items
    # The documented method, with nothing but SHA-256.
    ranked = sorted(
        population, key=lambda c: hashlib.sha256(f"auditor-2026:{c}".encode()).hexdigest()
    )
    assert list(sample.items) == ranked[: sample.size]
    # Sized by the table: a handful of changes in a month is a weekly control.
    assert sample.frequency == frequency_of(len(population), timedelta(days=31))
    assert "exceptions" in sample.basis and sample.table == FREQUENCY_TABLE
    # By default the seed comes from the checkpoint's root: nobody picks it in advance.
    assert march(world).sampling.seed != "auditor-2026"  # type: ignore[union-attr]


def test_sample_sizes_follow_the_table() -> None:
    commits = [f"{i:040x}" for i in range(2000)]
    year, month = timedelta(days=365), timedelta(days=31)
    assert draw(commits[:2], length=year, seed="s", exceptions=False).frequency == "annual"
    assert draw(commits[:6], length=year, seed="s", exceptions=False).size == 2  # quarterly
    monthly = draw(commits[:20], length=year, seed="s", exceptions=True)
    assert (monthly.frequency, monthly.size) == ("monthly", 5)
    weekly = draw(commits[:10], length=month, seed="s", exceptions=False)
    assert (weekly.frequency, weekly.size) == ("weekly", 5)
    daily = draw(commits[:300], length=year, seed="s", exceptions=False)
    assert (daily.frequency, daily.size) == ("daily", 20)
    busy = draw(commits, length=month, seed="s", exceptions=True)
    assert (busy.frequency, busy.size) == ("multiple times daily", 60)
    small = draw(commits[:3], length=timedelta(days=1), seed="s", exceptions=True)
    assert small.size == 3 and "every change is tested" in small.basis
    assert draw([], length=month, seed="s", exceptions=False).items == ()


# -- management responses ------------------------------------------------------------------


def test_a_recorded_response_is_shown_beside_its_exception(world: World, tmp_path: Path) -> None:
    first = march(world)
    target = next(f for f in first.exceptions if f.what == "unlinked-commit")
    assert first.response_to(target.id) is None
    actor = {"type": "human", "id": CAROL[1], "name": CAROL[0]}
    entry = record_response(
        world.ledger, target.id, "Reverted; branch protection now enforced",
        actor=actor, owner="Carol Ops", due="2026-04-15",
    )  # fmt: skip
    # The same kind appended without the attestation (by hand, into the store) counts not.
    forged = world.ledger.prepare(
        "compliance.response",
        meta={"actor": {"type": "human", "id": BOB[1]}, "subject": target.id,
              "refs": {"exception": target.id, "response": "nothing to see"}},
    )  # fmt: skip
    envelope = json.loads(forged.entry.envelope)
    envelope["refs"].pop("attestation")
    raw = canonicalize(envelope)
    world.ledger.writer.append_many(
        [PendingEntry(raw, merkle.leaf_hash(raw), "compliance.response", None)]
    )
    second = march(world)
    shown = second.response_to(target.id)
    assert shown is not None and shown.entry == entry and shown.by == CAROL[1]
    assert (shown.owner, shown.due) == ("Carol Ops", "2026-04-15")
    assert [r.entry for r in second.responses] == [entry]
    # Responding changes no finding; the forged one is itself reported as unverified.
    added = set(exceptions(second)) - set(exceptions(first))
    assert set(exceptions(first)) <= set(exceptions(second))
    assert [what for _, what, _ in added] == ["unverified-event"]
    rows = list(csv.DictReader(io.StringIO(render("exceptions-csv", second, tmp_path / "e.csv")
                                           .read_text(), newline="")))  # fmt: skip
    row = next(r for r in rows if r["id"] == target.id)
    assert row["response"] == "Reverted; branch protection now enforced"
    assert (row["response_owner"], row["response_due"]) == ("Carol Ops", "2026-04-15")
    assert row["response_entry"] == str(entry)
    page = render("html", second, tmp_path / "r.html").read_text()
    assert "Reverted; branch protection now enforced" in page
    with pytest.raises(InputError, match="not an exception id"):
        record_response(world.ledger, "nope", "x", actor=actor)
    with pytest.raises(InputError, match="is not a date"):
        record_response(world.ledger, target.id, "x", actor=actor, due="15/04/2026")


def test_an_unproven_response_is_not_shown(world: World) -> None:
    target = next(f for f in march(world).exceptions if f.what == "unlinked-commit")
    before = {r.entry for r in march(world).responses}
    # The log's key attests it, but nothing proves the person: like an unsigned approval.
    from flowloom.ledger.provenance import Trust

    log_only = Trust.of_log([world.ledger.verifier])
    record_response(world.ledger, target.id, "Fixed, trust me", actor={"type": "human",
                    "id": ANN[1]})  # fmt: skip
    result = assess(
        world.ledger, framework="sox", period=MARCH, trust=log_only, repo=world.repo,
        now=at(31, 12), snapshot=take_snapshot(world.ledger),
    )  # fmt: skip
    assert not any(r.response == "Fixed, trust me" for r in result.responses)
    assert {r.entry for r in march(world).responses} >= before


# -- GDPR: personal data minimised ---------------------------------------------------------


def test_a_gdpr_report_names_nobody(world: World, tmp_path: Path) -> None:
    result = march(world, "gdpr")
    assert result.minimised.startswith("personal data minimised")
    everything = json.dumps(result.to_json(), ensure_ascii=False)
    everything = everything.replace(result.ledger.origin, "")
    assert not re.search(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}", everything)
    for name in ("Ann Author", "Bob Builder", "Rita Reviewer", "Carol Ops", "Mallory"):
        assert name not in everything
    # The same person has the same pseudonym throughout, initials and a keyed digest.
    authors = {c.author for c in result.changes}
    assert authors and all(re.fullmatch(r"([A-Z]\.){1,3}-[0-9a-f]{8}", a) for a in authors)
    for fmt, name in (("html", "g.html"), ("csv", "g.csv"), ("exceptions-csv", "ge.csv"),
                      ("audit-trail-csv", "gt.csv")):  # fmt: skip
        text = render(fmt, result, tmp_path / name).read_text()
        assert "@example.com" not in text, fmt
        assert "21 CFR Part 11" not in text, fmt
    # Not minimised in the other frameworks, where people must be named.
    assert "ann@example.com" in json.dumps(march(world, "sox").to_json())
    assert (
        "21 CFR Part 11 §11.10(e)"
        in render("html", march(world, "part11"), tmp_path / "p.html").read_text()
    )


def test_a_gdpr_report_names_its_generator_in_full_in_the_body_and_the_statement(
    world: World, tmp_path: Path
) -> None:
    """Who generated the report is the one person named (an authenticated employee making
    the record, not a subject of it); the body and its signed statement agree. Everyone
    the assessment is about stays pseudonymised, the generator too where they appear as
    a developer."""
    from flowloom.compliance.minimise import pseudonym
    from flowloom.compliance.run import generate_report
    from flowloom.compliance.statement import Generator, TrustRecord
    from flowloom.ledger.dsse import Envelope

    made = generate_report(
        world.ledger, framework="gdpr", period=MARCH, fmt="json", out=tmp_path / "gdpr.json",
        trust=TrustRecord.of_server(world.trust), generator=Generator(ANN[1], "server"),
        repo=world.repo,
    )  # fmt: skip
    body = json.loads(made.path.read_text())
    predicate = Envelope.parse(made.statement_path.read_bytes()).statement()["predicate"]
    assert predicate["generatedBy"]["identity"] == ANN[1]
    assert predicate["generatedBy"]["authenticated"] is True
    assert body["generated_by"] == f"{ANN[1]} (authenticated by the FlowLoom server)"
    assert body["minimised"].startswith("personal data minimised")
    rest = json.dumps({k: v for k, v in body.items() if k != "generated_by"}, ensure_ascii=False)
    rest = rest.replace(body["ledger"]["origin"], "")
    assert not re.search(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}", rest)
    assert ANN[0] not in rest and BOB[0] not in rest
    ann = pseudonym(body["ledger"]["origin"], ANN[1], ANN[0])
    assert ann in {c["author"] for c in body["changes"]}
    html = render("html", Assessment.from_json(body), tmp_path / "gdpr.html").read_text()
    assert html.count(ANN[1]) == 1 and f"<dd>{ANN[1]} (authenticated" in html


# -- re-performing with the recorded seed --------------------------------------------------


def test_a_pack_with_a_chosen_seed_re_performs_without_difference(
    env: World, tmp_path: Path
) -> None:
    pack = tmp_path / "seeded.zip"
    code = run("report", "--framework", "sox", "--from", "2026-03-01", "--to", "2026-03-31",
               "--format", "zip", "--out", str(pack), "--sample-seed", "auditor-2026")  # fmt: skip
    assert code == 0
    result = verify_report(
        pack, trusted=[Verifier.from_vkey(env.ledger.verifier.vkey)], repo=env.repo
    )
    assert result.ok and result.reperformed, result.differences + result.problems
    import zipfile

    with zipfile.ZipFile(pack) as archive:
        data = json.loads(archive.read("report.json"))
    assert data["sampling"]["seed"] == "auditor-2026" and data["sampling"]["items"]
    assert data["verification"]["vkey"] == env.ledger.verifier.vkey
    assert data["verification"]["checkpoint_size"] == data["ledger"]["checkpoint_size"]
    assert run("report", "--framework", "sox", "--from", "2026-03-01", "--to", "2026-03-31",
               "--format", "json", "--out", str(tmp_path / "x.json"),
               "--sample-seed", "no spaces!") != 0  # fmt: skip
    assert data["project"] == PROJECT
