"""Sessions: hashed tokens, CSRF, idle and absolute limits, re-authentication, signing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from flowloom.auth.directory import Directory
from flowloom.auth.sessions import SessionPolicy, csrf_for
from flowloom.errors import AuthError, InputError, NotFoundError
from tests.auth.conftest import AuditLog, DirectoryFactory, FakeClock


def _user(directory: Directory) -> str:
    directory.create_project("alpha")
    ann = directory.create_user("ann@example.org", "Ann")
    directory.grant(ann.id, "alpha", "approver")
    return ann.id


def test_session_lifecycle(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    user_id = _user(directory)
    session, token, csrf = directory.create_session(user_id, via="password")
    assert session.auth_time == clock.now and session.reauthenticated_at is None
    assert not session.signed_before and session.via == "password"
    assert token not in (session.id, csrf) and len(token) >= 43
    who = directory.principal_for_session(token)
    assert (who.user_id, who.via, who.session_id) == (user_id, "session", session.id)
    assert who.grants == {"alpha": {"approver"}}
    assert directory.verify_csrf(token, csrf)
    assert directory.csrf_token(token) == csrf
    assert not directory.verify_csrf(token, csrf[:-1] + ("A" if csrf[-1] != "A" else "B"))
    other_session, other_token, other_csrf = directory.create_session(user_id, via="oidc")
    assert not directory.verify_csrf(token, other_csrf)
    assert directory.session_for_token(other_token).id == other_session.id
    directory.end_session(token)
    with pytest.raises(AuthError, match="ended"):
        directory.principal_for_session(token)
    directory.principal_for_session(other_token)  # the other session is untouched
    directory.end_session(token)  # twice: nothing more happens
    assert audit.kinds().count("auth.login") == 2
    assert audit.kinds().count("auth.logout") == 1
    [login, _] = audit.of("auth.login")
    assert login[2]["refs"]["session_id"] == session.id
    with pytest.raises(AuthError):
        directory.principal_for_session("made-up-token")
    with pytest.raises(AuthError):
        directory.principal_for_session("")
    with pytest.raises(InputError):
        directory.create_session(user_id, via="Not A Method!")


def test_idle_timeout(make_directory: DirectoryFactory, clock: FakeClock) -> None:
    directory = make_directory(
        sessions=SessionPolicy(idle_timeout=timedelta(minutes=30), lifetime=timedelta(hours=12))
    )
    user_id = _user(directory)
    _, token, _ = directory.create_session(user_id, via="password")
    for _ in range(4):  # activity keeps it alive past the idle timeout
        clock.advance(minutes=29)
        directory.principal_for_session(token)
    clock.advance(minutes=30)
    with pytest.raises(AuthError, match="inactivity"):
        directory.principal_for_session(token)


def test_absolute_lifetime(make_directory: DirectoryFactory, clock: FakeClock) -> None:
    directory = make_directory(
        sessions=SessionPolicy(idle_timeout=timedelta(hours=1), lifetime=timedelta(hours=2))
    )
    user_id = _user(directory)
    session, token, _ = directory.create_session(user_id, via="password")
    assert session.expires_at == clock.now + timedelta(hours=2)
    for _ in range(3):
        clock.advance(minutes=39)
        directory.principal_for_session(token)
    clock.advance(minutes=3)
    with pytest.raises(AuthError, match="expired"):
        directory.principal_for_session(token)


def test_reauthentication_and_signing(directory: Directory, clock: FakeClock) -> None:
    user_id = _user(directory)
    session, _token, _ = directory.create_session(user_id, via="password")
    clock.advance(minutes=5)
    directory.mark_reauthenticated(session.id)
    assert directory.get_session(session.id).reauthenticated_at == clock.now
    assert not directory.get_session(session.id).signed_before
    directory.mark_signed(session.id)
    got = directory.get_session(session.id)
    assert got.signed_before and got.auth_time == session.auth_time
    with pytest.raises(NotFoundError):
        directory.mark_signed("ses_missing")
    with pytest.raises(NotFoundError):
        directory.get_session("ses_missing")


def test_disabling_ends_sessions(directory: Directory) -> None:
    user_id = _user(directory)
    _, token, _ = directory.create_session(user_id, via="password")
    directory.disable_user(user_id)
    with pytest.raises(AuthError):
        directory.principal_for_session(token)
    with pytest.raises(AuthError):
        directory.create_session(user_id, via="password")


def test_csrf_is_derived_not_stored() -> None:
    assert csrf_for("token-a") == csrf_for("token-a") != csrf_for("token-b")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_checks_answer_while_another_process_holds_the_write_lock(
    make_directory: DirectoryFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """SQLite: session and API-key checks only read (the activity touch is a separate,
    throttled write), so they answer while the ledger holds the database's write lock."""
    db = tmp_path / "shared.db"
    directory = make_directory(database=str(db))
    user_id = _user(directory)
    _, token, _ = directory.create_session(user_id, via="password")
    _, secret = directory.create_key(user_id, name="ci")
    directory.principal_for_session(token)
    directory.principal_for_key(secret)  # both touched now; the next touch is due later
    writer = sqlite3.connect(db, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")  # what a ledger append holds while it commits
        clock.advance(seconds=1)
        assert directory.principal_for_session(token).user_id == user_id
        assert directory.principal_for_key(secret).user_id == user_id
        assert directory.session_for_token(token).user_id == user_id
    finally:
        writer.rollback()
        writer.close()
