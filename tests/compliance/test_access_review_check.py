"""The access_review check over real campaigns, on SQLite and PostgreSQL: a completed,
signed review closed in the period passes; none, an overdue one, or a forged closing
does not, and the SOX periodic review control follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.auth.reviews import AccessReviews, ReviewPolicy
from flowloom.auth.signatures import ReauthCredentials
from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.checks import CHECKS
from flowloom.compliance.model import Assessment, CheckResult
from flowloom.store.interface import Store
from tests.compliance.world import ANN, BOB, PASSWORD, PROJECT, RITA, World, at, empty_world
from tests.support.forged_rows import forge

PERIOD = parse_period("2026-03-01", "2026-03-31")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    store: Store | None = None
    if request.param == "postgres":
        store = request.getfixturevalue("pg_store")
    built = empty_world(tmp_path / "w", start=at(20, month=2), store=store)
    built.directory.create_project(PROJECT)
    for person in (ANN, RITA, BOB):
        built.user(person)
    ids = {email: user.id for email, user in built.users.items()}
    built.directory.grant(ids[ANN[1]], PROJECT, "owner")
    built.directory.grant(ids[RITA[1]], PROJECT, "admin")
    built.directory.grant(ids[BOB[1]], PROJECT, "developer")
    try:
        yield built
    finally:
        built.close()


def _reviews(world: World) -> AccessReviews:
    ledgers = {PROJECT: world.ledger, "flowloom-instance": world.instance}
    return AccessReviews(
        world.directory,
        ledgers.__getitem__,
        world.signatures,
        policy=ReviewPolicy(due_days=10),
        clock=world.clock,
    )


def _run(world: World) -> Assessment:
    return assess(
        world.ledger,
        framework="sox",
        period=PERIOD,
        trust=world.trust,
        repo=None,
        now=at(31, 23),
        checks=list(CHECKS),
    )


def _check(assessment: Assessment) -> CheckResult:
    return next(c for c in assessment.checks if c.check == "access_review")


def _decide_all(world: World, reviews: AccessReviews, campaign_id: str) -> None:
    campaign = reviews.get(campaign_id)
    for line in campaign.lines:
        person = RITA if line.facts["email"] == ANN[1] else ANN
        reviews.decide(
            world.principal(person),
            campaign_id,
            line.line,
            "revoke" if line.facts["email"] == BOB[1] else "certify",
            credentials=ReauthCredentials(password=PASSWORD, email=person[1]),
        )


def test_completed_signed_review_in_the_period_passes(world: World) -> None:
    reviews = _reviews(world)
    world.clock.set(at(10))
    campaign = reviews.open(world.principal(ANN), PROJECT)
    world.clock.set(at(12))
    _decide_all(world, reviews, campaign.id)
    reviews.close(world.principal(ANN), campaign.id)
    assessment = _run(world)
    result = _check(assessment)
    assert result.status == "pass", [f.message for f in result.findings]
    whats = [f.what for f in result.findings]
    assert whats.count("access-review-completed") == 1
    assert whats.count("access-review-revoked") == 1  # Bob's developer role
    control = next(c for c in assessment.controls if c.control.id == "sox-ac-review")
    assert control.automated == "pass"


def test_no_review_and_overdue_review_flag(world: World) -> None:
    result = _check(_run(world))
    assert result.status == "flag"
    assert [f.what for f in result.exceptions] == ["access-review-missing"]
    reviews = _reviews(world)
    world.clock.set(at(5))
    reviews.open(world.principal(ANN), PROJECT)  # due on the 15th, never closed
    result = _check(_run(world))
    assert {f.what for f in result.exceptions} == {"access-review-missing", "access-review-overdue"}


def test_review_closed_outside_the_period_does_not_cover_it(world: World) -> None:
    reviews = _reviews(world)
    world.clock.set(at(22, month=2))
    campaign = reviews.open(world.principal(ANN), PROJECT)
    _decide_all(world, reviews, campaign.id)
    reviews.close(world.principal(ANN), campaign.id)
    result = _check(_run(world))
    assert [f.what for f in result.exceptions] == ["access-review-missing"]


def test_forged_closing_counts_for_nothing(world: World) -> None:
    world.clock.set(at(10))
    forge(
        world.ledger,
        "access.review_closed",
        {"refs": {"campaign": "AR-0123456789", "scope": PROJECT, "lines": 0, "certified": 0}},
    )
    result = _check(_run(world))
    assert [f.what for f in result.exceptions] == ["access-review-missing"]
