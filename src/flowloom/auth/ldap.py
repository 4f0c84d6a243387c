"""LDAP / Active Directory: sign-in by bind, and group membership synced to teams.

A sign-in searches the user with the service account (`bind_dn`), then binds as the user
with the password given: the directory server checks it, FlowLoom never sees a hash. The
connection is encrypted before any password crosses it (StartTLS on ``ldap://``, or
``ldaps://``), with the server's certificate checked against `ca_file`; a plain
``ldap://`` without StartTLS is refused at configuration.

The account is the directory's user linked to the LDAP entry (its SSO identity is
``ldap:<url>`` + the entry's DN, as for OIDC), created on first sign-in. Groups map to
teams (`teams`: LDAP group name → FlowLoom team); at each sign-in and each `sync()` the
teams of mapped groups get exactly the LDAP members, so roles follow the groups through
the teams' grants. `sync()` also disables every linked user whose entry is gone or who
left `required_group` — sessions end, API keys and (through the cut-off hooks) gateway
keys are revoked at once — and records one ``auth.ldap_sync`` event with what changed.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowloom.auth.directory import Directory
from flowloom.auth.records import User
from flowloom.errors import AuthError, ConfigError, NotFoundError, RemoteError

__all__ = ["LdapDirectory", "LdapSettings", "SyncReport"]

CutOff = Callable[[User, Any, str], None]
_REFUSED = "the user name or password is wrong"


@dataclass(frozen=True)
class LdapSettings:
    """The [server.ldap] table (docs/auth.md#ldap)."""

    url: str
    user_base: str
    bind_dn: str | None = None
    bind_password: str | None = None
    start_tls: bool = True
    ca_file: Path | None = None
    user_filter: str = "(&(objectClass=inetOrgPerson)(|(uid={login})(mail={login})))"
    email_attribute: str = "mail"
    name_attribute: str = "cn"
    group_base: str | None = None
    group_filter: str = "(&(objectClass=groupOfNames)(member={dn}))"
    group_name_attribute: str = "cn"
    teams: Mapping[str, str] = field(default_factory=dict)
    required_group: str | None = None
    timeout_seconds: int = 10
    sync_minutes: int = 15
    """How often a running server syncs by itself (`LdapDirectory.sync`); 0: never."""

    def __post_init__(self) -> None:
        scheme = self.url.split("://", 1)[0].lower()
        if scheme not in ("ldap", "ldaps"):
            raise ConfigError(
                f"[server.ldap] url {self.url!r} is not an LDAP URL", hint="ldap:// or ldaps://"
            )
        if scheme == "ldap" and not self.start_tls:
            raise ConfigError(
                "[server.ldap] a plain ldap:// URL needs start_tls = true",
                hint="passwords must not cross the network in clear; or use ldaps://",
            )
        if (
            not isinstance(self.sync_minutes, int)
            or isinstance(self.sync_minutes, bool)
            or not 0 <= self.sync_minutes <= 10080
        ):
            raise ConfigError("[server.ldap] sync_minutes is a whole number from 0 to 10080")
        if "{login}" not in self.user_filter or "{dn}" not in self.group_filter:
            raise ConfigError("[server.ldap] user_filter needs {login} and group_filter needs {dn}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> LdapSettings:
        """Settings from a TOML table; ConfigError naming what is wrong."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown [server.ldap] setting(s): {', '.join(unknown)}")
        for required in ("url", "user_base"):
            if not isinstance(table.get(required), str) or not table[required]:
                raise ConfigError(f"[server.ldap] needs {required}")
        values = dict(table)
        if "ca_file" in values:
            values["ca_file"] = Path(str(values["ca_file"]))
        teams = values.get("teams", {})
        if not isinstance(teams, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in teams.items()
        ):
            raise ConfigError("[server.ldap.teams] maps LDAP group names to team names")
        return cls(**values)

    @property
    def issuer(self) -> str:
        """The SSO issuer recorded on linked accounts."""
        return "ldap:" + self.url.rstrip("/")


@dataclass(frozen=True)
class SyncReport:
    """What a sync changed."""

    disabled: tuple[str, ...]
    joined: tuple[tuple[str, str], ...]
    left: tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]

    return str(escape_filter_chars(value))


def _first(entry: Any, attribute: str) -> str | None:
    values = entry["attributes"].get(attribute)
    if isinstance(values, list):
        return str(values[0]) if values else None
    return None if values is None else str(values)


class LdapDirectory:
    """Sign-in against an LDAP server and group sync into the Directory's teams."""

    def __init__(
        self,
        settings: LdapSettings,
        directory: Directory,
        *,
        cut_off: Sequence[CutOff] = (),
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._cut_off = list(cut_off)

    @property
    def settings(self) -> LdapSettings:
        return self._settings

    def _connection(self, user: str | None, password: str | None) -> Any:
        """A bound, encrypted connection; AuthError when the bind is refused."""
        import ldap3  # type: ignore[import-untyped]
        from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]

        settings = self._settings
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )
        server = ldap3.Server(
            settings.url,
            use_ssl=settings.url.lower().startswith("ldaps://"),
            tls=tls,
            connect_timeout=int(settings.timeout_seconds),
        )
        connection = ldap3.Connection(
            server,
            user=user,
            password=password,
            receive_timeout=int(settings.timeout_seconds),
            raise_exceptions=False,
        )
        try:
            connection.open()
            ldaps = settings.url.lower().startswith("ldaps://")
            if settings.start_tls and not ldaps and not connection.start_tls():
                raise RemoteError("the LDAP server refused StartTLS")
            if not connection.bind():
                connection.unbind()
                raise AuthError(_REFUSED, hint="check them, or ask an administrator")
        except LDAPException as exc:
            raise RemoteError(
                f"cannot reach the LDAP server: {type(exc).__name__}: {exc}",
                hint="check [server.ldap] url and ca_file",
            ) from None
        return connection

    def _find(self, service: Any, login: str) -> tuple[str, dict[str, Any]] | None:
        settings = self._settings
        query = settings.user_filter.replace("{login}", _escape(login))
        service.search(
            settings.user_base,
            query,
            attributes=[settings.email_attribute, settings.name_attribute],
            size_limit=2,
        )
        found = [e for e in service.response if e.get("type") == "searchResEntry"]
        if len(found) != 1:
            return None
        return str(found[0]["dn"]), found[0]

    def _groups(self, service: Any, dn: str) -> set[str]:
        settings = self._settings
        service.search(
            settings.group_base or settings.user_base,
            settings.group_filter.replace("{dn}", _escape(dn)),
            attributes=[settings.group_name_attribute],
        )
        return {
            name
            for e in service.response
            if e.get("type") == "searchResEntry"
            and (name := _first(e, settings.group_name_attribute)) is not None
        }

    def authenticate(self, login: str, password: str) -> User:
        """The account of the LDAP user `login` (uid or mail) whose `password` the LDAP
        server accepts, with its teams synced; AuthError otherwise (one message)."""
        if not isinstance(login, str) or not login.strip() or not password:
            # An empty password would be an anonymous bind, which LDAP servers accept.
            raise AuthError(_REFUSED)
        service = self._connection(self._settings.bind_dn, self._settings.bind_password)
        try:
            found = self._find(service, login.strip())
            if found is None:
                raise AuthError(_REFUSED)
            dn, entry = found
            self._connection(dn, password).unbind()
            groups = self._groups(service, dn)
        finally:
            service.unbind()
        required = self._settings.required_group
        if required is not None and required not in groups:
            self._cut_off_linked(dn)
            raise AuthError(
                "your LDAP account is not in the group that may use FlowLoom",
                hint=f"ask to be added to {required}",
            )
        email = _first(entry, self._settings.email_attribute)
        name = _first(entry, self._settings.name_attribute) or email or dn
        user = self._directory.upsert_oidc_user(self._settings.issuer, dn, email, name)
        if user.disabled:
            raise AuthError("this account is disabled", hint="ask an administrator")
        self._sync_teams(user.id, groups, [], [])
        return user

    def _cut_off_linked(self, dn: str) -> None:
        """Disable the account linked to `dn` (it left `required_group`), at once."""
        issuer = self._settings.issuer
        for user in self._directory.list_users():
            if user.oidc_issuer == issuer and user.oidc_subject == dn and not user.disabled:
                self._directory.disable_user(user.id)
                for hook in self._cut_off:
                    hook(user, None, "disabled")
                self._directory.record(
                    "auth.ldap_sync",
                    by=None,
                    subject=issuer,
                    refs={"disabled": [user.id], "at_sign_in": True},
                )

    def _sync_teams(
        self,
        user_id: str,
        groups: set[str],
        joined: list[tuple[str, str]],
        left: list[tuple[str, str]],
    ) -> None:
        for group, team in sorted(self._settings.teams.items()):
            try:
                members = {u.id for u in self._directory.team_members(team)}
            except NotFoundError:
                self._directory.create_team(team)
                members = set()
            if group in groups and user_id not in members:
                self._directory.add_member(team, user_id)
                joined.append((user_id, team))
            elif group not in groups and user_id in members:
                self._directory.remove_member(team, user_id)
                left.append((user_id, team))

    def sync(self) -> SyncReport:
        """Bring every linked account in line with LDAP: teams follow groups; an entry
        that is gone, or out of `required_group`, disables its account (and runs the
        cut-off hooks). Recorded as one ``auth.ldap_sync`` event when anything changed."""
        settings = self._settings
        linked = [
            u
            for u in self._directory.list_users()
            if u.oidc_issuer == settings.issuer and u.oidc_subject and not u.disabled
        ]
        disabled: list[str] = []
        joined: list[tuple[str, str]] = []
        left: list[tuple[str, str]] = []
        service = self._connection(settings.bind_dn, settings.bind_password)
        try:
            for user in linked:
                dn = str(user.oidc_subject)
                service.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["cn"])
                exists = any(e.get("type") == "searchResEntry" for e in service.response)
                groups = self._groups(service, dn) if exists else set()
                if not exists or (
                    settings.required_group is not None and settings.required_group not in groups
                ):
                    self._directory.disable_user(user.id)
                    for hook in self._cut_off:
                        hook(user, None, "disabled")
                    disabled.append(user.id)
                    groups = set()
                self._sync_teams(user.id, groups, joined, left)
        finally:
            service.unbind()
        report = SyncReport(tuple(disabled), tuple(joined), tuple(left))
        if disabled or joined or left:
            self._directory.record(
                "auth.ldap_sync",
                by=None,
                subject=settings.issuer,
                refs={
                    "disabled": list(report.disabled) or None,
                    "joined": [list(p) for p in report.joined] or None,
                    "left": [list(p) for p in report.left] or None,
                },
            )
        return report
