"""Virtual key lifecycle: create, authenticate, cache, expire, revoke, audit."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.errors import AuthError, InputError, NotFoundError
from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from tests.gateway.access.conftest import AuditLog, FakeClock, OpenAccess


def test_create_shows_the_secret_once_and_stores_only_its_hash(
    access: Access, audit: AuditLog, database: str
) -> None:
    key, secret = access.create_key(owner_user="alice", project="acme", models=["claude-*"])
    assert secret.startswith(f"flv_{key.prefix}_") and len(secret) == 4 + 8 + 1 + 43
    assert key.owner_kind == "user" and key.owner == "alice" and key.project == "acme"
    assert access.authenticate(secret) == key
    assert [k.id for k in access.list_keys()] == [key.id]
    with access.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(text("SELECT * FROM gateway_vkeys")).all()
    assert secret not in repr(rows) and secret.split("_", 2)[2] not in repr(rows)
    assert audit.kinds() == ["auth.vkey_created"]
    _kind, project, meta = audit.events[0]
    assert project == "acme" and meta["subject"] == key.id
    assert meta["refs"]["models"] == ["claude-*"] and secret not in json.dumps(meta)


def test_owners_user_team_project(access: Access) -> None:
    team, _ = access.create_key(owner_team="platform")
    proj, _ = access.create_key(project="acme")
    assert (team.owner_kind, team.owner, team.project) == ("team", "platform", None)
    assert (proj.owner_kind, proj.owner, proj.project) == ("project", "acme", "acme")
    with pytest.raises(InputError):
        access.create_key()
    with pytest.raises(InputError):
        access.create_key(owner_user="a", owner_team="b")
    with pytest.raises(InputError):
        access.create_key(owner_user="a", models=[])
    with pytest.raises(InputError):
        access.create_key(owner_user="a", rpm=0)
    assert [k.project for k in access.list_keys(project="acme")] == ["acme"]


@pytest.mark.parametrize(
    "bad",
    ["", "flv_", "sk-ant-123", "flk_abcdefgh_" + "x" * 43, "flv_abcdefgh_" + "x" * 43],
)
def test_unknown_or_malformed_secrets_are_refused(access: Access, bad: str) -> None:
    access.create_key(owner_user="alice")
    with pytest.raises(AuthError) as info:
        access.authenticate(bad)
    assert bad not in info.value.diagnostics() or bad == ""


def test_a_wrong_secret_with_a_real_prefix_is_refused(access: Access) -> None:
    key, secret = access.create_key(owner_user="alice")
    forged = f"flv_{key.prefix}_" + ("A" * 43)
    with pytest.raises(AuthError):
        access.authenticate(forged)
    assert access.authenticate(secret).id == key.id


def test_revocation_is_immediate_here_and_elsewhere_despite_the_cache(
    open_access: OpenAccess, clock: FakeClock, audit: AuditLog
) -> None:
    here = open_access()
    there = open_access()  # another gateway process on the same database
    key, secret = here.create_key(owner_user="alice", project="acme")
    assert there.authenticate(secret).id == key.id  # cached there now
    revoked = here.revoke_key(key.prefix)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthError):
        here.authenticate(secret)
    with pytest.raises(AuthError):  # cached there, but the revocation is re-read
        there.authenticate(secret)
    assert here.revoke_key(key.id).revoked_at == revoked.revoked_at  # idempotent
    assert audit.kinds().count("auth.vkey_revoked") == 1
    assert [k.id for k in here.list_keys(include_revoked=True)] == [key.id]
    assert here.list_keys() == []
    with pytest.raises(NotFoundError):
        here.revoke_key("vk_nothere")


def test_expiry(access: Access, clock: FakeClock) -> None:
    start = datetime.fromtimestamp(clock.now, UTC)
    _key, secret = access.create_key(owner_user="alice", expires_at=start + timedelta(hours=1))
    assert access.authenticate(secret).expires_at == start + timedelta(hours=1)
    clock.advance(3599)
    access.authenticate(secret)
    clock.advance(1)
    with pytest.raises(AuthError):
        access.authenticate(secret)
    with pytest.raises(InputError):
        access.create_key(owner_user="alice", expires_at=start - timedelta(seconds=1))


def test_the_key_cache_is_bounded(open_access: OpenAccess) -> None:
    access = open_access(settings=AccessSettings(background=False, key_cache_size=3))
    secrets = [access.create_key(owner_user=f"u{i}")[1] for i in range(6)]
    for secret in secrets:
        access.authenticate(secret)
    assert len(access._keys) == 3  # the bound holds whatever the number of callers
    for secret in secrets:  # evicted keys are verified again from the database
        access.authenticate(secret)


def test_budget_change_is_audited_as_config_change(access: Access, audit: AuditLog) -> None:
    key, secret = access.create_key(owner_user="alice", project="acme", budget_usd=5)
    updated = access.set_budget(key.id, 10, period="day")
    assert (updated.budget_usd, updated.period) == (10.0, "day")
    assert access.authenticate(secret).budget_usd == 10.0  # the cache was refreshed here
    kind, project, meta = audit.events[-1]
    assert kind == "config.change" and project == "acme"
    assert meta["refs"]["setting"] == "gateway.vkey.budget"
    assert meta["refs"]["previous_budget_usd"] == 5.0
    access.set_project_budget("acme", 100, period="month")
    assert access.project_budget("acme") == (100.0, "month")
    assert audit.kinds()[-1] == "config.change"


def test_audit_events_never_hold_secrets(access: Access, audit: AuditLog) -> None:
    key, secret = access.create_key(owner_user="alice", project="acme", rpm=5)
    access.set_provider_key("anthropic", "sk-ant-api03-very-secret")
    access.set_provider_key("anthropic", "sk-ant-api03-rotated-secret")
    access.set_budget(key.id, 3)
    access.revoke_key(key.id)
    access.delete_provider_key("anthropic")
    assert audit.kinds() == [
        "auth.vkey_created",
        "key.provider_set",
        "key.provider_rotated",
        "config.change",
        "auth.vkey_revoked",
        "key.provider_deleted",
    ]
    dumped = json.dumps([e[2] for e in audit.events])
    for secret_text in (secret, secret.split("_", 2)[2], "very-secret", "rotated-secret"):
        assert secret_text not in dumped


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_lookups_answer_while_the_write_lock_is_held(
    open_access: OpenAccess, tmp_path: Path
) -> None:
    """SQLite: key checks, provider keys, budgets and usage only read, so a gateway
    sharing the database with a busy ledger does not stall on its event loop."""
    db = tmp_path / "shared.db"
    access = open_access(database=str(db))
    _, secret = access.create_key(name="ci", project="acme", budget_usd=5.0)
    access.set_provider_key("anthropic", "sk-ant-test-123")
    fresh = open_access(database=str(db))  # empty caches: every answer below is a read
    writer = sqlite3.connect(db, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")  # what a ledger commit holds
        assert fresh.authenticate(secret).project == "acme"
        assert fresh.provider_key("anthropic") == "sk-ant-test-123"
        assert [b.scope for b in fresh.budgets("acme")]
        assert [k.project for k in fresh.list_keys(project="acme")] == ["acme"]
    finally:
        writer.rollback()
        writer.close()
