"""The security_scanned check (ISO 27001 A.8.29, SSDF PW.7): scan.result per change tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.catalog import load_framework
from flowloom.compliance.model import CheckResult
from flowloom.scanners.evidence import ScanEvidence
from flowloom.scanners.sarif import parse_sarif
from tests.compliance.world import ANN, World, at, empty_world

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = empty_world(tmp_path / "w", start=at(20, month=2))
    built.commit("README.md", "x\n", "Initial commit", who=ANN)
    built.clock.set(at(2))
    yield built
    built.close()


def _check(world: World) -> CheckResult:
    return assess(
        world.ledger,
        framework="iso27001",
        period=parse_period("2026-03-01", "2026-03-31"),
        trust=world.trust,
        repo=world.repo,
        now=at(30),
        checks=["security_scanned"],
    ).check("security_scanned")


def _scan(world: World, sha: str, fixture: str, decision: str | None) -> int:
    data = (FIXTURES / fixture).read_bytes()
    tools, results = parse_sarif(data, fixture)
    evidence = ScanEvidence.of(
        tools,
        results,
        commit=sha,
        tree=world.repo.tree(sha),
        data=data,
        name=fixture,
        root=world.repo.cwd,
        decision_of=lambda path, line: decision,
    )
    return world.ledger.record("scan.result", meta=evidence.meta()).index


def test_scans_per_change_tree(world: World) -> None:
    decision = world.decide("Shell out for the build", ANN, session=None, model=None)
    world.clock.advance(hours=1)
    first = world.commit("a.py", "a\n", "A", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(first, "main", who=ANN, decision=decision)
    assert _check(world).status == "not_applicable"  # no scanner in use yet
    world.clock.advance(hours=1)
    scanned = world.commit("b.py", "b\n", "B", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(scanned, "main", who=ANN, decision=decision)
    clean = _scan(world, scanned, "semgrep.sarif", decision)
    result = _check(world)
    assert {(f.what, f.commit) for f in result.findings} == {("unscanned", first)}
    assert clean in result.evidence_entries
    world.clock.advance(hours=1)
    flagged = world.commit("c.py", "c\n", "C", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(flagged, "main", who=ANN, decision=decision)
    _scan(world, flagged, "bandit.sarif", decision)
    result = _check(world)
    found = {f.what: f for f in result.findings}
    assert set(found) == {"unscanned", "scan-errors"}
    assert "B602" in found["scan-errors"].message
    assert found["scan-errors"].details["decisions"] == [decision]
    assert result.status == "flag"


def test_the_controls_name_the_check() -> None:
    iso = {c.id: c for c in load_framework("iso27001").controls}
    ssdf = {c.id: c for c in load_framework("ssdf").controls}
    assert "security_scanned" in iso["iso27001-8.29"].checks
    assert "security_scanned" in ssdf["ssdf-pw.7"].checks
