"""LDAP sign-in and group sync against a real slapd over StartTLS (tests/auth/slapd.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.auth.directory import Directory
from flowloom.auth.ldap import LdapDirectory, LdapSettings
from flowloom.auth.records import User
from flowloom.errors import AuthError, ConfigError, RemoteError
from tests.auth.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    Slapd,
    running_slapd,
)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def slapd_own(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of the test's own, for tests that change the directory."""
    with running_slapd(tmp_path / "slapd") as server:
        yield server


def _settings(slapd: Slapd, **extra: object) -> LdapSettings:
    return LdapSettings.from_mapping(
        {
            "url": slapd.url,
            "ca_file": str(slapd.ca_file),
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_base": f"ou=people,{SUFFIX}",
            "group_base": f"ou=groups,{SUFFIX}",
            "teams": {"engineers": "Engineering", "auditors": "Audit"},
            "required_group": "flowloom-users",
            **extra,
        }
    )


@pytest.fixture
def events() -> list[tuple[str, dict[str, object]]]:
    return []


@pytest.fixture
def directory(tmp_path: Path, events: list[tuple[str, dict[str, object]]]) -> Iterator[Directory]:
    opened = Directory(
        str(tmp_path / "directory.db"),
        audit=lambda kind, project, meta: events.append((kind, dict(meta))),
    )
    opened.create_project("payments")
    yield opened
    opened.close()


def test_sign_in_by_bind_creates_the_account_and_syncs_teams(
    slapd: Slapd, directory: Directory
) -> None:
    ldap = LdapDirectory(_settings(slapd), directory)
    directory.create_team("Engineering")
    directory.grant_team("Engineering", "payments", "developer")
    ada = ldap.authenticate("ada", "ada-password-1")
    assert (ada.email, ada.name) == ("ada@example.org", "Ada Lovelace")
    assert (
        ada.oidc_issuer == f"ldap:{slapd.url}" and ada.oidc_subject == f"uid=ada,ou=people,{SUFFIX}"
    )
    assert directory.grants_of(ada.id)["payments"] == frozenset({"developer"})
    again = ldap.authenticate("ada@example.org", "ada-password-1")  # by mail, same account
    assert again.id == ada.id
    alan = ldap.authenticate("alan", "alan-password-1")
    assert [u.name for u in directory.team_members("Audit")] == ["Alan Turing"]
    assert {u.id for u in directory.team_members("Engineering")} == {ada.id, alan.id}


@pytest.mark.parametrize(
    ("login", "password"),
    [
        ("ada", "wrong-password"),
        ("ada", ""),  # an empty password would be an anonymous bind: never accepted
        ("nobody", "whatever-1"),
        ("*", "ada-password-1"),  # filter characters are escaped, not wildcards
        ("ada)(uid=*", "ada-password-1"),
    ],
)
def test_wrong_credentials_are_refused_alike(
    slapd: Slapd, directory: Directory, login: str, password: str
) -> None:
    with pytest.raises(AuthError, match="the user name or password is wrong"):
        LdapDirectory(_settings(slapd), directory).authenticate(login, password)
    assert directory.list_users() == []


def test_someone_outside_the_required_group_is_refused(slapd: Slapd, directory: Directory) -> None:
    with pytest.raises(AuthError, match="not in the group"):
        LdapDirectory(_settings(slapd), directory).authenticate("eve", "eve-password-1")


def test_the_password_never_crosses_unencrypted(slapd: Slapd, directory: Directory) -> None:
    # slapd refuses simple binds below a 128-bit security strength: sign-in working at all
    # (above) proves StartTLS; without it the same bind is refused by the server.
    import ldap3  # type: ignore[import-untyped]

    plain = ldap3.Connection(ldap3.Server(slapd.url), SERVICE_DN, SERVICE_PASSWORD)
    assert not plain.bind() and plain.result["description"] == "confidentialityRequired"
    with pytest.raises(ConfigError, match="start_tls"):
        _settings(slapd, start_tls=False)


