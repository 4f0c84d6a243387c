"""The checks added for complete catalogues, over real histories on SQLite and PostgreSQL.

access_provisioning and privileged_access read the Directory's own audit events (project
log and instance log), only those whose origin the reader's trust proves: a role grant
forged into the store grants nothing. deploy_separation compares who put each change on
the protected branch (its reflog, or a merge commit's committer) with who developed it.
ai_processors lists the AI providers the gateway sent data to, with their regions, from
gateway.exchange events written by the gateway's own recorder code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.checks import CHECKS
from flowloom.compliance.model import Assessment, CheckResult
from flowloom.gateway.recorder import Attempt, Exchange, exchange_record
from flowloom.store.interface import Store
from tests.compliance.world import (
    ANN,
    BOB,
    CAROL,
    MALLORY,
    PROJECT,
    RITA,
    World,
    at,
    empty_world,
)
from tests.support.forged_rows import forge

PERIOD = parse_period("2026-03-01", "2026-03-31")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    store: Store | None = None
    if request.param == "postgres":
        store = request.getfixturevalue("pg_store")
    built = empty_world(tmp_path / "w", start=at(20, month=2), store=store)
    built.commit("README.md", "x\n", "Initial commit", who=ANN)  # before the period
    try:
        yield built
    finally:
        built.close()


def run(world: World, *, repo: bool = True) -> Assessment:
    return assess(
        world.ledger,
        framework="sox",
        period=PERIOD,
        trust=world.trust,
        repo=world.repo if repo else None,
        now=at(31, 23),
        checks=list(CHECKS),
    )


def exceptions(result: CheckResult) -> set[tuple[str, str | int | None]]:
    return {(f.what, f.commit if f.commit is not None else f.entry) for f in result.exceptions}


def notes(result: CheckResult) -> list[tuple[str, str]]:
    return [(f.what, f.message) for f in result.notes]


# -- access provisioning and privileged access -------------------------------------------


def test_access_grants_removals_and_privileged_holders(world: World, tmp_path: Path) -> None:
    directory = world.directory
    directory.create_project(PROJECT)
    for person in (ANN, RITA, BOB, CAROL, MALLORY):
        world.user(person)
    ids = {email: user.id for email, user in world.users.items()}
    directory.grant(ids[ANN[1]], ALL_PROJECTS, "owner")  # February: before the period
    ann, carol = world.principal(ANN), world.principal(CAROL)

    world.clock.set(at(3))
    directory.grant(ids[RITA[1]], PROJECT, "admin", by=ann)
    directory.grant(ids[BOB[1]], PROJECT, "developer", by=ann)
    directory.grant(ids[CAROL[1]], PROJECT, "admin", by=carol)  # she gives it to herself
    directory.grant(ids[MALLORY[1]], ALL_PROJECTS, "owner", by=ann)  # instance log
    world.clock.set(at(5))
    directory.grant(ids[BOB[1]], PROJECT, "admin", by=ann)
    directory.revoke(ids[BOB[1]], PROJECT, "admin", by=ann)
    directory.disable_user(ids[MALLORY[1]], by=ann)
    forged = forge(
        world.ledger,
        "auth.role_granted",
        {
            "actor": {"type": "human", "id": ids[ANN[1]]},
            "subject": ids[BOB[1]],
            "refs": {"user_id": ids[BOB[1]], "project": PROJECT, "role": "owner",
                     "auth_via": "key"},
        },
    )  # fmt: skip
    world.clock.set(at(2, month=4))
    directory.grant(ids[BOB[1]], PROJECT, "auditor", by=ann)  # after the period
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    world.instance.checkpoint()
    result = run(world)

    provisioning = result.check("access_provisioning")
    assert provisioning.status == "flag"
    [self_granted] = provisioning.exceptions
    assert self_granted.what == "self-granted" and self_granted.actor == ids[CAROL[1]]
    assert f"{ids[CAROL[1]]} granted themselves role admin on {PROJECT}" in self_granted.message
    granted = [m for w, m in notes(provisioning) if w == "access-granted"]
    assert len(granted) == 4  # Rita admin, Bob developer, Mallory owner, Bob admin
    assert all("authenticated with an API key" in m for m in granted)
    assert any(f"role owner on {ALL_PROJECTS} for {ids[MALLORY[1]]}" in m for m in granted)
    removed = [m for w, m in notes(provisioning) if w == "access-removed"]
    assert any(f"role admin on {PROJECT} for {ids[BOB[1]]} revoked" in m for m in removed)
    assert any(f"account {ids[MALLORY[1]]} disabled" in m for m in removed)
    assert not any("auditor" in m for _, m in notes(provisioning))  # April: outside
    assert forged not in provisioning.evidence_entries

    privileged = result.check("privileged_access")
    assert exceptions(privileged) == {
        ("privileged-self-granted", self_granted.entry),
        ("privileged-holder-disabled", next(
            f.entry for f in privileged.findings if f.what == "privileged-holder-disabled"
        )),
    }  # fmt: skip
    holders = {
        f.actor: f.details["role"] for f in privileged.notes if f.what == "privileged-holder"
    }
    # Ann (owner everywhere, since February), Rita and Carol (admins); not Bob: his admin
    # was revoked and his forged owner grant grants nothing; Mallory is disabled (flagged).
    assert holders == {ids[ANN[1]]: "owner", ids[RITA[1]]: "admin", ids[CAROL[1]]: "admin"}
    disabled = next(f for f in privileged.findings if f.what == "privileged-holder-disabled")
    assert disabled.actor == ids[MALLORY[1]] and disabled.details["log"] == "flowloom-instance"
    assert "privileged-revoked" in {f.what for f in privileged.notes}
    # The forged grant is shown for what it is, by trail_integrity, and counts nowhere.
    unverified = {f.entry for f in result.check("trail_integrity").exceptions}
    assert forged in unverified

    controls = {c.control.id: c for c in result.controls}
    assert controls["sox-ac-privileged"].status == "flag"
    assert controls["sox-ac-provisioning"].status == "flag"


def test_grants_nobody_authenticated_are_named_for_what_they_are(world: World) -> None:
    world.directory.create_project(PROJECT)
    world.user(RITA)
    world.clock.set(at(4))
    world.directory.grant(world.users[RITA[1]].id, PROJECT, "admin")  # FlowLoom itself
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    result = run(world, repo=False)
    provisioning = result.check("access_provisioning")
    assert provisioning.status == "pass"  # listed, not an exception
    [(what, message)] = notes(provisioning)
    assert what == "access-granted" and "with no authenticated person" in message
    assert provisioning.findings[0].details["authenticated"] is False
    assert "0 by an authenticated person" in provisioning.summary
    # The control is partly automated: the check passes, the control stays manual.
    control = next(c for c in result.controls if c.control.id == "sox-ac-provisioning")
    assert (control.status, control.automated) == ("manual", "pass")


def test_nothing_granted_is_not_applicable(world: World) -> None:
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    result = run(world, repo=False)
    for name in ("access_provisioning", "privileged_access", "ai_processors"):
        assert result.check(name).status == "not_applicable", name
        assert result.check(name).reason
    assert result.check("deploy_separation").status == "not_assessed"  # no repository


# -- separation of development and deployment --------------------------------------------


def test_who_deployed_is_compared_with_who_developed(world: World) -> None:
    world.user(CAROL)
    world.clock.set(at(3))
    world.git("checkout", "-q", "-b", "feature")
    ann_change = world.commit("a.py", "a\n", "Ann's change", who=ANN)
    world.git("checkout", "-q", "main")
    world.clock.advance(hours=1)
    world.git("merge", "-q", "--no-ff", "-m", "Merge feature", "feature", who=RITA)
    separated = world.git("rev-parse", "HEAD")
    world.clock.advance(hours=1)
    direct = world.commit("b.py", "b\n", "Bob pushes to main himself", who=BOB)
    world.clock.advance(hours=1)
    world.git("checkout", "-q", "-b", "agent")
    operated = world.commit("c.py", "c\n", "Agent change", who=BOB)
    world.session("S9", CAROL, "claude-sonnet-4-5-20250929")
    world.link(operated, "agent", who=BOB, session="S9")
    world.git("checkout", "-q", "main")
    world.git("merge", "-q", "--ff-only", "agent", who=CAROL)  # Carol ran the agent
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    deploy = run(world).check("deploy_separation")
    assert deploy.examined == 3
    assert exceptions(deploy) == {("self-deployed", direct), ("self-deployed", operated)}
    messages = {f.commit: f.message for f in deploy.findings}
    assert "Bob Builder <bob@example.com> (the branch's reflog), who authored" in messages[direct]
    assert "who operated the AI session S9" in messages[operated]
    assert separated not in messages and ann_change not in messages


def test_without_a_reflog_the_merge_committer_or_nobody_is_known(world: World) -> None:
    world.clock.set(at(3))
    world.git("checkout", "-q", "-b", "feature")
    world.commit("a.py", "a\n", "Ann's change", who=ANN)
    world.git("checkout", "-q", "main")
    world.git("merge", "-q", "--no-ff", "-m", "Merge by Ann", "feature", who=ANN)
    by_ann = world.git("rev-parse", "HEAD")
    world.clock.advance(hours=1)
    world.git("checkout", "-q", "-b", "second")
    world.commit("b.py", "b\n", "Second change", who=ANN)
    world.git("checkout", "-q", "main")
    world.git(
        "merge", "-q", "--no-ff", "-m", "Merge pull request #2", "second",
        who=("GitHub", "noreply@github.com"),
    )  # fmt: skip
    by_host = world.git("rev-parse", "HEAD")
    world.clock.advance(hours=1)
    pushed = world.commit("c.py", "c\n", "Squashed on the host", who=ANN)
    world.git("reflog", "expire", "--expire=all", "--all")  # as on a bare server clone
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    deploy = run(world).check("deploy_separation")
    assert exceptions(deploy) == {
        ("self-deployed", by_ann),  # the merge commit's committer developed it
        ("deployer-unknown", by_host),  # the host's merge button: its record says who
        ("deployer-unknown", pushed),  # no reflog, not a merge: git does not say
    }
    by_committer = next(f for f in deploy.findings if f.commit == by_ann)
    assert "the merge commit's committer" in by_committer.message


# -- AI providers as processors ---------------------------------------------------------


def _exchange(world: World, session: str, **fields: object) -> int:
    """A gateway.exchange event exactly as the gateway's recorder writes it."""
    exchange = Exchange(
        endpoint="/v1/messages",
        format="anthropic",
        model="claude",
        stream=False,
        request=b'{"model":"claude","messages":[]}',
        response=b'{"type":"message","content":[],"usage":{"input_tokens":5,"output_tokens":3}}',
        status=200,
        started_at=time.time(),
        latency_s=0.01,
        session=session,
        project=PROJECT,
        **fields,  # type: ignore[arg-type]
    )
    record = exchange_record(exchange, default_project=PROJECT, max_body_bytes=1 << 20)
    return world.ledger.record("gateway.exchange", meta=dict(record.meta), body=record.body).index


