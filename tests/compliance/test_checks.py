"""Each check's other outcomes, one small real history each (git, SQLite ledger, directory).

The end-to-end month (test_e2e_controls.py) covers the common exceptions; these tests
cover the rest: a body deleted without a tombstone, incomplete or mismatched
signatures, late, self- and pending override approvals, failed and late CI, links the
hooks never recorded, sessions the ledger does not know, unsigned tails and anchors
that disagree with the log.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.checks import CHECKS
from flowloom.compliance.model import Assessment, CheckResult
from flowloom.decisions.records import content_digest
from flowloom.errors import InputError
from flowloom.ledger.body import subject_pseudonym
from tests.compliance.world import ANN, BOB, CAROL, RITA, World, at, empty_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = empty_world(tmp_path / "w", start=at(20, month=2))
    built.commit("README.md", "x\n", "Initial commit", who=ANN)  # before the period
    built.clock.set(at(2))
    yield built
    built.close()


def run(world: World, *, now_day: int = 30) -> Assessment:
    return assess(
        world.ledger,
        framework="sox",
        period=parse_period("2026-03-01", "2026-03-31"),
        trust=world.trust,
        repo=world.repo,
        now=at(now_day),
        checks=list(CHECKS),
    )


def flagged(result: CheckResult) -> set[tuple[str, str | int | None]]:
    return {
        (f.what, f.commit if f.commit is not None else f.entry)
        for f in result.findings
        if f.severity != "info"
    }


def test_a_body_deleted_without_tombstone_is_caught(world: World) -> None:
    index = world.ledger.record("agent.prompt", body=b"secret", data_subject="eve").index
    world.ledger.checkpoint()
    world.store.delete_bodies(world.ledger.log, subject_pseudonym(world.ledger.log, "eve"))
    result = run(world)
    assert flagged(result.check("erasure")) == {("body-missing-without-tombstone", index)}
    assert flagged(result.check("trail_integrity")) == {("verification-problem", index)}
    assert not result.ledger.verified


def test_unsigned_tail_and_missing_checkpoint(world: World) -> None:
    world.ledger.record("agent.prompt")
    assert ("no-checkpoint", None) in flagged(run(world).check("trail_integrity"))
    world.ledger.checkpoint()
    world.clock.advance(hours=1)
    world.ledger.record("agent.prompt")
    assert flagged(run(world).check("trail_integrity")) == {("unsigned-tail", None)}


def test_anchors_that_disagree_with_the_log(world: World) -> None:
    world.ledger.record("agent.prompt")
    world.ledger.checkpoint()
    fake_root = base64.b64encode(b"\x01" * 32).decode()
    for size, root in ((1, fake_root), (99, fake_root)):
        world.ledger.record(
            "checkpoint.anchor",
            meta={
                "refs": {
                    "type": "tsa",
                    "checkpoint": {"origin": world.ledger.origin, "size": size, "root": root},
                    "where": "tsa.example",
                }
            },
        )
    world.ledger.checkpoint()
    result = run(world)
    assert {f[0] for f in flagged(result.check("trail_integrity"))} == {
        "anchor-mismatch",
        "anchor-beyond-log",
    }
    assert [a.checkpoint_size for a in result.ledger.anchors] == [1, 99]


def test_signature_problems(world: World) -> None:
    world.user(ANN)
    world.user(RITA)
    decision = world.decide("Something", ANN, session=None, model=None)
    incomplete = world.ledger.record(
        "signature.apply",
        meta={
            "actor": {"type": "human", "id": "usr_x"},
            "subject": f"decision:{decision}",
            "refs": {"signer": "usr_x", "meaning": "approved", "content_digest": "sha256:00"},
        },
    ).index
    wrong = world.ledger.record(
        "signature.apply",
        meta={
            "actor": {"type": "human", "id": "usr_x", "name": "X"},
            "subject": f"decision:{decision}",
            "refs": {
                "signer": "usr_x",
                "printed_name": "X",
                "meaning": "approved",
                "content_digest": "sha256:" + "0" * 64,
                "components": ["email", "password"],
            },
        },
    ).index
    forged = world.ledger.record(
        "decision.approve",
        meta={
            "actor": {"type": "human", "id": "usr_y"},
            "subject": decision,
            "refs": {"meaning": "approved", "content_digest": "sha256:" + "0" * 64,
                     "signature": wrong},
        },
    ).index  # fmt: skip
    good_signature, _ = world.approve(decision, RITA)
    result = run(world).check("signature_manifestation")
    assert flagged(result) == {
        ("signature-incomplete", incomplete),
        ("signature-content-mismatch", wrong),
        ("approval-signature-mismatch", forged),
    }
    assert good_signature in result.evidence_entries


def test_override_approval_outcomes(world: World) -> None:
    for person in (ANN, BOB, CAROL):
        world.user(person)
    late = world.grant_override("late", ANN, "main")
    self_approved = world.grant_override("mine", CAROL, "main")
    world.clock.advance(hours=1)
    world.sign(
        f"entry:{self_approved}", content_digest(world.ledger.entry(self_approved).envelope), CAROL
    )
    world.clock.advance(hours=80)
    world.sign(f"entry:{late}", content_digest(world.ledger.entry(late).envelope), CAROL)
    world.clock.set(at(29))
    pending = world.grant_override("fresh", BOB, "main")
    result = run(world, now_day=30).check("override_approval")
    assert flagged(result) == {
        ("override-approved-late", late),
        ("override-self-approved", self_approved),
    }
    assert ("override-approval-pending", pending) in {
        (f.what, f.entry) for f in result.findings if f.severity == "info"
    }


def test_ci_failed_and_ci_after_deploy(world: World) -> None:
    world.user(RITA)
    decision = world.decide("Two changes", ANN, session=None, model=None)
    world.approve(decision, RITA)
    world.clock.advance(hours=1)
    failed = world.commit("a.py", "a\n", "A", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(failed, "main", who=ANN, decision=decision)
    world.ci(failed, "main", ok=False)
    world.clock.advance(hours=1)
    late = world.commit("b.py", "b\n", "B", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(late, "main", who=ANN, decision=decision)
    world.clock.advance(hours=1)
    world.ci(late, "main")
    result = run(world).check("tested_before_deploy")
    assert flagged(result) == {("tests-failed", failed), ("tested-after-deploy", late)}
    message = next(f.message for f in result.findings if f.what == "tests-failed")
    assert "tests.test_app::test_pay" in message


def test_a_passing_gate_is_not_a_test_run(world: World) -> None:
    """ci.result is the decision-link gate's verdict: only test.result for the tree counts."""
    world.user(RITA)
    decision = world.decide("Gate only", ANN, session=None, model=None)
    world.approve(decision, RITA)
    world.clock.advance(hours=1)
    gated = world.commit("g.py", "g\n", "G", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.link(gated, "main", who=ANN, decision=decision)
    world.ci(gated, "main", gate_only=True)
    world.clock.advance(hours=1)
    # Results for a different tree (an earlier state) do not test this one.
    other = world.commit("h.py", "h\n", "H", who=ANN, trailers={"FlowLoom-Decision": decision})
    world.tests(gated, "main")
    world.link(other, "main", who=ANN, decision=decision)
    result = run(world).check("tested_before_deploy")
    assert flagged(result) == {("untested", other), ("tested-after-deploy", gated)}
    [untested] = [f for f in result.findings if f.what == "untested"]
    assert "no test results recorded for its tree" in untested.message
    assert "flowloom ci record --junit PATH" in untested.message


def test_links_the_hooks_never_recorded_and_unknown_sessions(world: World) -> None:
    decision = world.decide("Unrecorded", ANN, session="S-ghost", model=None)
    world.clock.advance(hours=1)
    sha = world.commit(
        "c.py", "c\n", "C", who=ANN,
        trailers={"FlowLoom-Decision": decision, "FlowLoom-Session": "S-ghost"},
    )  # fmt: skip
    modelled = world.decide("Model only", ANN, session=None, model="gpt-5-codex")
    world.clock.advance(hours=1)
    other = world.commit("d.py", "d\n", "D", who=ANN, trailers={"FlowLoom-Decision": modelled})
    world.link(other, "main", who=ANN, decision=modelled)
    result = run(world)
    assert flagged(result.check("completeness")) == {("link-not-recorded", sha)}
    assert flagged(result.check("ai_traceability")) == {
        ("session-unrecorded", sha),
        ("no-session", other),
    }


def test_period_parsing() -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    assert period.end - period.start == timedelta(days=31)
    assert at(31, 23) in period and at(1, 0, month=4) not in period
    exact = parse_period("2026-03-01T10:00:00Z", "2026-03-01T14:00:00+02:00")
    assert exact.end - exact.start == timedelta(hours=2)  # offsets are honoured
    with pytest.raises(InputError, match="empty"):
        parse_period("2026-03-01T10:00:00Z", "2026-03-01T12:00:00+02:00")
    with pytest.raises(InputError, match="is not a date"):
        parse_period("March", "2026-03-31")
    with pytest.raises(InputError, match="empty"):
        parse_period("2026-03-31", "2026-03-01")
    for start, end in [("2026-01-01", "9999-12-31"), ("1969-12-31", "2026-01-01")]:
        with pytest.raises(InputError, match="out of range"):
            parse_period(start, end)
    with pytest.raises(InputError, match="out of range"):  # past the calendar in UTC
        parse_period("2026-01-01", "9999-12-31T23:00:00-05:00")
    assert parse_period("1970-01-01", "8999-12-31").end.year == 9000


def test_protected_branch_patterns_select_the_population(world: World) -> None:
    from flowloom.repo.policy import Policy

    world.git("checkout", "-q", "-b", "release/1.0")
    sha = world.commit("r.py", "r\n", "Release tweak", who=BOB)
    result = assess(
        world.ledger,
        framework="soc2",
        period=parse_period("2026-03-01", "2026-03-31"),
        trust=world.trust,
        repo=world.repo,
        policy=Policy(protected_branches=("release/*",)),
        now=at(30),
    )
    assert result.branches == ("release/1.0",)
    assert [c.commit for c in result.changes] == [sha]
    assert flagged(result.check("segregation_of_duties")) == {("unapproved", sha)}


def test_a_tree_signature_counts_only_with_the_tree_s_own_digest(world: World) -> None:
    """A signature naming tree:<id> approves that tree only if the digest it signed is
    that tree's; one over another digest approves nothing (even from before the period,
    where the signature check would not list it)."""
    from flowloom.compliance.changes import git_object_digest

    world.user(RITA)
    commits = {}
    for name, digest_of in (("right", None), ("wrong", "0" * 40)):
        decision = world.decide(f"Change {name}", BOB, session=None, model=None)
        sha = world.commit(
            f"{name}.py", f"{name}\n", f"Change {name}", who=BOB,
            trailers={"FlowLoom-Decision": decision},
        )  # fmt: skip
        world.link(sha, "main", who=BOB, decision=decision)
        tree = world.repo.tree(sha)
        world.sign(f"tree:{tree}", git_object_digest(digest_of or tree), RITA)
        world.clock.advance(hours=1)
        commits[name] = sha
    flags = flagged(run(world).check("segregation_of_duties"))
    assert {sha for _, sha in flags} == {commits["wrong"]}, flags


def test_a_user_enabled_again_may_act_but_not_while_disabled_or_deleted(world: World) -> None:
    world.user(RITA)
    rita = world.users[RITA[1]].id
    actor = {"type": "human", "id": rita, "name": RITA[0]}
    before = world.ledger.record("agent.prompt", meta={"actor": actor}).index
    steps: list[int] = []
    for change in (
        world.directory.disable_user,
        world.directory.enable_user,
        world.directory.delete_user,
    ):
        world.clock.advance(hours=1)
        change(rita)
        world.clock.advance(hours=1)
        steps.append(world.ledger.record("agent.prompt", meta={"actor": actor}).index)
    world.ledger.checkpoint()
    during, after, late = steps
    found = flagged(run(world).check("access_revocation"))
    assert found == {("disabled-user-activity", during), ("disabled-user-activity", late)}
    assert before not in {e for _, e in found} and after not in {e for _, e in found}
