"""Projects, users, teams and grants in the directory, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from flowloom.auth.directory import INSTANCE_PROJECT, Directory
from flowloom.errors import AuthError, ConflictError, InputError, NotFoundError
from tests.auth.conftest import PASSWORD, AuditLog, FakeClock


def test_projects(directory: Directory, audit: AuditLog) -> None:
    created = directory.create_project("alpha")
    directory.create_project("beta.2")
    assert [p.name for p in directory.list_projects()] == ["alpha", "beta.2"]
    assert directory.get_project("alpha") == created
    with pytest.raises(ConflictError):
        directory.create_project("alpha")
    with pytest.raises(NotFoundError):
        directory.get_project("gamma")
    for bad in ("", "*", "-x", "a b", "x/y", "é", "a" * 129):
        with pytest.raises(InputError):
            directory.create_project(bad)
    with pytest.raises(InputError, match="reserved"):
        directory.create_project(INSTANCE_PROJECT)
    events = audit.of("auth.project_created")
    assert [e[2]["subject"] for e in events] == ["alpha", "beta.2"]
    assert all(e[1] is None for e in events)  # instance-wide


def test_users(directory: Directory, audit: AuditLog, clock: FakeClock) -> None:
    ann = directory.create_user(" Ann@Example.ORG ", "Ann  Smith", password=PASSWORD)
    clock.advance(seconds=1)
    assert ann.email == "ann@example.org" and ann.name == "Ann Smith"
    assert ann.kind == "user" and ann.has_password and not ann.disabled
    assert directory.get_user(ann.id) == ann
    assert directory.user_by_email("ANN@example.org") == ann
    bot = directory.create_user(None, "ci bot", kind="service")
    assert bot.kind == "service" and bot.email is None and not bot.has_password
    assert [u.id for u in directory.list_users()] == [ann.id, bot.id]
    with pytest.raises(ConflictError):
        directory.create_user("ann@example.org", "Other")
    with pytest.raises(InputError, match="email"):
        directory.create_user("not-an-email", "X")
    with pytest.raises(InputError):
        directory.create_user(None, "person without email")
    with pytest.raises(InputError):
        directory.create_user("x@example.org", "X", kind="robot")
    with pytest.raises(InputError, match="at least 12"):
        directory.create_user("short@example.org", "S", password="short")
    with pytest.raises(NotFoundError):
        directory.get_user("usr_missing")
    with pytest.raises(NotFoundError):
        directory.user_by_email("nobody@example.org")
    created = audit.of("auth.user_created")
    assert [e[2]["refs"]["user_id"] for e in created] == [ann.id, bot.id]


def test_set_password_and_disable(directory: Directory, audit: AuditLog) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    assert not ann.has_password
    with pytest.raises(InputError, match="at least 12"):
        directory.set_password(ann.id, "tooshort")
    directory.set_password(ann.id, PASSWORD)
    assert directory.get_user(ann.id).has_password
    assert directory.check_password("ann@example.org", PASSWORD, client="c").user_id == ann.id
    directory.disable_user(ann.id)
    assert directory.get_user(ann.id).disabled
    with pytest.raises(AuthError):
        directory.check_password("ann@example.org", PASSWORD, client="c")
    with pytest.raises(NotFoundError):
        directory.disable_user("usr_missing")
    assert "auth.password_set" in audit.kinds() and "auth.user_disabled" in audit.kinds()


def test_grants_direct_and_team(directory: Directory, audit: AuditLog) -> None:
    directory.create_project("alpha")
    directory.create_project("beta")
    ann = directory.create_user("ann@example.org", "Ann")
    bob = directory.create_user("bob@example.org", "Bob")
    directory.grant(ann.id, "alpha", "developer")
    directory.grant(ann.id, "alpha", "developer")  # idempotent, audited once
    directory.grant(ann.id, "*", "auditor")
    assert directory.grants_of(ann.id) == {
        "alpha": {"developer"},
        "*": {"auditor"},
    }
    assert len(audit.of("auth.role_granted")) == 2
    granted = audit.of("auth.role_granted")
    assert granted[0][1] == "alpha" and granted[1][1] is None
    assert granted[0][2]["refs"] == {"user_id": ann.id, "project": "alpha", "role": "developer"}

    team = directory.create_team("reviewers")
    with pytest.raises(ConflictError):
        directory.create_team("reviewers")
    directory.add_member("reviewers", ann.id)
    directory.add_member(team.id, bob.id)
    directory.grant_team("reviewers", "alpha", "approver")
    directory.grant_team("reviewers", "beta", "auditor")
    assert directory.grants_of(ann.id) == {
        "alpha": {"developer", "approver"},
        "beta": {"auditor"},
        "*": {"auditor"},
    }
    assert directory.grants_of(bob.id) == {"alpha": {"approver"}, "beta": {"auditor"}}

    members = {m.user.id: m for m in directory.members("alpha")}
    assert members[ann.id].roles == {"developer", "approver"}
    assert members[ann.id].direct_roles == {"developer"}
    assert members[bob.id].direct_roles == frozenset()

    directory.revoke(ann.id, "alpha", "developer")
    assert directory.grants_of(ann.id)["alpha"] == {"approver"}
    assert audit.of("auth.role_revoked")[0][1] == "alpha"
    with pytest.raises(NotFoundError):
        directory.revoke(ann.id, "alpha", "developer")
    directory.revoke_team("reviewers", "alpha", "approver")
    assert "alpha" not in directory.grants_of(bob.id)

    with pytest.raises(InputError, match="unknown role"):
        directory.grant(ann.id, "alpha", "superuser")
    with pytest.raises(NotFoundError):
        directory.grant(ann.id, "gamma", "developer")
    with pytest.raises(NotFoundError):
        directory.grant("usr_missing", "alpha", "developer")
    with pytest.raises(NotFoundError):
        directory.add_member("nobody", ann.id)
    with pytest.raises(NotFoundError):
        directory.add_member("reviewers", "usr_missing")


def test_principal_grants_merge(directory: Directory) -> None:
    directory.create_project("alpha")
    ann = directory.create_user("ann@example.org", "Ann", password=PASSWORD)
    directory.create_team("ops")
    directory.add_member("ops", ann.id)
    directory.grant_team("ops", "alpha", "developer")
    directory.grant(ann.id, "alpha", "approver")
    who = directory.check_password("ann@example.org", PASSWORD, client="10.0.0.1")
    assert who.grants["alpha"] == {"developer", "approver"}
    assert who.roles_on("alpha") == {"developer", "approver"}
    assert who.actor() == {"type": "human", "id": ann.id, "name": "Ann"}


def test_oidc_users(directory: Directory, audit: AuditLog) -> None:
    first = directory.upsert_oidc_user("https://idp.example", "sub-1", "Carol@Example.org", "Carol")
    again = directory.upsert_oidc_user("https://idp.example", "sub-1", "carol@example.org", "Carol")
    assert first.id == again.id and first.oidc_subject == "sub-1"
    assert not first.has_password
    # An existing password account with the same email is linked once.
    dan = directory.create_user("dan@example.org", "Dan", password=PASSWORD)
    linked = directory.upsert_oidc_user("https://idp.example", "sub-2", "dan@example.org", "Dan")
    assert linked.id == dan.id and linked.oidc_issuer == "https://idp.example"
    with pytest.raises(AuthError):
        directory.upsert_oidc_user("https://idp.example", "sub-3", "dan@example.org", "Dan")
    assert "auth.oidc_linked" in audit.kinds()
    assert len(audit.of("auth.user_created")) == 2


def test_oidc_state_single_use_and_expiry(directory: Directory, clock: FakeClock) -> None:
    directory.put_oidc_state("state-1", "verifier-1", "nonce-1", "/ui")
    taken = directory.take_oidc_state("state-1")
    assert (taken.verifier, taken.nonce, taken.redirect) == ("verifier-1", "nonce-1", "/ui")
    with pytest.raises(AuthError):
        directory.take_oidc_state("state-1")
    directory.put_oidc_state("state-2", "v", "n", "/")
    clock.advance(minutes=11)
    with pytest.raises(AuthError):
        directory.take_oidc_state("state-2")
    with pytest.raises(AuthError):
        directory.take_oidc_state("never-issued")
    directory.put_oidc_state("state-3", "v", "n", "/")
    with pytest.raises(ConflictError):
        directory.put_oidc_state("state-3", "v2", "n2", "/")