def test_ai_providers_and_their_regions(world: World) -> None:
    world.clock.set(at(3))
    world.session("S1", ANN, "claude-sonnet-4-5-20250929")
    eu = _exchange(world, "S1", provider="anthropic-eu", upstream_model="claude-eu", region="eu")
    fell_back = _exchange(
        world, "S1", provider="anthropic-eu", upstream_model="claude-eu", region="eu",
        attempts=(
            Attempt("primary", "claude-us", "anthropic", 403, "not_allowed", 0.0, region="us"),
            Attempt("backup", "claude-us", "anthropic", 529, "overloaded", 9.0, region="us"),
            Attempt("anthropic-eu", "claude-eu", "anthropic", 200, None, 9.0, region="eu"),
        ),
    )  # fmt: skip
    unplaced = _exchange(world, "S1", provider="openai", upstream_model="gpt-5")
    world.session("S2", BOB, "claude-opus-4-1-20250805")  # straight to the provider
    world.clock.set(at(31, 12))
    world.ledger.checkpoint()
    result = run(world, repo=False)
    processors = result.check("ai_processors")
    assert processors.status == "flag" and processors.examined == 4
    listed = {f.details["provider"]: f for f in processors.notes}
    assert set(listed) == {"anthropic-eu", "backup", "openai"}  # "primary" was never sent
    assert listed["anthropic-eu"].details["regions"] == ["eu"]
    assert listed["anthropic-eu"].details["exchanges"] == 2
    assert listed["backup"].details["regions"] == ["us"]  # the overloaded fallback got it too
    assert listed["openai"].details["regions"] == []
    found = {(f.what, f.details.get("provider") or f.details.get("session")) for f in
             processors.exceptions}  # fmt: skip
    assert found == {("region-unrecorded", "openai"), ("provider-unrecorded", "S2")}
    assert {eu, fell_back, unplaced} <= set(processors.evidence_entries)
    gdpr = assess(world.ledger, framework="gdpr", period=PERIOD, trust=world.trust, now=at(31, 23))
    transfers = next(c for c in gdpr.controls if c.control.clause == "Art. 44–49")
    assert transfers.status == "flag" and "ai_processors flagged 2 exceptions" in transfers.note
