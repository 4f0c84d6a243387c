"""Passwords and sign-in: argon2id, the length rule, rehashing, throttling, auditing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from flowloom.auth.directory import Directory
from flowloom.auth.passwords import MIN_PASSWORD_LENGTH, Passwords, validate_password
from flowloom.auth.throttle import LoginThrottledError, ThrottlePolicy, client_key
from flowloom.errors import AuthError, InputError
from tests.auth.conftest import PASSWORD, AuditLog, DirectoryFactory, FakeClock, fast_hasher
from tests.support.gated_hasher import GatedHasher

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


def test_backoff_per_account_and_address(
    directory: Directory, audit: AuditLog, clock: FakeClock
) -> None:
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(5):
        clock.advance(seconds=10)
        with pytest.raises(AuthError, match="wrong email or password"):
            directory.check_password(EMAIL, f"wrong password {i}", client="10.0.0.1")
    # From that address, even the right password waits 30 s after the fifth failure.
    with pytest.raises(LoginThrottledError, match="too many") as caught:
        directory.check_password(EMAIL, PASSWORD, client="10.0.0.1")
    assert caught.value.hint is not None and "try again after" in caught.value.hint
    assert caught.value.retry_after == 30
    assert caught.value.until == clock.now + timedelta(seconds=30)
    assert directory.locked_until(EMAIL, client="10.0.0.1") == clock.now + timedelta(seconds=30)
    throttled = [e for e in audit.of("auth.login_failed") if e[2]["refs"]["reason"] == "throttled"]
    assert len(throttled) == 1 and "retry_after" in throttled[0][2]["refs"]
    # Failing on purpose from elsewhere locks no one out: Ann signs in from her address.
    assert directory.locked_until(EMAIL, client="10.9.9.9") is None
    assert directory.check_password(EMAIL, PASSWORD, client="10.9.9.9").email == EMAIL
    # Each further failure from the guessing address doubles the wait.
    waits = []
    for i in range(4):
        until = directory.locked_until(EMAIL, client="10.0.0.1")
        assert until is not None
        waits.append(until - clock.now)
        clock.now = until
        with pytest.raises(AuthError, match="wrong email or password"):
            directory.check_password(EMAIL, f"still wrong {i}", client="10.0.0.1")
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    # A throttled attempt is not a failure: it does not lengthen the wait.
    until = directory.locked_until(EMAIL, client="10.0.0.1")
    with pytest.raises(LoginThrottledError):
        directory.check_password(EMAIL, PASSWORD, client="10.0.0.1")
    assert directory.locked_until(EMAIL, client="10.0.0.1") == until
    # Success clears the count of that address: five more failures are free again.
    assert until is not None
    clock.now = until
    directory.check_password(EMAIL, PASSWORD, client="10.0.0.1")
    for i in range(4):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(EMAIL, f"wrong again {i}", client="10.0.0.1")
    directory.check_password(EMAIL, PASSWORD, client="10.0.0.1")


def test_backoff_is_capped_and_forgets(make_directory: DirectoryFactory, clock: FakeClock) -> None:
    policy = ThrottlePolicy(max_failures=2, backoff=timedelta(minutes=1))
    directory = make_directory(throttle=policy)
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(8):
        until = directory.locked_until(EMAIL, client="c")
        clock.now = until or clock.now
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(EMAIL, f"wrong password {i}", client="c")
    until = directory.locked_until(EMAIL, client="c")
    assert until == clock.now + policy.max_backoff  # 1, 2, 4, 8, 16 → 15 minutes
    clock.advance(hours=1)  # failures older than the window no longer count
    directory.check_password(EMAIL, PASSWORD, client="c")


def test_spread_out_failures_do_not_throttle(directory: Directory, clock: FakeClock) -> None:
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(10):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(EMAIL, f"wrong password {i}", client="c")
        clock.advance(minutes=15)  # never 5 within the hour
    directory.check_password(EMAIL, PASSWORD, client="c")


def test_old_attempts_are_pruned(directory: Directory, clock: FakeClock) -> None:
    for i in range(3):
        with pytest.raises(AuthError):
            directory.check_password(f"u{i}@example.org", "wrong password!", client="c")
    clock.advance(hours=2)
    with pytest.raises(AuthError):
        directory.check_password("late@example.org", "wrong password!", client="c")
    with directory.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM directory_login_failures")).scalar()
    assert count == 1


def test_client_ceiling(make_directory: DirectoryFactory, clock: FakeClock) -> None:
    directory = make_directory(throttle=ThrottlePolicy(max_failures=5, client_max_failures=3))
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    for i in range(3):
        clock.advance(minutes=1)
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(f"user{i}@example.org", "wrong password!", client="6.6.6.6")
    with pytest.raises(LoginThrottledError, match="too many") as caught:
        directory.check_password(EMAIL, PASSWORD, client="6.6.6.6")
    assert caught.value.retry_after == 13 * 60  # when the first failure leaves the window
    assert directory.check_password(EMAIL, PASSWORD, client="7.7.7.7").email == EMAIL
    clock.advance(minutes=13)
    assert directory.check_password(EMAIL, PASSWORD, client="6.6.6.6").email == EMAIL


def test_an_ipv6_host_counts_as_its_64(make_directory: DirectoryFactory) -> None:
    directory = make_directory(throttle=ThrottlePolicy(client_max_failures=2))
    for i in range(2):
        with pytest.raises(AuthError, match="wrong"):
            directory.check_password(
                f"u{i}@example.org", "wrong password!", client=f"2001:db8::{i}"
            )
    with pytest.raises(LoginThrottledError):
        directory.check_password("x@example.org", "wrong password!", client="2001:db8::ffff:1")
    with pytest.raises(AuthError, match="wrong"):
        directory.check_password("x@example.org", "wrong password!", client="2001:db8:0:1::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key("bogus") == "bogus"


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
        second.check_password(EMAIL, PASSWORD, client="c")


def test_parallel_attempts_evaluate_at_most_the_free_number(
    make_directory: DirectoryFactory, audit: AuditLog
) -> None:
    """The attempt is counted before the hash: 30 threads at once, 5 passwords evaluated."""
    gated = GatedHasher()
    directory = make_directory(password_hasher=gated)
    directory.create_user(EMAIL, "Ann", password=PASSWORD)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        try:
            directory.check_password(EMAIL, f"wrong password {i}", client="10.1.1.1")
        except LoginThrottledError:
            outcomes.append("throttled")
        except AuthError:
            outcomes.append("wrong")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    gated.settle(lambda: len(outcomes), 30)
    # While five are being evaluated, the right password from there waits too.
    with pytest.raises(LoginThrottledError):
        directory.check_password(EMAIL, PASSWORD, client="10.1.1.1")
    gated.release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert gated.evaluated == 5
    assert sorted(outcomes) == ["throttled"] * 25 + ["wrong"] * 5
    reasons = [e[2]["refs"]["reason"] for e in audit.of("auth.login_failed")]
    assert reasons.count("bad_credentials") == 5 and reasons.count("throttled") == 26


def test_throttle_policy_unit() -> None:
    policy = ThrottlePolicy(max_failures=3, backoff=timedelta(seconds=10))
    from datetime import UTC, datetime

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t0, t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)]
    now = t0 + timedelta(minutes=2, seconds=5)
    assert policy.wait_until(times, times, now) == times[-1] + timedelta(seconds=10)
    assert policy.wait_until(times[:2], times[:2], now) is None
    assert policy.wait_until(times, times, t0 + timedelta(minutes=2, seconds=10)) is None
    assert [policy.delay_after(n).total_seconds() for n in (2, 3, 4, 5)] == [0, 10, 20, 40]
    assert policy.delay_after(100) == policy.max_backoff
    with pytest.raises(ValueError):
        ThrottlePolicy(max_failures=0)
    with pytest.raises(ValueError):
        ThrottlePolicy(backoff=timedelta(0))
