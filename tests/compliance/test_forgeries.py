"""Forged authority never counts in compliance: every kind, written around its endpoint.

A real world (git, a ledger on SQLite or PostgreSQL, the directory, Part 11 signatures)
where each authority-bearing kind is also forged straight into the store — with no
attestation, or attested by a key the reader does not trust: an approval and the
e-signatures naming the approver, a CI verdict, the release of a legal hold and a hold,
a role grant, a user disabled, an anchor, an export record, an erasure, a key. Real
events of the same kinds sit beside them, so each assertion can fail both ways: the
real ones count, the forged ones are reported as unverified and count for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.changes import git_object_digest
from flowloom.compliance.checks import CHECKS
from flowloom.compliance.history import LedgerView
from flowloom.compliance.model import Assessment, CheckResult
from flowloom.compliance.retention import holds, place_hold, plan_purge
from flowloom.compliance.settings import ComplianceSettings
from flowloom.decisions.records import DecisionBook, content_digest
from flowloom.ledger.body import subject_pseudonym
from flowloom.ledger.verify import verify_store
from flowloom.store.interface import Store
from tests.compliance.world import ANN, CAROL, INSTANCE, PROJECT, RITA, World, at, empty_world
from tests.support.forged_rows import FORGERIES, Forgery, forge

PERIOD = parse_period("2026-03-01", "2026-03-31")


class Forged:
    """The world, and the index of every forged event in it (project log and instance)."""

    def __init__(self, world: World, how: Forgery, other_home: Path) -> None:
        self.world = world
        self.how = how
        self.other_home = other_home
        self.project: dict[str, int] = {}
        self.instance: dict[str, int] = {}
        self.real: dict[str, object] = {}

    def forge(
        self, name: str, kind: str, meta: dict[str, object], *, instance: bool = False
    ) -> int:
        ledger = self.world.instance if instance else self.world.ledger
        index = forge(ledger, kind, meta, how=self.how, other_home=self.other_home)
        (self.instance if instance else self.project)[name] = index
        return index


def _human(world: World, person: tuple[str, str]) -> dict[str, str]:
    return {"type": "human", "id": world.users[person[1]].id, "name": person[0]}


def _signature_refs(world: World, person: tuple[str, str], digest: str) -> dict[str, object]:
    return {
        "signer": world.users[person[1]].id,
        "printed_name": person[0],
        "email": person[1],
        "meaning": "approved",
        "statement": "I approve this content.",
        "content_digest": digest,
        "method": "password",
        "components": ["email", "password"],
    }


def _build(world: World, how: Forgery, other_home: Path) -> Forged:
    f = Forged(world, how, other_home)
    w = world
    w.commit("README.md", "x\n", "Initial commit", who=ANN)  # before the period
    for person in (ANN, RITA, CAROL):
        w.user(person)

    # C1: its approval, its signatures and its CI verdict are all forged.
    w.clock.set(at(2))
    d1 = w.decide("Forged approval", ANN, session=None, model=None)
    w.git("checkout", "-q", "-b", "f1", "main")
    c1 = w.commit("a.py", "A = 1\n", "Change one", who=ANN, trailers={"FlowLoom-Decision": d1})
    w.link(c1, "f1", who=ANN, decision=d1)
    w.clock.advance(hours=1)
    record = DecisionBook(w.ledger).get(d1)
    sig = f.forge(
        "signature",
        "signature.apply",
        {
            "actor": _human(w, RITA),
            "subject": f"decision:{d1}",
            "refs": _signature_refs(w, RITA, record.content_digest),
        },
    )
    f.forge(
        "approval",
        "decision.approve",
        {
            "actor": _human(w, RITA),
            "subject": d1,
            "refs": {
                "meaning": "approved",
                "content_digest": record.content_digest,
                "signature": sig,
            },
        },
    )
    tree1 = w.repo.tree(c1)
    f.forge(
        "tree_signature",
        "signature.apply",
        {
            "actor": _human(w, RITA),
            "subject": f"tree:{tree1}",
            "refs": _signature_refs(w, RITA, git_object_digest(tree1)),
        },
    )
    f.forge(
        "ci",
        "ci.result",
        {
            "actor": {"type": "service", "id": "ci", "name": "CI"},
            "subject": "f1",
            "git": {"branch": "f1", "head": c1},
            "refs": {"ok": True, "checked": 1, "linked": 1, "branch": "f1", "commits": []},
        },
    )
    f.forge(
        "tests",
        "test.result",
        {
            "actor": {"type": "service", "id": "ci:github:acme/app"},
            "subject": c1,
            "git": {"branch": "f1", "head": c1},
            "refs": {"ok": True, "commit": c1, "tree": tree1, "tests": 3, "failing": []},
        },
    )
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "f1")

    # C2: the same, done for real: it counts.
    w.clock.set(at(3))
    d2 = w.decide("Real approval", ANN, session=None, model=None)
    w.git("checkout", "-q", "-b", "f2", "main")
    c2 = w.commit("b.py", "B = 1\n", "Change two", who=ANN, trailers={"FlowLoom-Decision": d2})
    w.link(c2, "f2", who=ANN, decision=d2)
    w.clock.advance(hours=1)
    w.ci(c2, "f2")
    w.approve(d2, RITA)
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "f2")

    # An emergency override whose after-the-fact approval is forged.
    w.clock.set(at(4))
    grant = w.grant_override("outage", ANN, "main")
    f.forge(
        "override_signature",
        "signature.apply",
        {
            "actor": _human(w, CAROL),
            "subject": f"entry:{grant}",
            "refs": _signature_refs(w, CAROL, content_digest(w.ledger.entry(grant).envelope)),
        },
    )

    # A real legal hold, a forged release of it, and a forged hold.
    w.clock.set(at(5))
    place_hold(w.ledger, "LH-1", reason="litigation", scope="class:conversation")
    w.clock.advance(hours=1)
    f.forge(
        "release",
        "retention.set",
        {
            "actor": _human(w, ANN),
            "subject": "hold:LH-1",
            "refs": {"action": "release", "hold": "LH-1", "reason": "I say so"},
        },
    )
    f.forge(
        "hold",
        "retention.set",
        {
            "actor": _human(w, ANN),
            "subject": "hold:LH-F",
            "refs": {"action": "hold", "hold": "LH-F", "scope": "all", "reason": "forged"},
        },
    )

    # Rita "disabled" by a forged event; Carol disabled for real. Both act afterwards.
    w.clock.set(at(6))
    f.forge(
        "disabled",
        "auth.user_disabled",
        {
            "actor": {"type": "service", "id": "flowloom", "name": "FlowLoom"},
            "subject": w.users[RITA[1]].id,
            "refs": {"user_id": w.users[RITA[1]].id},
        },
        instance=True,
    )
    w.directory.disable_user(w.users[CAROL[1]].id)
    rita_key = w.principal(RITA).key_id
    f.forge(
        "revoked",
        "auth.key_revoked",
        {"subject": rita_key, "refs": {"key_id": rita_key}},
        instance=True,
    )
    w.clock.set(at(7))
    for person in (RITA, CAROL):
        f.real[person[1]] = w.ledger.record("agent.prompt", meta={"actor": _human(w, person)}).index
    f.real["rita_key_use"] = w.ledger.record(
        "agent.tool", meta={"actor": _human(w, RITA), "refs": {"auth_key": rita_key}}
    ).index

    # Security and ledger facts, forged.
    f.forge(
        "role",
        "auth.role_granted",
        {
            "actor": _human(w, ANN),
            "subject": w.users[ANN[1]].id,
            "refs": {"user_id": w.users[ANN[1]].id, "role": "owner", "project": PROJECT},
        },
    )
    f.forge(
        "anchor",
        "checkpoint.anchor",
        {
            "refs": {
                "type": "tsa",
                "checkpoint": {"origin": w.ledger.origin, "size": 1, "root": "AQ" * 21 + "A="},
                "where": "tsa.invalid",
            }
        },
    )
    f.forge(
        "export",
        "export.generate",
        {"subject": "report:sox", "refs": {"framework": "sox", "format": "pdf", "flagged": False}},
    )
    f.forge(
        "key",
        "key.generated",
        {"subject": w.ledger.origin, "refs": {"vkey": "forged+00000000+AAAA", "purpose": "x"}},
    )

    # A body removed from the store behind a forged tombstone.
    w.clock.set(at(8))
    f.real["eve"] = w.ledger.record("agent.prompt", body=b"eve's words", data_subject="eve").index
    eve = subject_pseudonym(PROJECT, "eve")
    f.forge(
        "tombstone",
        "erasure.tombstone",
        {
            "subject": eve,
            "refs": {
                "subject": eve,
                "bodies": w.store.body_digests(PROJECT, eve),
                "reason": "cleanup",
            },
        },
    )
    w.store.delete_bodies(PROJECT, eve)
    w.clock.set(at(31, 12))
    w.ledger.checkpoint()
    f.real.update(c1=c1, c2=c2, d1=d1, d2=d2, grant=grant, tree1=tree1)
    return f


@pytest.fixture(
    params=[pytest.param(("sqlite", how), id=f"sqlite-{how}") for how in FORGERIES]
    + [
        pytest.param(("postgres", how), id=f"postgres-{how}", marks=pytest.mark.postgres)
        for how in FORGERIES
    ]
)
def forged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Forged]:
    database, how = request.param
    store: Store | None = None
    if database == "postgres":
        store = request.getfixturevalue("pg_store")
    world = empty_world(tmp_path / "w", start=at(20, month=2), store=store)
    try:
        yield _build(world, how, tmp_path / "other-home")
    finally:
        world.close()


def _assess(f: Forged) -> Assessment:
    return assess(
        f.world.ledger,
        framework="sox",
        period=PERIOD,
        trust=f.world.trust,
        repo=f.world.repo,
        now=at(30),
        checks=list(CHECKS),
    )


def _flags(result: CheckResult) -> dict[tuple[str, str | int | None], str]:
    return {
        (x.what, x.commit if x.commit is not None else x.entry): x.message
        for x in result.findings
        if x.severity != "info"
    }


def test_no_check_counts_a_forged_event(forged: Forged) -> None:
    f, real = forged, forged.real
    result = _assess(f)

    # Segregation: the forged approval and signatures do not approve C1; C2's real ones do.
    sod = _flags(result.check("segregation_of_duties"))
    assert set(sod) == {("unapproved", real["c1"])}
    message = sod["unapproved", real["c1"]]
    assert f"unverified approval by {f.world.users[RITA[1]].id}" in message
    assert "not counted" in message
    [c1_row, c2_row] = result.changes
    assert c1_row.approvals == () and [a.entry for a in c2_row.approvals]
    # So no control resting on approvals passes: each is flagged for C1.
    approving = [c for c in result.controls if "segregation_of_duties" in c.control.checks]
    assert approving and all(c.status == "flag" for c in approving), approving

    # CI: the forged passing verdict does not test C1.
    tested = _flags(result.check("tested_before_deploy"))
    assert set(tested) == {("untested", real["c1"])}
    assert "unverified test result by ci:github:acme/app" in tested["untested", real["c1"]]
    assert c1_row.tests == "none" and c2_row.tests == "pass"

    # The override's forged approval is no approval.
    overrides = _flags(result.check("override_approval"))
    assert set(overrides) == {("override-unapproved", real["grant"])}
    assert "unverified signature by" in overrides["override-unapproved", real["grant"]]

    # Signatures: the forged ones are not evidence; C2's real one is.
    signatures = result.check("signature_manifestation")
    forged_sigs = {f.project[n] for n in ("signature", "tree_signature", "override_signature")}
    assert not forged_sigs & set(signatures.evidence_entries)
    assert signatures.evidence_entries

    # Access: a forged "disabled" means nothing; the real disabling of Carol does.
    access = _flags(result.check("access_revocation"))
    assert ("disabled-user-activity", real[CAROL[1]]) in access
    assert ("disabled-user-activity", real[RITA[1]]) not in access
    assert ("revoked-key-used", real["rita_key_use"]) not in access
    assert not {w for w, _ in access} - {"disabled-user-activity"}

    # Integrity: the forged anchor is not an anchor; each forgery is listed once, as such.
    integrity = result.check("trail_integrity")
    assert result.ledger.anchors == ()
    assert "no-anchor" in {x.what for x in integrity.findings}
    assert "anchor-mismatch" not in {x.what for x in integrity.findings}
    unverified = {
        (x.details.get("log", PROJECT), x.entry): x
        for x in integrity.findings
        if x.what == "unverified-event"
    }
    expected = {(PROJECT, i) for i in f.project.values()} | {
        (INSTANCE, i) for i in f.instance.values()
    }
    assert set(unverified) == expected
    assert all(x.severity == "medium" for x in unverified.values())
    approval = unverified[PROJECT, f.project["approval"]]
    assert approval.message.startswith(
        f"unverified approval by {f.world.users[RITA[1]].id} at entry {f.project['approval']}: "
        "not counted ("
    )

    # Retention: the real hold stays in force; the forged one holds nothing.
    view = LedgerView.load(f.world.store, PROJECT, f.world.trust)
    assert [(h.id, h.released_at) for h in holds(view)] == [("LH-1", None)]
    assert [e.index for e in view.unverified("retention.set")] == [
        f.project["release"],
        f.project["hold"],
    ]
    retention = result.check("retention")
    assert f.project["release"] not in retention.evidence_entries

    # Erasure: a forged tombstone explains no missing body (the verifier alone would accept it).
    report = verify_store(f.world.store, PROJECT, f.world.ledger.verifier)
    assert not [p for p in report.problems if p.what == "body missing"]
    erasure = _flags(result.check("erasure"))
    assert ("body-missing-without-tombstone", real["eve"]) in erasure
    assert f"unverified tombstone (entry {f.project['tombstone']})" in str(erasure)

    # The audit trail shows every forged event, labelled; the real ones unlabelled.
    trail = {r.entry: r for r in result.audit_trail}
    for name in ("approval", "signature", "release", "hold", "role", "key", "tombstone"):
        row = trail[f.project[name]]
        assert row.unverified and "not counted" in row.unverified, name
    real_approval = c2_row.approvals[0].entry
    assert trail[real_approval].unverified is None


def test_decision_status_and_signature_verdict_ignore_forgeries(forged: Forged) -> None:
    f, real = forged, forged.real
    book = DecisionBook(f.world.ledger, trust=f.world.trust)
    forged_decision = book.get(str(real["d1"]))
    assert forged_decision.status == "proposed"
    [approval] = forged_decision.approvals
    assert not approval.verified and not approval.counts and approval.via == "none"
    assert approval.describe() == f"unverified approval by {f.world.users[RITA[1]].id}"
    assert book.get(str(real["d2"])).status == "accepted"
    assert {d.id: d.status for d in book.list()} == {real["d1"]: "proposed", real["d2"]: "accepted"}

    verdict = f.world.signatures.verify(PROJECT, f.project["signature"])
    assert not verdict.ok
    assert verdict.check("origin").status == "fail"
    assert "unverified" in verdict.check("origin").detail
    [real_signature] = [a.signature for a in book.get(str(real["d2"])).approvals]
    assert real_signature is not None
    assert f.world.signatures.verify(PROJECT, real_signature).ok


def test_a_forged_hold_does_not_block_and_a_forged_release_does_not_free(
    forged: Forged,
) -> None:
    f = forged
    f.world.ledger.record(
        "agent.prompt", body=b"kept under LH-1", data_subject="frank"
    )  # a conversation body, class:conversation
    plans = plan_purge(
        f.world.ledger, ComplianceSettings(), now=at(30, month=12), trust=f.world.trust
    )
    frank = subject_pseudonym(PROJECT, "frank")
    [plan] = [p for p in plans if p.subject == frank]
    assert plan.blocked == "under legal hold LH-1"  # the release was forged
    assert "LH-F" not in (plan.blocked or "")
