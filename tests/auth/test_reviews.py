"""Access reviews over a real directory, ledger and gateway key store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowloom.auth.directory import Directory
from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.auth.principals import Principal
from flowloom.auth.records import User
from flowloom.auth.reviews import (
    CLOSE_KIND,
    DECIDE_KIND,
    OPEN_KIND,
    AccessReviews,
    ReviewPolicy,
    VirtualKeyInfo,
    line_digest,
)
from flowloom.auth.signatures import ReauthCredentials, SignatureService
from flowloom.errors import (
    AuthError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from flowloom.ledger.attest import refuse_generic
from flowloom.ledger.event import Event
from flowloom.ledger.keys import KeyStore
from flowloom.server.state import LedgerRegistry
from flowloom.services import open_store
from flowloom.store.interface import Store
from tests.auth.conftest import PASSWORD, FakeClock, fast_hasher

PROJECT = "proj"


class MemoryVkeys:
    """Stand-in for the gateway's key table where a test needs no gateway database."""

    def __init__(self, keys: list[VirtualKeyInfo]) -> None:
        self.keys = {k.id: k for k in keys}
        self.revoked: list[tuple[str, Mapping[str, Any]]] = []

    def active_keys(self) -> list[VirtualKeyInfo]:
        gone = {k for k, _ in self.revoked}
        return [k for k in self.keys.values() if k.id not in gone]

    def revoke(self, key_id: str, actor: Mapping[str, Any], refs: Mapping[str, Any]) -> None:
        assert refs["reason"] == "access review"
        self.revoked.append((key_id, actor))


@dataclass
class World:
    store: Store
    ledgers: LedgerRegistry
    directory: Directory
    clock: FakeClock
    admin: User
    dev: User
    idle: User
    vkeys: MemoryVkeys

    def reviews(self, **policy: int) -> AccessReviews:
        signatures = SignatureService(self.directory, self.ledgers.get, clock=self.clock)
        return AccessReviews(
            self.directory,
            self.ledgers.get,
            signatures,
            policy=ReviewPolicy(**policy),
            vkeys=self.vkeys,
            clock=self.clock,
        )

    def principal(self, user: User) -> Principal:
        _, token, _ = self.directory.create_session(user.id, via="password")
        return self.directory.principal_for_session(token)

    def events(self, kind: str, project: str = PROJECT) -> list[Event]:
        ledger = self.ledgers.get(project)
        return [Event.parse(e.envelope) for e in ledger.store.entries(ledger.log, kind=kind)]


def _creds(user: User) -> ReauthCredentials:
    return ReauthCredentials(password=PASSWORD, email=user.email, client="test")


