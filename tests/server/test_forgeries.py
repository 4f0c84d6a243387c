"""Forgeries through the generic append: every authority-bearing kind is refused (403),
the server stamps who wrote each event, and nothing a caller writes proves authority.

Over real HTTP on loopback, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.ledger.provenance import Trust, judge
from tests.server.support import OWN, World, live_server
from tests.support.forgeries import FORGED_KINDS

L = f"/api/v1/projects/{OWN}/ledger"


@pytest.fixture(params=["sqlite", "postgres"])
def any_world(request: pytest.FixtureRequest) -> World:
    name = "world" if request.param == "sqlite" else "pg_world"
    found: World = request.getfixturevalue(name)
    return found


@pytest.fixture
def base(any_world: World) -> Iterator[str]:
    with live_server(any_world.server) as url:
        yield url


def _forgery(kind: str, approver_id: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": "D-0123456789",
        "actor": {"type": "human", "id": approver_id, "name": "A Approver"},
        "refs": {"meaning": "approved", "signer": approver_id, "action": "release"},
    }


@pytest.mark.parametrize("kind", FORGED_KINDS)
@pytest.mark.parametrize("who", ["developer", "service", "instance_owner"])
def test_the_generic_append_refuses_every_authority_kind(
    any_world: World, base: str, kind: str, who: str
) -> None:
    size = any_world.server.ledger(OWN).size()
    forged = _forgery(kind, any_world.user_ids["approver"])
    with httpx.Client(base_url=base, headers=any_world.headers(who), timeout=30) as http:
        one = http.post(f"{L}/entries", json=forged)
        assert one.status_code == 403, one.text
        error = one.json()["error"]
        assert "carry authority" in error["message"] and kind in error["message"]
        assert error["hint"].startswith("use ")
        batch = http.post(
            f"{L}/batch", json={"events": [{"kind": "agent.prompt", "body": "x"}, forged]}
        )
        assert batch.status_code == 403, batch.text
        assert batch.json()["error"]["message"].startswith("events[1]: ")
    # All or nothing: the harmless first event of the refused batch is not there either.
    assert any_world.server.ledger(OWN).size() == size


def test_the_refusal_names_the_endpoint_to_use(world: World) -> None:
    with live_server(world.server) as base:
        answer = httpx.post(
            f"{base}{L}/entries",
            json=_forgery("decision.approve", world.user_ids["approver"]),
            headers=world.headers("developer"),
            timeout=30,
        )
    assert answer.status_code == 403
    assert "/decisions/{id}/approve" in answer.json()["error"]["hint"]


@pytest.mark.parametrize("field", ["attestation", "submitted_by", "reported_actor"])
def test_refs_the_server_sets_are_refused_from_a_client(world: World, field: str) -> None:
    with live_server(world.server) as base:
        answer = httpx.post(
            f"{base}{L}/entries",
            json={"kind": "agent.prompt", "body": "x", "refs": {field: {"key": "k", "sig": "s"}}},
            headers=world.headers("developer"),
            timeout=30,
        )
    assert answer.status_code == 400, answer.text
    assert f"refs.{field}" in answer.json()["error"]["message"]


def _envelope(base: str, world: World, index: int) -> dict[str, Any]:
    got = httpx.get(
        f"{base}{L}/entries/{index}", headers=world.headers("auditor"), timeout=30
    ).json()
    envelope: dict[str, Any] = got["envelope"]
    return envelope


def test_the_actor_is_the_authenticated_principal(any_world: World, base: str) -> None:
    world = any_world
    approver = {"type": "human", "id": world.user_ids["approver"], "name": "A Approver"}
    with httpx.Client(base_url=base, timeout=30) as http:
        # A person naming someone else records as themselves; the claim is kept, labelled.
        mine = http.post(
            f"{L}/entries",
            json={"kind": "agent.prompt", "body": "x", "actor": approver},
            headers=world.headers("developer"),
        ).json()["index"]
        # A service account records for an agent ...
        agent = {"type": "agent", "id": "claude-code"}
        for_agent = http.post(
            f"{L}/entries",
            json={"kind": "agent.prompt", "body": "x", "actor": agent},
            headers=world.headers("service"),
        ).json()["index"]
        # ... but never as a person, nor as another service.
        as_person = http.post(
            f"{L}/entries",
            json={"kind": "decision.record", "subject": "D-0123456789", "actor": approver},
            headers=world.headers("service"),
        ).json()["index"]
        other_service = {"type": "service", "id": "ci-bot"}
        as_service = http.post(
            f"{L}/entries",
            json={"kind": "agent.prompt", "body": "x", "actor": other_service},
            headers=world.headers("service"),
        ).json()["index"]
    developer = _envelope(base, world, mine)
    assert developer["actor"]["id"] == world.user_ids["developer"]
    assert developer["refs"]["reported_actor"] == approver
    recorded_for_agent = _envelope(base, world, for_agent)
    assert recorded_for_agent["actor"] == agent
    assert recorded_for_agent["refs"]["submitted_by"]["id"] == world.user_ids["service"]
    for index, claim in ((as_person, approver), (as_service, other_service)):
        envelope = _envelope(base, world, index)
        assert envelope["actor"]["type"] == "service"
        assert envelope["actor"]["id"] == world.user_ids["service"]
        assert envelope["refs"]["reported_actor"] == claim


def test_a_forged_approval_written_into_the_store_never_counts(any_world: World) -> None:
    """A hand-written row (no attestation, or one by another key) never makes a decision
    accepted, on either store."""
    server = any_world.server
    ledger = server.ledger(OWN)
    book = DecisionBook(ledger, trust=Trust.of_server([ledger.verifier]))
    decision = book.record(title="Use a token bucket", requested_by="developer@example.org")
    # Straight into the store, bypassing every endpoint: the writer appends what it is given.
    from flowloom.ledger import merkle
    from flowloom.ledger.canonical import canonicalize
    from flowloom.ledger.event import now_ts
    from flowloom.store.interface import PendingEntry

    envelope = {
        "v": 1,
        "kind": "decision.approve",
        "ts": now_ts(),
        "project": OWN,
        "actor": {"type": "human", "id": any_world.user_ids["approver"]},
        "subject": decision.id,
        "refs": {"meaning": "approved", "content_digest": decision.content_digest},
    }
    raw = canonicalize(envelope)
    ledger.writer.append_many([PendingEntry(raw, merkle.leaf_hash(raw), "decision.approve")])
    got = book.get(decision.id)
    assert got.status == "proposed"
    [approval] = got.approvals
    assert not approval.verified and not approval.counts
    assert approval.describe() == f"unverified approval by {any_world.user_ids['approver']}"
    assert judge(envelope, Trust.of_server([ledger.verifier])).reason


def test_only_whoever_recorded_a_decision_may_amend_it(any_world: World, base: str) -> None:
    """A decision.amend changes what a decision says (its reply, choice, rationale): the
    server takes one only from whoever sent the record, in a later request or the same
    batch; a teammate's or a service's amendment of someone else's decision is refused."""
    world = any_world
    with httpx.Client(base_url=base, timeout=30) as http:
        record = http.post(
            f"{L}/entries",
            json={"kind": "decision.record", "subject": "D-00000000ab", "refs": {"title": "T"}},
            headers=world.headers("developer"),
        )
        assert record.status_code == 201, record.text
        at = record.json()["index"]
        forged = {
            "kind": "decision.amend",
            "subject": "D-00000000ab",
            "refs": {"record": at, "choice": "whatever the forger wants"},
        }
        for who in ("service", "instance_owner"):
            refused = http.post(f"{L}/entries", json=forged, headers=world.headers(who))
            assert refused.status_code == 403, refused.text
            assert "recorded by someone else" in refused.json()["error"]["message"]
        own = {**forged, "refs": {"record": at, "choice": "Mine"}}
        taken = http.post(f"{L}/entries", json=own, headers=world.headers("developer"))
        assert taken.status_code == 201, taken.text
        # A record and its amendment in one batch (a drainer sending a turn): taken.
        size = world.server.ledger(OWN).size()
        pair = [
            {"kind": "decision.record", "subject": "D-00000000ac", "refs": {"title": "U"}},
            {"kind": "decision.amend", "subject": "D-00000000ac", "refs": {"record": size}},
        ]
        batch = http.post(f"{L}/batch", json={"events": pair}, headers=world.headers("service"))
        assert batch.status_code in (200, 201), batch.text
    decision = DecisionBook(world.server.ledger(OWN)).get("D-00000000ab")
    assert decision.choice == "Mine"
