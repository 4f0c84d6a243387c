"""Passwords and sign-in: argon2id, the length rule, rehashing, throttling, auditing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from flowloom.auth.directory import Directory
from flowloom.auth.passwords import MIN_PASSWORD_LENGTH, Passwords, validate_password
from flowloom.auth.throttle import LoginThrottledError, ThrottlePolicy
from flowloom.errors import AuthError, InputError
from tests.auth.conftest import PASSWORD, AuditLog, DirectoryFactory, FakeClock, fast_hasher

EMAIL = "ann@example.org"


def _stored_hash(directory: Directory, user_id: str) -> str:
    with directory.engine.connect() as conn:
        value = conn.execute(
            text("SELECT password_hash FROM directory_users WHERE id = :id"), {"id": user_id}
        ).scalar_one()
    return str(value)


def test_length_rule() -> None:
    assert MIN_PASSWORD_LENGTH == 12
    validate_password("x" * 12)
    with pytest.raises(InputError, match="at least 12 characters"):
        validate_password("x" * 11)
    with pytest.raises(InputError, match="too long"):
        validate_password("x" * 5000)


def test_argon2id_hash() -> None:
    passwords = Passwords(fast_hasher())
    stored = passwords.hash(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, PASSWORD + "!")
    assert not passwords.verify(None, PASSWORD)
    assert not passwords.verify("garbage", PASSWORD)


def test_sign_in(directory: Directory, audit: AuditLog) -> None:
    ann = directory.create_user(EMAIL, "Ann", password=PASSWORD)
    who = directory.check_password("ANN@example.org ", PASSWORD, client="10.0.0.1")
    assert (who.user_id, who.via, who.scopes) == (ann.id, "session", None)
    with pytest.raises(AuthError) as wrong:
        directory.check_password(EMAIL, "wrong password!!", client="10.0.0.1")
    with pytest.raises(AuthError) as unknown:
        directory.check_password("nobody@example.org", PASSWORD, client="10.0.0.1")
    assert wrong.value.message == unknown.value.message  # no account enumeration
    nopw = directory.create_user("oidc@example.org", "Oidc only")
    with pytest.raises(AuthError):
        directory.check_password(nopw.email or "", "", client="10.0.0.1")
    failed = audit.of("auth.login_failed")
    assert len(failed) == 3
    assert failed[0][2]["refs"]["reason"] == "bad_credentials"
    assert failed[0][2]["refs"]["client"] == "10.0.0.1"
    assert failed[0][2]["subject"] == EMAIL


def test_audit_never_holds_the_password(directory: Directory, audit: AuditLog) -> None:
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    attempts = ["tried-this-one-1", "tried-this-one-2"]
    for attempt in attempts:
        with pytest.raises(AuthError):
            directory.check_password(EMAIL, attempt, client="c")
    dumped = repr(audit.events)
    for secret in [PASSWORD, *attempts, "argon2"]:
        assert secret not in dumped


def test_rehash_when_parameters_change(make_directory: DirectoryFactory) -> None:
    old = make_directory(password_hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    ann = old.create_user(EMAIL, "Ann", password=PASSWORD)
    before = _stored_hash(old, ann.id)
    assert "m=64,t=1" in before
    stronger = make_directory(
        password_hasher=PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    )
    with pytest.raises(AuthError):  # a failure does not rehash
        stronger.check_password(EMAIL, "wrong password!!", client="c")
    assert _stored_hash(stronger, ann.id) == before
    stronger.check_password(EMAIL, PASSWORD, client="c")
    after = _stored_hash(stronger, ann.id)
    assert after != before and "m=128,t=2" in after
    # The old hash's owner still signs in with the same password, now against the new hash.
    stronger.check_password(EMAIL, PASSWORD, client="c")
    assert _stored_hash(stronger, ann.id) == after


def test_account_throttling(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(5):
        clock.advance(seconds=10)
        with pytest.raises(AuthError, match="wrong email or password"):
            directory.check_password(EMAIL, f"wrong password {i}", client=f"10.0.0.{i}")
    # Locked now, even with the right password, and from another address.
    with pytest.raises(AuthError, match="too many") as caught:
        directory.check_password(EMAIL, PASSWORD, client="10.9.9.9")
    assert caught.value.hint is not None and "try again after" in caught.value.hint
    assert isinstance(caught.value, LoginThrottledError)
    assert caught.value.retry_after == 15 * 60
    assert caught.value.until == clock.now + timedelta(minutes=15)
    until = directory.locked_until(EMAIL, client="10.9.9.9")
    assert until == clock.now + timedelta(minutes=15)
    throttled = [e for e in audit.of("auth.login_failed") if e[2]["refs"]["reason"] == "throttled"]
    assert len(throttled) == 1 and "retry_after" in throttled[0][2]["refs"]
    # Other accounts are not affected.
    directory.create_user("bob@example.org", "Bob", password=PASSWORD)
    directory.check_password("bob@example.org", PASSWORD, client="10.9.9.9")
    clock.advance(minutes=14, seconds=59)
    with pytest.raises(AuthError, match="too many"):
        directory.check_password(EMAIL, PASSWORD, client="10.9.9.9")
    clock.advance(seconds=1)
    assert directory.check_password(EMAIL, PASSWORD, client="10.9.9.9").email == EMAIL
    # Success clears the account's count: four more failures do not lock it.
    for i in range(4):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(EMAIL, f"wrong again {i}", client="x")
    directory.check_password(EMAIL, PASSWORD, client="x")


def test_failures_spread_out_do_not_lock(directory: Directory, clock: FakeClock) -> None:
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(10):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(EMAIL, f"wrong password {i}", client="c")
        clock.advance(minutes=4)  # never 5 within 15 minutes
    directory.check_password(EMAIL, PASSWORD, client="c")


def test_old_failures_are_pruned(directory: Directory, clock: FakeClock) -> None:
    for i in range(3):
        with pytest.raises(AuthError):
            directory.check_password(f"u{i}@example.org", "wrong password!", client="c")
    clock.advance(hours=1)
    with pytest.raises(AuthError):
        directory.check_password("late@example.org", "wrong password!", client="c")
    with directory.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM directory_login_failures")).scalar()
    assert count == 1


def test_client_throttling(make_directory: DirectoryFactory, clock: FakeClock) -> None:
    directory = make_directory(throttle=ThrottlePolicy(max_failures=5, client_max_failures=3))
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(3):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(f"user{i}@example.org", "wrong password!", client="6.6.6.6")
    with pytest.raises(AuthError, match="too many"):
        directory.check_password(EMAIL, PASSWORD, client="6.6.6.6")
    assert directory.check_password(EMAIL, PASSWORD, client="7.7.7.7").email == EMAIL
    clock.advance(minutes=15)
    assert directory.check_password(EMAIL, PASSWORD, client="6.6.6.6").email == EMAIL


def test_throttling_holds_across_processes(make_directory: DirectoryFactory) -> None:
    """Two Directory instances (two server processes) on one database share the count."""
    first = make_directory()
    second = make_directory()
    first.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(5):
        target = first if i % 2 else second
        with pytest.raises(AuthError, match="wrong"):
            target.check_password(EMAIL, f"wrong password {i}", client="c")
    with pytest.raises(AuthError, match="too many"):
        first.check_password(EMAIL, PASSWORD, client="c")
    with pytest.raises(AuthError, match="too many"):
        second.check_password(EMAIL, PASSWORD, client="d")


def test_throttle_policy_unit() -> None:
    policy = ThrottlePolicy(max_failures=3, window=timedelta(minutes=10))
    from datetime import UTC, datetime

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t0, t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)]
    assert policy.locked_until(times, t0 + timedelta(minutes=3), limit=3) == times[-1] + timedelta(
        minutes=15
    )
    assert policy.locked_until(times[:2], t0 + timedelta(minutes=3), limit=3) is None
    spread = [t0, t0 + timedelta(minutes=6), t0 + timedelta(minutes=12)]
    assert policy.locked_until(spread, t0 + timedelta(minutes=13), limit=3) is None
    with pytest.raises(ValueError):
        ThrottlePolicy(max_failures=0)