@pytest.fixture
def world(db_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    store = open_store(db_url)
    ledgers = LedgerRegistry(
        store, KeyStore(tmp_path / "home"), origin=lambda p: f"flowloom.test/{p}",
        max_body_bytes=1 << 20,
    )  # fmt: skip
    directory = Directory(db_url, audit=ledgers.audit, clock=clock, password_hasher=fast_hasher())
    directory.create_project(PROJECT)
    directory.create_project("other")
    admin = directory.create_user("admin@example.org", "Ada Admin", password=PASSWORD)
    dev = directory.create_user("dev@example.org", "Dev Eloper", password=PASSWORD)
    idle = directory.create_user("idle@example.org", "Idle Person", password=PASSWORD)
    directory.grant(admin.id, PROJECT, "admin")
    directory.grant(dev.id, PROJECT, "developer")
    directory.grant(idle.id, PROJECT, "auditor")
    directory.grant(dev.id, "other", "developer")
    vkeys = MemoryVkeys(
        [
            VirtualKeyInfo("vk_idle", "vkp1", "idle laptop", "user", idle.id, PROJECT),
            VirtualKeyInfo("vk_dev", "vkp2", "dev laptop", "user", "dev@example.org", PROJECT),
            VirtualKeyInfo("vk_team", "vkp3", "ci", "project", PROJECT, PROJECT),
        ]
    )
    built = World(store, ledgers, directory, clock, admin, dev, idle, vkeys)
    yield built
    ledgers.close()
    directory.close()
    store.close()


def test_open_snapshots_roles_activity_keys_and_flags_dormant(world: World) -> None:
    _, dev_key = world.directory.create_key(world.dev.id, name="ci")
    world.clock.advance(days=100)
    world.directory.principal_for_key(dev_key)  # dev is active now; idle is not
    admin = world.principal(world.admin)
    campaign = world.reviews(dormant_days=30).open(admin, PROJECT)
    by_user = {line.user_id: line for line in campaign.lines}
    assert set(by_user) == {world.admin.id, world.dev.id, world.idle.id}
    assert all(line.project == PROJECT for line in campaign.lines)
    assert by_user[world.dev.id].facts["dormant"] is False
    assert by_user[world.dev.id].facts["last_activity"] is not None
    assert [k["name"] for k in by_user[world.dev.id].facts["api_keys"]] == ["ci"]
    assert [k["id"] for k in by_user[world.dev.id].facts["virtual_keys"]] == ["vk_dev"]
    assert by_user[world.idle.id].facts["dormant"] is True
    assert by_user[world.idle.id].facts["last_activity"] is None
    assert campaign.status == "open" and not campaign.overdue(world.clock.now)
    assert campaign.counts()["dormant"] == 1
    opened = world.events(OPEN_KIND)
    assert len(opened) == 1 and opened[0].refs["campaign"] == campaign.id
    assert opened[0].actor.id == world.admin.id
    assert "attestation" in opened[0].refs  # an authority kind, attested by the log key
    assert [d["user_id"] for d in world.reviews().dormant(PROJECT, days=30)] == [world.idle.id]
    with pytest.raises(ConflictError, match="already open"):
        world.reviews().open(admin, PROJECT)


def test_revoke_removes_role_and_orphaned_keys_at_once_with_a_signature(world: World) -> None:
    _, idle_secret = world.directory.create_key(world.idle.id, name="old")
    admin = world.principal(world.admin)
    reviews = world.reviews()
    campaign = reviews.open(admin, PROJECT)
    line = next(line for line in campaign.lines if line.user_id == world.idle.id)
    decided = reviews.decide(
        admin, campaign.id, line.line, "revoke", credentials=_creds(world.admin), reason="left"
    )
    assert decided.decision == "revoke" and decided.decided_by == world.admin.id
    assert world.directory.grants_of(world.idle.id) == {}
    with pytest.raises(AuthError):
        world.directory.principal_for_key(idle_secret)  # refused within the same request
    assert [k for k, _ in world.vkeys.revoked] == ["vk_idle"]
    record = reviews._signatures.get(PROJECT, decided.signature or -1)
    assert record.subject == f"access_review:{campaign.id}/{line.line}/revoke"
    assert record.content_digest == line_digest(line, "revoke")
    assert record.signer == world.admin.id
    event = world.events(DECIDE_KIND)[0]
    assert event.refs["decision"] == "revoke" and event.refs["signature"] == decided.signature
    assert event.refs["role_removed"] is True and len(event.refs["revoked_keys"]) == 1
    assert "auth.role_revoked" in [e.kind for e in world.ledgers.get(PROJECT).store.entries(
        world.ledgers.get(PROJECT).log)]  # fmt: skip


def test_certify_keeps_access_and_revoke_keeps_keys_when_other_roles_remain(world: World) -> None:
    _, dev_secret = world.directory.create_key(world.dev.id, name="ci")
    admin = world.principal(world.admin)
    reviews = world.reviews()
    campaign = reviews.open(admin, PROJECT)
    dev_line = next(line for line in campaign.lines if line.user_id == world.dev.id)
    reviews.decide(admin, campaign.id, dev_line.line, "revoke", credentials=_creds(world.admin))
    assert world.directory.grants_of(world.dev.id) == {"other": frozenset({"developer"})}
    world.directory.principal_for_key(dev_secret)  # still reaches "other"
    assert [k for k, _ in world.vkeys.revoked] == ["vk_dev"]  # bound to the project
    idle_line = next(line for line in campaign.lines if line.user_id == world.idle.id)
    reviews.decide(admin, campaign.id, idle_line.line, "certify", credentials=_creds(world.admin))
    assert world.directory.grants_of(world.idle.id) == {PROJECT: frozenset({"auditor"})}


def test_a_team_held_role_is_revoked_per_line_by_leaving_the_team(world: World) -> None:
    team_only = world.directory.create_user("tess@example.org", "Tess Team", password=PASSWORD)
    world.directory.create_team("qa")
    world.directory.add_member("qa", team_only.id)
    world.directory.add_member("qa", world.dev.id)
    world.directory.grant_team("qa", PROJECT, "auditor")
    _, tess_secret = world.directory.create_key(team_only.id, name="tess")
    admin = world.principal(world.admin)
    reviews = world.reviews()
    campaign = reviews.open(admin, PROJECT)
    line = next(ln for ln in campaign.lines if ln.user_id == team_only.id)
    assert line.team == "qa"
    decided = reviews.decide(
        admin, campaign.id, line.line, "revoke", credentials=_creds(world.admin)
    )
    assert decided.decision == "revoke"
    assert world.directory.grants_of(team_only.id) == {}  # out of the team, nothing left
    assert [u.id for u in world.directory.team_members("qa")] == [world.dev.id]
    with pytest.raises(AuthError):
        world.directory.principal_for_key(tess_secret)  # no role left: keys go too
    event = world.events(DECIDE_KIND)[0]
    assert event.refs["team"] == "qa" and event.refs["left_team"] is True
    assert event.refs["role_removed"] is True and len(event.refs["revoked_keys"]) == 1
    assert [e.subject for e in world.events("auth.team_member_removed", INSTANCE_PROJECT)] == [
        team_only.id
    ]
    # The other member keeps the team's role.
    assert "auditor" in world.directory.grants_of(world.dev.id)[PROJECT]


def test_refusals_own_line_bad_password_decided_closed(world: World) -> None:
    admin = world.principal(world.admin)
    reviews = world.reviews()
    campaign = reviews.open(admin, PROJECT)
    own = next(line for line in campaign.lines if line.user_id == world.admin.id)
    other = next(line for line in campaign.lines if line.user_id == world.idle.id)
    with pytest.raises(PermissionDeniedError, match="their own access"):
        reviews.decide(admin, campaign.id, own.line, "certify", credentials=_creds(world.admin))
    wrong = ReauthCredentials(password="not the password", email=world.admin.email)
    with pytest.raises(AuthError):
        reviews.decide(admin, campaign.id, other.line, "revoke", credentials=wrong)
    assert world.directory.grants_of(world.idle.id)  # nothing was taken away
    with pytest.raises(InputError, match="not a decision"):
        reviews.decide(admin, campaign.id, other.line, "maybe", credentials=_creds(world.admin))
    with pytest.raises(NotFoundError):
        reviews.decide(admin, campaign.id, 99, "certify", credentials=_creds(world.admin))
    with pytest.raises(NotFoundError):
        reviews.get("AR-0000000000")
    reviews.decide(admin, campaign.id, other.line, "certify", credentials=_creds(world.admin))
    with pytest.raises(ConflictError, match="already decided"):
        reviews.decide(admin, campaign.id, other.line, "revoke", credentials=_creds(world.admin))
    with pytest.raises(ConflictError, match="undecided"):
        reviews.close(admin, campaign.id)


def test_close_after_every_line_and_overdue(world: World) -> None:
    admin = world.principal(world.admin)
    dev = world.principal(world.dev)
    world.directory.grant(world.dev.id, PROJECT, "admin")
    reviews = world.reviews(due_days=7)
    campaign = reviews.open(admin, PROJECT)
    world.clock.advance(days=8)
    assert reviews.get(campaign.id).overdue(world.clock.now)
    admin = world.principal(world.admin)
    dev = world.principal(world.dev)
    for line in campaign.lines:
        reviewer, who = (dev, world.dev) if line.user_id == world.admin.id else (admin, world.admin)
        reviews.decide(reviewer, campaign.id, line.line, "certify", credentials=_creds(who))
    closed = reviews.close(admin, campaign.id)
    assert closed.status == "closed" and not closed.overdue(world.clock.now)
    event = world.events(CLOSE_KIND)[0]
    assert event.refs["late"] is True and event.refs["pending"] == 0
    assert event.refs["certified"] == len(campaign.lines)
    with pytest.raises(ConflictError, match="already closed"):
        reviews.close(admin, campaign.id)
    assert [c.id for c in reviews.find(PROJECT, status="closed")] == [campaign.id]


def test_instance_campaign_covers_every_project_in_the_instance_log(world: World) -> None:
    owner = world.directory.create_user("own@example.org", "Olga Owner", password=PASSWORD)
    world.directory.grant(owner.id, "*", "owner")
    reviews = world.reviews()
    campaign = reviews.open(world.principal(owner), "*")
    dev_lines = {(ln.project, ln.role) for ln in campaign.lines if ln.user_id == world.dev.id}
    assert dev_lines == {(PROJECT, "developer"), ("other", "developer")}
    assert world.events(OPEN_KIND, "flowloom-instance")[0].refs["scope"] == "*"
    line = next(ln for ln in campaign.lines if ln.user_id == world.dev.id and ln.project == "other")
    decided = reviews.decide(
        world.principal(owner), campaign.id, line.line, "revoke",
        credentials=_creds(owner),
    )  # fmt: skip
    assert world.directory.grants_of(world.dev.id) == {PROJECT: frozenset({"developer"})}
    record = reviews._signatures.get("flowloom-instance", decided.signature or -1)  # type: ignore[union-attr]
    assert record.subject == f"access_review:{campaign.id}/{line.line}/revoke"
    assert world.events(DECIDE_KIND, "flowloom-instance")[0].refs["project"] == "other"


def test_generic_appends_of_review_kinds_are_refused() -> None:
    for kind in (OPEN_KIND, DECIDE_KIND, CLOSE_KIND):
        with pytest.raises(PermissionDeniedError, match="carry authority"):
            refuse_generic(kind)


def test_bad_settings_are_refused(world: World) -> None:
    with pytest.raises(InputError, match="dormant_days"):
        ReviewPolicy(dormant_days=0)
    with pytest.raises(NotFoundError):
        world.reviews().open(world.principal(world.admin), "no-such-project")
