"""API keys: format, scopes, expiry, rotation with overlap, revocation, last use."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from flowloom.auth import Authorizer
from flowloom.auth.apikeys import generate_key, hash_key, key_matches, parse_key
from flowloom.auth.directory import Directory
from flowloom.errors import AuthError, InputError, NotFoundError
from tests.auth.conftest import AuditLog, FakeClock

KEY_RE = re.compile(r"^flk_[a-z0-9]{8}_[A-Za-z0-9_-]{43}$")


def test_key_format_and_hash() -> None:
    generated = generate_key()
    assert KEY_RE.match(generated.secret)
    assert parse_key(generated.secret) == generated.prefix
    assert generated.digest == hash_key(generated.secret) != generated.secret
    assert key_matches(generated.secret, generated.digest)
    assert not key_matches(generated.secret[:-1] + "x", generated.digest)
    for bad in ("", "flk_", "flk_abc_def", "Bearer x", "flk_ABCDEFGH_" + "a" * 43):
        assert parse_key(bad) is None
    assert len({generate_key().prefix for _ in range(50)}) == 50


def test_create_and_use(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    directory.create_project("alpha")
    bot = directory.create_user(None, "ci", kind="service")
    directory.grant(bot.id, "alpha", "service")
    key, secret = directory.create_key(bot.id, name="deploy")
    assert KEY_RE.match(secret) and secret.split("_")[1] == key.prefix
    assert key.user_id == bot.id and key.scopes is None and key.last_used_at is None
    who = directory.principal_for_key(secret)
    assert (who.user_id, who.kind, who.via, who.key_id) == (bot.id, "service", "key", key.id)
    assert who.actor() == {"type": "service", "id": bot.id, "name": "ci"}
    assert Authorizer().allowed(who, "ledger.append", "alpha")
    assert directory.get_key(key.id).last_used_at == clock.now
    clock.advance(minutes=5)
    directory.principal_for_key(secret)
    assert directory.get_key(key.id).last_used_at == clock.now
    [created] = audit.of("auth.key_created")
    assert created[2]["refs"]["key_id"] == key.id and created[2]["refs"]["prefix"] == key.prefix


def test_scopes(directory: Directory) -> None:
    directory.create_project("alpha")
    ann = directory.create_user("ann@example.org", "Ann")
    directory.grant(ann.id, "alpha", "developer")
    key, secret = directory.create_key(ann.id, name="read-only", scopes=["ledger.read"])
    assert key.scopes == frozenset({"ledger.read"})
    assert directory.list_keys(ann.id)[0].scopes == frozenset({"ledger.read"})
    who = directory.principal_for_key(secret)
    assert who.scopes == frozenset({"ledger.read"})
    auth = Authorizer()
    assert auth.allowed(who, "ledger.read", "alpha")
    assert not auth.allowed(who, "ledger.append", "alpha")
    with pytest.raises(InputError, match="unknown scope"):
        directory.create_key(ann.id, name="x", scopes=["ledger.write"])


def test_bad_keys_are_refused_alike(directory: Directory) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    _, secret = directory.create_key(ann.id, name="k")
    wrong_secret = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    unknown_prefix = "flk_zzzzzzzz_" + secret.split("_", 2)[2]
    messages = set()
    for bad in (wrong_secret, unknown_prefix, "flk_nonsense", "", "Bearer " + secret):
        with pytest.raises(AuthError) as caught:
            directory.principal_for_key(bad)
        messages.add(caught.value.message)
    assert len(messages) == 1  # never says which part was wrong


def test_expiry(directory: Directory, clock: FakeClock) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    key, secret = directory.create_key(
        ann.id, name="short", expires_at=clock.now + timedelta(days=1)
    )
    assert key.expires_at == clock.now + timedelta(days=1)
    clock.advance(hours=23, minutes=59)
    directory.principal_for_key(secret)
    clock.advance(minutes=1)
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)
    assert not directory.get_key(key.id).active(clock.now)
    with pytest.raises(InputError):
        directory.create_key(ann.id, name="past", expires_at=clock.now - timedelta(seconds=1))


def test_rotation_overlap(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    old, old_secret = directory.create_key(ann.id, name="deploy", scopes=["ledger.append"])
    clock.advance(hours=1)
    new, new_secret = directory.rotate_key(old.id, overlap=timedelta(hours=24))
    assert new.id != old.id and new_secret != old_secret
    assert (
        new.rotated_from == old.id
        and new.scopes == frozenset({"ledger.append"})
        and new.name == "deploy"
    )
    assert directory.get_key(old.id).expires_at == clock.now + timedelta(hours=24)
    # Both work during the overlap ...
    assert directory.principal_for_key(old_secret).key_id == old.id
    assert directory.principal_for_key(new_secret).key_id == new.id
    clock.advance(hours=23, minutes=59)
    directory.principal_for_key(old_secret)
    # ... then only the new one.
    clock.advance(minutes=1)
    with pytest.raises(AuthError):
        directory.principal_for_key(old_secret)
    directory.principal_for_key(new_secret)
    [rotated] = audit.of("auth.key_rotated")
    assert rotated[2]["refs"]["old_key_id"] == old.id and rotated[2]["subject"] == new.id
    # An expired key cannot be rotated.
    with pytest.raises(InputError):
        directory.rotate_key(old.id, overlap=timedelta(hours=1))
    with pytest.raises(NotFoundError):
        directory.rotate_key("key_missing", overlap=timedelta(hours=1))


def test_rotation_keeps_lifetime_and_earlier_expiry(directory: Directory, clock: FakeClock) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    old, _ = directory.create_key(ann.id, name="k", expires_at=clock.now + timedelta(days=90))
    clock.advance(days=89, hours=23)
    new, _ = directory.rotate_key(old.id, overlap=timedelta(days=7))
    # The old key's own, earlier expiry wins over the overlap.
    assert directory.get_key(old.id).expires_at == old.expires_at
    assert new.expires_at == clock.now + timedelta(days=90)


def test_zero_overlap_stops_old_key_at_once(directory: Directory) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    old, old_secret = directory.create_key(ann.id, name="k")
    directory.rotate_key(old.id, overlap=timedelta(0))
    with pytest.raises(AuthError):
        directory.principal_for_key(old_secret)


def test_revocation_is_immediate(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    key, secret = directory.create_key(ann.id, name="k")
    directory.principal_for_key(secret)
    directory.revoke_key(key.id)
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)
    assert directory.get_key(key.id).revoked_at == clock.now
    directory.revoke_key(key.id)  # again: no change, no second event
    assert len(audit.of("auth.key_revoked")) == 1
    with pytest.raises(NotFoundError):
        directory.revoke_key("key_missing")
    with pytest.raises(InputError):
        directory.rotate_key(key.id, overlap=timedelta(hours=1))


def test_revoking_during_overlap(directory: Directory) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    old, old_secret = directory.create_key(ann.id, name="k")
    directory.rotate_key(old.id, overlap=timedelta(days=1))
    directory.revoke_key(old.id)
    with pytest.raises(AuthError):
        directory.principal_for_key(old_secret)


def test_disabled_user_keys_stop(directory: Directory) -> None:
    bot = directory.create_user(None, "bot", kind="service")
    _, secret = directory.create_key(bot.id, name="k")
    directory.disable_user(bot.id)
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)
    with pytest.raises(InputError, match="disabled"):
        directory.create_key(bot.id, name="k2")


def test_list_keys(directory: Directory, clock: FakeClock) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    bob = directory.create_user("bob@example.org", "Bob")
    first, _ = directory.create_key(ann.id, name="one")
    clock.advance(seconds=1)
    second, _ = directory.create_key(ann.id, name="two")
    directory.create_key(bob.id, name="bob's")
    assert [k.id for k in directory.list_keys(ann.id)] == [first.id, second.id]
    assert directory.list_keys("usr_missing") == []
    with pytest.raises(NotFoundError):
        directory.create_key("usr_missing", name="x")