def test_an_untrusted_certificate_is_refused(
    slapd: Slapd, directory: Directory, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    from tests.auth.slapd import _certificates

    (tmp_path / "other").mkdir()
    other_ca.write_bytes(_certificates(tmp_path / "other")[0].read_bytes())
    ldap = LdapDirectory(_settings(slapd, ca_file=str(other_ca)), directory)
    with pytest.raises(RemoteError):
        ldap.authenticate("ada", "ada-password-1")


def _admin(slapd: Slapd) -> object:
    import ldap3

    tls = ldap3.Tls(ca_certs_file=str(slapd.ca_file))
    connection = ldap3.Connection(ldap3.Server(slapd.url, tls=tls), ADMIN_DN, ADMIN_PASSWORD)
    connection.open()
    assert connection.start_tls() and connection.bind()
    return connection


def test_sync_follows_group_changes_and_deprovisions_leavers(
    slapd_own: Slapd, directory: Directory, events: list[tuple[str, dict[str, object]]]
) -> None:
    import ldap3

    cut: list[tuple[str, str]] = []

    def cut_off(user: User, by: object, why: str) -> None:
        cut.append((user.id, why))

    ldap = LdapDirectory(_settings(slapd_own), directory, cut_off=[cut_off])
    ada = ldap.authenticate("ada", "ada-password-1")
    alan = ldap.authenticate("alan", "alan-password-1")
    _, ada_key = directory.create_key(ada.id, name="laptop")
    _, session_token, _ = directory.create_session(ada.id, via="ldap")
    assert ldap.sync().disabled == ()

    admin = _admin(slapd_own)
    people, groups = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
    # Alan leaves the auditors; Ada leaves the company's FlowLoom group.
    assert admin.modify(  # type: ignore[attr-defined]
        f"cn=auditors,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=alan,{people}"])]}
    )
    assert admin.modify(  # type: ignore[attr-defined]
        f"cn=flowloom-users,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=ada,{people}"])]}
    )
    report = ldap.sync()
    assert report.disabled == (ada.id,)
    assert (alan.id, "Audit") in report.left and (ada.id, "Engineering") in report.left
    assert cut == [(ada.id, "disabled")]
    assert directory.get_user(ada.id).disabled
    with pytest.raises(AuthError):
        directory.principal_for_key(ada_key)
    with pytest.raises(AuthError):
        directory.principal_for_session(session_token)
    assert not directory.get_user(alan.id).disabled
    assert "Audit" not in {g.team for g in directory.effective_grants(alan.id)}
    synced = [meta for kind, meta in events if kind == "auth.ldap_sync"]
    assert len(synced) == 1 and synced[0]["refs"]["disabled"] == [ada.id]  # type: ignore[index]
    assert "ada-password-1" not in json.dumps([m for _, m in events], default=str)
    # An entry deleted from LDAP is deprovisioned the same way.
    assert admin.delete(f"uid=alan,{people}")  # type: ignore[attr-defined]
    assert ldap.sync().disabled == (alan.id,)
    with pytest.raises(AuthError):
        ldap.authenticate("ada", "ada-password-1")


def test_leaving_the_required_group_cuts_off_at_the_next_sign_in(
    slapd_own: Slapd, directory: Directory, events: list[tuple[str, dict[str, object]]]
) -> None:
    import ldap3

    cut: list[str] = []
    ldap = LdapDirectory(
        _settings(slapd_own, sync_minutes=0),
        directory,
        cut_off=[lambda user, by, why: cut.append(user.id)],
    )
    ada = ldap.authenticate("ada", "ada-password-1")
    _, ada_key = directory.create_key(ada.id, name="laptop")
    _, session_token, _ = directory.create_session(ada.id, via="ldap")
    admin = _admin(slapd_own)
    groups, people = f"ou=groups,{SUFFIX}", f"ou=people,{SUFFIX}"
    assert admin.modify(  # type: ignore[attr-defined]
        f"cn=flowloom-users,{groups}", {"member": [(ldap3.MODIFY_DELETE, [f"uid=ada,{people}"])]}
    )
    # No sync has run: the next sign-in finds her out of the group and cuts her off.
    with pytest.raises(AuthError, match="not in the group"):
        ldap.authenticate("ada", "ada-password-1")
    assert directory.get_user(ada.id).disabled and cut == [ada.id]
    with pytest.raises(AuthError):
        directory.principal_for_key(ada_key)
    with pytest.raises(AuthError):
        directory.principal_for_session(session_token)
    synced = [meta for kind, meta in events if kind == "auth.ldap_sync"]
    assert synced[-1]["refs"] == {"disabled": [ada.id], "at_sign_in": True}
    assert ldap.sync().disabled == ()  # already done


def test_a_server_syncs_by_itself_and_survives_a_failed_run() -> None:
    import threading

    from flowloom.auth.ldapsync import PeriodicSync

    runs: list[int] = []
    second = threading.Event()

    def run() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the directory server is down")  # logged, retried
        second.set()

    loop = PeriodicSync(run, 0.01).start()
    try:
        assert second.wait(timeout=60)
    finally:
        loop.close()
    assert len(runs) >= 2
    with pytest.raises(ValueError):
        PeriodicSync(run, 0)


def test_bad_settings_say_what_is_wrong(slapd: Slapd) -> None:
    with pytest.raises(ConfigError, match="sync_minutes"):
        _settings(slapd, sync_minutes=-1)
    with pytest.raises(ConfigError, match="not an LDAP URL"):
        _settings(slapd, url="http://127.0.0.1")
    with pytest.raises(ConfigError, match="unknown"):
        _settings(slapd, colour="blue")
    with pytest.raises(ConfigError, match="needs user_base"):
        LdapSettings.from_mapping({"url": slapd.url})
