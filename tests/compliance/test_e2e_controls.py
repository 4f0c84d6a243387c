"""The must-hold of issue 7: a realistic month, and each check flags exactly what it should.

The history (tests/compliance/world.py) has several people, AI sessions with and
without a recorded model version, Part 11 signatures, a self-approval, a direct push,
two emergency overrides (one approved the next morning, one never), a change merged
without CI, a branch reset after linking, a disabled user and a revoked key used
afterwards, a legal hold, a GDPR erasure, an erasure under hold and a premature purge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.checks import CHECKS
from flowloom.compliance.model import Assessment, CheckResult
from flowloom.repo.policy import Policy
from tests.compliance.world import World

NOW = datetime(2026, 4, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(compliance_world: World) -> World:
    return compliance_world


@pytest.fixture(scope="module")
def march(world: World) -> Assessment:
    return assess(
        world.ledger,
        framework="sox",
        period=parse_period("2026-03-01", "2026-03-31"),
        trust=world.trust,
        repo=world.repo,
        policy=Policy(),
        now=NOW,
        checks=list(CHECKS),
    )


def flagged(result: CheckResult) -> set[tuple[str, str | int | None]]:
    """(what, commit or entry) of every finding that flags (not info)."""
    return {
        (f.what, f.commit if f.commit is not None else f.entry)
        for f in result.findings
        if f.severity != "info"
    }


def infos(result: CheckResult) -> set[tuple[str, str | int | None]]:
    return {
        (f.what, f.commit if f.commit is not None else f.entry)
        for f in result.findings
        if f.severity == "info"
    }


def test_segregation_of_duties(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("segregation_of_duties")
    assert result.status == "flag"
    assert result.examined == 7  # C1, C2, C3, C4, C5, M6, M7: first-parent commits of main
    assert flagged(result) == {
        ("self-approved", e["c2"]),
        ("unapproved", e["c3"]),
        ("approval-not-bound-to-tree", e["m7"]),
    }
    assert infos(result) == {("override", e["c4"]), ("override", e["c5"])}


def test_completeness(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("completeness")
    assert result.examined == 8  # C1..C5, C6a, C6b, C7a: the merges carry no change
    assert flagged(result) == {
        ("unlinked-commit", e["c3"]),
        ("linked-commit-missing", e["c8"]),
        ("history-rewritten", e["m7"]),
    }
    assert infos(result) == {("override", e["c4"]), ("override", e["c5"])}


def test_tested_before_deploy(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("tested_before_deploy")
    assert flagged(result) == {("untested", e["c3"]), ("untested", e["c5"])}


def test_override_approval(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("override_approval")
    assert result.examined == 2
    assert flagged(result) == {("override-unapproved", e["g5"])}
    assert infos(result) == {("override-approved", e["g4"])}


def test_trail_integrity_passes(world: World, march: Assessment) -> None:
    result = march.check("trail_integrity")
    assert result.status == "pass", result.findings
    assert flagged(result) == set()
    assert march.ledger.verified and march.ledger.checkpoint_size == march.ledger.size
    assert "1 bodies verified" in result.summary  # the diff; the three prompts were erased


def test_signature_manifestation(world: World, march: Assessment) -> None:
    result = march.check("signature_manifestation")
    assert flagged(result) == {("approval-unsigned", world.expected["unsigned_approval"])}


def test_access_revocation(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("access_revocation")
    assert flagged(result) == {
        ("disabled-user-activity", e["late_mallory"]),
        ("disabled-user-activity", e["late_laptop"]),
        ("revoked-key-used", e["late_key"]),
    }


def test_retention(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("retention")
    assert flagged(result) == {("purged-early", e["early"]), ("erased-under-hold", e["held"])}
    assert infos(result) == {("erased-on-request", e["request"])}


def test_erasure_passes_and_chain_still_verifies(world: World, march: Assessment) -> None:
    result = march.check("erasure")
    assert result.status == "pass", result.findings
    assert result.examined == 3
    for key in ("early", "held", "request"):
        tomb = world.ledger.entry(world.expected[key])
        assert tomb.kind == "erasure.tombstone"


def test_ai_traceability(world: World, march: Assessment) -> None:
    e = world.expected
    result = march.check("ai_traceability")
    assert result.examined == 5  # C1, C2, C6a, C6b, C7a
    assert flagged(result) == {
        ("model-version-unknown", e["c6a"]),
        ("model-version-unknown", e["c6b"]),
        ("model-unknown", e["c7a"]),
    }


def test_controls_and_change_population(world: World, march: Assessment) -> None:
    e = world.expected
    statuses = {c.control.id: c.status for c in march.controls}
    assert statuses["sox-cm-segregation"] == "flag"
    assert statuses["sox-cm-trail"] == "pass"
    assert statuses["sox-ac-revocation"] == "flag"
    assert statuses["sox-cm-deploy"] == "flag"
    # Partly automated: its check passes, the control stays manual with its requests.
    provisioning = next(c for c in march.controls if c.control.id == "sox-ac-provisioning")
    assert (provisioning.status, provisioning.automated) == ("manual", "pass")
    assert provisioning.requests and "covers only" in provisioning.note
    review = next(c for c in march.controls if c.control.id == "sox-ac-review")
    # No access review campaign was closed in March: the periodic review control says so.
    assert (review.status, review.automated) == ("flag", "flag")
    assert review.checks[0] == "access_review"
    rows = {row.commit: row for row in march.changes}
    assert list(rows) == [e["c1"], e["c2"], e["c3"], e["c4"], e["c5"], e["m6"], e["m7"]]
    c1 = rows[e["c1"]]
    assert c1.decisions == (e["d1"],) and c1.tests == "pass"
    assert c1.flags == ("self-deployed",)  # Ann fast-forwarded main to her own change
    assert c1.models == ("claude-sonnet-4-5-20250929",)
    [rita] = c1.approvals
    assert rita.printed_name == "Rita Reviewer" and rita.signature is not None
    assert rita.bound_to_tree and rita.independent
    assert rows[e["c3"]].link is None and rows[e["c3"]].tests == "none"
    assert set(rows[e["c3"]].flags) == {
        "unapproved",
        "unlinked-commit",
        "untested",
        "self-deployed",
    }
    assert rows[e["c4"]].override == "payment outage P1"
    assert rows[e["c4"]].override_entry == e["g4"]
    m6 = rows[e["m6"]]
    assert any(a.decision is None and a.bound_to_tree for a in m6.approvals)
    assert "evidence for" in march.statement and "not a certification" in march.statement
    trail = {(r.action, r.entry) for r in march.audit_trail}
    assert ("erasure.tombstone", e["held"]) in trail
    assert ("signature.apply", e["override_sig"]) in trail


def test_period_excludes_what_lies_outside(world: World) -> None:
    """April holds nothing: every commit and event of March is out of the period."""
    april = assess(
        world.ledger,
        framework="sox",
        period=parse_period("2026-04-01", "2026-04-30"),
        trust=world.trust,
        repo=world.repo,
        now=NOW,
        checks=list(CHECKS),
    )
    assert april.changes == ()
    for check in ("segregation_of_duties", "override_approval", "access_revocation"):
        assert april.check(check).status == "not_applicable"


def test_every_framework_assesses(world: World) -> None:
    from flowloom.compliance.catalog import FRAMEWORKS

    for framework in FRAMEWORKS:
        result = assess(
            world.ledger,
            framework=framework,
            period=parse_period("2026-03-01", "2026-03-31"),
            trust=world.trust,
            repo=world.repo,
            now=NOW,
        )
        assert result.controls and all(c.status != "error" for c in result.controls)
        assert Assessment.from_json(result.to_json()) == result


def test_report_without_git(world: World, tmp_path: Path) -> None:
    result = assess(
        world.ledger,
        framework="part11",
        period=parse_period("2026-03-01", "2026-03-31"),
        trust=world.trust,
        now=NOW,
    )
    assert result.changes == ()
    statuses = {c.control.id: c for c in result.controls}
    assert statuses["part11-11.10h"].status == "manual"
    assert statuses["part11-11.50"].status == "flag"  # D2's approval is not a signature
    # Commit checks without git are not assessed (never not applicable, never a pass),
    # and say what they need.
    documentation = statuses["part11-11.10k"]
    assert (documentation.status, documentation.automated) == ("not_assessed", "not_assessed")
    assert "needs the git repository" in documentation.note
    completeness = result.check("completeness")
    assert completeness.status == "not_assessed"
    assert "commit.link events of the period" in completeness.reason
    assert "[server.repositories]" in completeness.reason
    assert result.flagged  # --fail-on-flag fails: part of the evidence was not examined


def test_new_checks_over_the_month(world: World, march: Assessment) -> None:
    """Develop/deploy separation from the reflog, AI providers, access changes."""
    e = world.expected
    deploy = march.check("deploy_separation")
    assert flagged(deploy) == {
        ("self-deployed", e[key]) for key in ("c1", "c2", "c3", "c4", "m6", "m7")
    }  # C5 (Bob's) was put on main by Ann: the one change deployed by someone else
    c2 = next(f for f in deploy.findings if f.commit == e["c2"])
    assert "operated the AI session S2" in c2.message  # Ann ran the agent for Bob
    processors = march.check("ai_processors")
    assert {f.details["session"] for f in processors.exceptions} == {"S1", "S2", "S3", "S4"}
    assert {f.what for f in processors.exceptions} == {"provider-unrecorded"}
    provisioning = march.check("access_provisioning")
    assert provisioning.status == "pass" and not provisioning.exceptions
    [removed] = provisioning.notes  # Mallory disabled (in the instance log)
    assert removed.what == "access-removed" and removed.details["log"] == "flowloom-instance"
    assert "no authenticated person" in removed.message
    privileged = march.check("privileged_access")
    assert privileged.status == "not_applicable" and "no owner or admin" in privileged.reason


def test_over_claims_do_not_pass(world: World) -> None:
    """§11.10(a), §11.10(d), §11.300, GDPR Art. 30 and ISO A.8.26 never pass on checks
    that do not evidence them; whatever the month holds, they are manual or flagged."""
    for framework, ids in (
        ("part11", ["part11-11.10a", "part11-11.10d", "part11-11.300a", "part11-11.300c"]),
        ("gdpr", ["gdpr-art30"]),
        ("iso27001", ["iso27001-8.26"]),
    ):
        result = assess(
            world.ledger,
            framework=framework,
            period=parse_period("2026-03-01", "2026-03-31"),
            trust=world.trust,
            repo=world.repo,
            now=NOW,
        )
        statuses = {c.control.id: (c.status, c.automated) for c in result.controls}
        for control_id in ids:
            assert statuses[control_id][0] in ("manual", "flag"), (control_id, statuses)
    assert statuses["iso27001-8.26"] == ("manual", "")
