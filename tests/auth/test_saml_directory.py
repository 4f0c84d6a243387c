"""The Directory's SAML state on SQLite and PostgreSQL: single-use requests, assertion ids
remembered until expiry (replay protection, shared by every process), the IdP session
behind each FlowLoom session, and IdP-initiated logout."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowloom.auth.directory import Directory
from flowloom.auth.records import SamlSessionRef
from flowloom.errors import AuthError, InputError
from tests.auth.conftest import AuditLog, DirectoryFactory, FakeClock

IDP = "https://idp.example.test/metadata"


def test_request_is_taken_once_and_expires(directory: Directory, clock: FakeClock) -> None:
    directory.put_saml_request("relay-1", "id-1", "reauth", "/projects/alpha")
    pending = directory.take_saml_request("relay-1")
    assert (pending.request_id, pending.kind, pending.redirect) == (
        "id-1",
        "reauth",
        "/projects/alpha",
    )
    with pytest.raises(AuthError):
        directory.take_saml_request("relay-1")
    directory.put_saml_request("relay-2", "id-2", "login", "/")
    clock.advance(minutes=11)
    with pytest.raises(AuthError):
        directory.take_saml_request("relay-2")
    with pytest.raises(InputError):
        directory.put_saml_request("relay-3", "id-3", "wizardry", "/")


def test_assertion_ids_are_remembered_until_they_expire(
    make_directory: DirectoryFactory, clock: FakeClock
) -> None:
    one, other_process = make_directory(), make_directory()
    until = clock() + timedelta(minutes=5)
    assert one.remember_saml_assertion(IDP, "_a1", until)
    assert not other_process.remember_saml_assertion(IDP, "_a1", until)  # replay
    assert other_process.remember_saml_assertion("https://other-idp.test", "_a1", until)
    clock.advance(minutes=6)
    # Expired ids are forgotten (an expired assertion is refused on its times anyway).
    assert one.remember_saml_assertion(IDP, "_a2", clock() + timedelta(minutes=5))
    assert one.remember_saml_assertion(IDP, "_a1", clock() + timedelta(minutes=5))


def test_idp_logout_ends_the_subjects_sessions(directory: Directory, audit: AuditLog) -> None:
    ada = directory.upsert_federated_user(IDP, "ada", "ada@example.test", "Ada", method="saml")
    bob = directory.upsert_federated_user(IDP, "bob", None, "Bob", method="saml")
    sessions = {}
    for who, index in (("ada", "s1"), ("ada", "s2"), ("bob", "s3")):
        user = ada if who == "ada" else bob
        session, token, _ = directory.create_session(user.id, via="saml")
        directory.bind_saml_session(SamlSessionRef(session.id, IDP, who, None, None, None, index))
        sessions[index] = (session.id, token)
    assert directory.saml_session(sessions["s1"][0]) == SamlSessionRef(
        sessions["s1"][0], IDP, "ada", None, None, None, "s1"
    )
    assert directory.end_saml_sessions(IDP, "ada", ["s2"]) == [sessions["s2"][0]]
    directory.session_for_token(sessions["s1"][1])  # still live
    assert directory.end_saml_sessions(IDP, "ada") == [sessions["s1"][0]]
    with pytest.raises(AuthError):
        directory.session_for_token(sessions["s1"][1])
    directory.session_for_token(sessions["s3"][1])  # bob untouched
    logouts = audit.of("auth.logout")
    assert [m["refs"]["initiated_by"] for _, _, m in logouts] == ["idp", "idp"]
    assert [m["refs"]["method"] for _, _, m in audit.of("auth.login")] == ["saml"] * 3


def test_saml_identity_links_an_existing_account_by_email(
    directory: Directory, audit: AuditLog
) -> None:
    existing = directory.create_user("ada@example.test", "Ada")
    linked = directory.upsert_federated_user(IDP, "ada", "ADA@example.test", "Ada", method="saml")
    assert linked.id == existing.id and linked.oidc_subject == "ada"
    assert audit.kinds().count("auth.saml_linked") == 1
    assert audit.of("auth.saml_linked")[0][2]["refs"]["method"] == "saml"
    again = directory.upsert_federated_user(IDP, "ada", "ada@example.test", "Ada", method="saml")
    assert again.id == existing.id and audit.kinds().count("auth.saml_linked") == 1
