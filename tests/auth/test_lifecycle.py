"""Offboarding in the directory: disable, enable, delete (pseudonymise), and the rules
that keep an instance administrable — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading

import pytest

from flowloom.auth.directory import DELETED_USER_NAME, Directory, Grant
from flowloom.errors import AuthError, ConflictError, NotFoundError, PermissionDeniedError
from tests.auth.conftest import PASSWORD, AuditLog, DirectoryFactory


def _owner(directory: Directory, email: str) -> str:
    user = directory.create_user(email, email.split("@")[0].title(), password=PASSWORD)
    directory.grant(user.id, "*", "owner")
    return user.id


def test_disable_cuts_off_at_once_and_enable_does_not_bring_keys_back(
    directory: Directory, audit: AuditLog
) -> None:
    boss = directory.principal_for_user(_owner(directory, "olive@example.org"))
    ann = directory.create_user("ann@example.org", "Ann", password=PASSWORD)
    _, secret = directory.create_key(ann.id, name="laptop")
    _, token, _ = directory.create_session(ann.id, via="password")
    assert directory.principal_for_key(secret).user_id == ann.id
    assert directory.principal_for_session(token).user_id == ann.id

    disabled = directory.disable_user(ann.id, by=boss)
    assert disabled.disabled and disabled.deleted_at is None
    with pytest.raises(AuthError):
        directory.principal_for_session(token)
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)
    with pytest.raises(AuthError):
        directory.check_password("ann@example.org", PASSWORD, client="c")
    assert all(k.revoked_at is not None for k in directory.list_keys(ann.id))
    [event] = audit.of("auth.user_disabled")
    assert event[1] is None and event[2]["subject"] == ann.id
    assert event[2]["actor"] == boss.actor()
    assert len(event[2]["refs"]["sessions_ended"]) == 1
    [key_event] = audit.of("auth.key_revoked")
    assert key_event[2]["refs"]["user_id"] == ann.id and key_event[2]["actor"] == boss.actor()
    assert key_event[2]["refs"]["reason"] == "user disabled"
    directory.disable_user(ann.id, by=boss)  # nothing left to change: not recorded again
    assert len(audit.of("auth.user_disabled")) == 1

    enabled = directory.enable_user(ann.id, by=boss)
    assert not enabled.disabled
    assert directory.check_password("ann@example.org", PASSWORD, client="c").user_id == ann.id
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)  # revoked keys stay revoked
    with pytest.raises(AuthError):
        directory.principal_for_session(token)
    _, fresh = directory.create_key(ann.id, name="new laptop")
    assert directory.principal_for_key(fresh).user_id == ann.id
    directory.enable_user(ann.id, by=boss)
    [enabled_event] = audit.of("auth.user_enabled")
    assert enabled_event[2]["actor"] == boss.actor() and enabled_event[2]["subject"] == ann.id
    for call in (directory.disable_user, directory.enable_user, directory.delete_user):
        with pytest.raises(NotFoundError):
            call("usr_missing", by=boss)


def test_nobody_acts_on_themselves_and_only_owners_act_on_owners(directory: Directory) -> None:
    olive = directory.principal_for_user(_owner(directory, "olive@example.org"))
    otto_id = _owner(directory, "otto@example.org")
    star_admin_user = directory.create_user("adam@example.org", "Adam")
    directory.grant(star_admin_user.id, "*", "admin")
    adam = directory.principal_for_user(star_admin_user.id)
    dev = directory.create_user("dev@example.org", "Dev")

    for call in (directory.disable_user, directory.delete_user, directory.enable_user):
        with pytest.raises(PermissionDeniedError, match="your own account"):
            call(olive.user_id, by=olive)
        with pytest.raises(PermissionDeniedError, match="instance owner"):
            call(otto_id, by=adam)
    assert not directory.get_user(olive.user_id).disabled
    assert not directory.get_user(otto_id).disabled
    # An administrator on "*" may offboard people who are not instance owners.
    assert directory.disable_user(dev.id, by=adam).disabled
    # An owner may act on another owner.
    assert directory.disable_user(otto_id, by=olive).disabled
    assert not directory.enable_user(otto_id, by=olive).disabled


def test_the_last_instance_owner_stays(directory: Directory) -> None:
    directory.create_project("alpha")
    olive_id = _owner(directory, "olive@example.org")
    # The command line (no principal) is held to the same rule.
    with pytest.raises(ConflictError, match="without an owner"):
        directory.disable_user(olive_id)
    with pytest.raises(ConflictError, match="without an owner"):
        directory.delete_user(olive_id)
    with pytest.raises(ConflictError, match="without an owner"):
        directory.revoke(olive_id, "*", "owner")
    olive = directory.get_user(olive_id)
    assert not olive.disabled and olive.email == "olive@example.org"  # rolled back
    assert directory.grants_of(olive_id) == {"*": {"owner"}}

    # A second owner through a team: now Olive may go, and then the team's grant may not.
    ops = directory.create_user("ops@example.org", "Ops")
    directory.create_team("root")
    directory.add_member("root", ops.id)
    directory.grant_team("root", "*", "owner")
    directory.disable_user(olive_id)
    with pytest.raises(ConflictError, match="without an owner"):
        directory.revoke_team("root", "*", "owner")
    with pytest.raises(ConflictError, match="without an owner"):
        directory.disable_user(ops.id)
    # Other roles are revoked freely.
    directory.grant(ops.id, "alpha", "developer")
    directory.revoke(ops.id, "alpha", "developer")


def test_two_owners_disabling_each_other_at_once_leave_one(
    make_directory: DirectoryFactory,
) -> None:
    first, second = make_directory(), make_directory()
    ids = [_owner(first, "a@example.org"), _owner(first, "b@example.org")]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def disable(directory: Directory, user_id: str) -> None:
        barrier.wait()
        try:
            directory.disable_user(user_id)
            outcomes.append("done")
        except ConflictError:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=disable, args=(d, u))
        for d, u in zip((first, second), ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["done", "refused"]
    assert sum(not first.get_user(u).disabled for u in ids) == 1


def test_delete_erases_personal_data_and_keeps_the_id(
    directory: Directory, audit: AuditLog
) -> None:
    directory.create_project("alpha")
    boss = directory.principal_for_user(_owner(directory, "olive@example.org"))
    ann = directory.create_user("ann@example.org", "Ann Smith", password=PASSWORD)
    directory.upsert_oidc_user("https://idp.example", "sub-ann", "ann@example.org", "Ann Smith")
    directory.grant(ann.id, "alpha", "developer")
    directory.grant(ann.id, "*", "auditor")
    directory.create_team("reviewers")
    directory.add_member("reviewers", ann.id)
    directory.grant_team("reviewers", "alpha", "approver")
    _, secret = directory.create_key(ann.id, name="laptop")
    _, token, _ = directory.create_session(ann.id, via="password")
    with pytest.raises(AuthError):
        directory.check_password("ann@example.org", "wrong password!!", client="c")

    deleted = directory.delete_user(ann.id, by=boss)
    assert deleted.id == ann.id and deleted.deleted_at is not None and deleted.disabled
    assert deleted.name == DELETED_USER_NAME and deleted.email is None
    assert not deleted.has_password and deleted.oidc_issuer is None
    assert deleted.oidc_subject is None
    assert directory.get_user(ann.id) == deleted  # the id still resolves
    assert directory.grants_of(ann.id) == {}
    assert directory.effective_grants(ann.id) == []
    assert directory.team_members("reviewers") == []
    with pytest.raises(AuthError):
        directory.principal_for_key(secret)
    with pytest.raises(AuthError):
        directory.principal_for_session(token)
    with pytest.raises(NotFoundError):
        directory.user_by_email("ann@example.org")
    with directory.engine.connect() as conn:
        from sqlalchemy import text

        failures = conn.execute(
            text("SELECT count(*) FROM directory_login_failures WHERE account = :a"),
            {"a": "ann@example.org"},
        ).scalar_one()
    assert failures == 0

    # Deleted is final: not enabled, granted, or put in a team again.
    with pytest.raises(ConflictError, match="deleted"):
        directory.enable_user(ann.id, by=boss)
    with pytest.raises(ConflictError, match="deleted"):
        directory.grant(ann.id, "alpha", "developer")
    with pytest.raises(ConflictError, match="deleted"):
        directory.add_member("reviewers", ann.id)
    assert directory.delete_user(ann.id, by=boss) == deleted
    assert len(audit.of("auth.user_deleted")) == 1

    # The email and the single sign-on identity are free: they make a new account.
    again = directory.create_user("ann@example.org", "Ann Smith")
    assert again.id != ann.id
    sso = directory.upsert_oidc_user("https://idp.example", "sub-ann", None, "Ann")
    assert sso.id != ann.id

    [event] = audit.of("auth.user_deleted")
    assert event[2]["actor"] == boss.actor() and event[2]["subject"] == ann.id
    assert event[2]["refs"]["teams_left"] == ["reviewers"]
    dumped = json.dumps(event[2])
    assert "ann@example.org" not in dumped and "Ann Smith" not in dumped
    revoked = [(e[1], e[2]["refs"]["role"]) for e in audit.of("auth.role_revoked")]
    assert sorted(revoked, key=str) == sorted([("alpha", "developer"), (None, "auditor")], key=str)


def test_effective_grants_and_team_listings(directory: Directory) -> None:
    directory.create_project("alpha")
    directory.create_project("beta")
    ann = directory.create_user("ann@example.org", "Ann")
    bob = directory.create_user("bob@example.org", "Bob")
    directory.grant(ann.id, "alpha", "developer")
    directory.create_team("reviewers")
    directory.create_team("auditors")
    directory.add_member("reviewers", ann.id)
    directory.add_member("reviewers", bob.id)
    directory.grant_team("reviewers", "alpha", "approver")
    directory.grant_team("reviewers", "alpha", "developer")
    directory.grant_team("auditors", "beta", "auditor")
    assert directory.effective_grants(ann.id) == [
        Grant("alpha", "approver", "reviewers"),
        Grant("alpha", "developer", None),
        Grant("alpha", "developer", "reviewers"),
    ]
    assert [t.name for t in directory.list_teams()] == ["auditors", "reviewers"]
    assert [u.name for u in directory.team_members("reviewers")] == ["Ann", "Bob"]
    assert directory.team_grants(team="reviewers") == [
        Grant("alpha", "approver", "reviewers"),
        Grant("alpha", "developer", "reviewers"),
    ]
    assert directory.team_grants(project="beta") == [Grant("beta", "auditor", "auditors")]
    assert len(directory.team_grants()) == 3
    with pytest.raises(NotFoundError):
        directory.effective_grants("usr_missing")
    with pytest.raises(NotFoundError):
        directory.team_grants(team="nobody")
