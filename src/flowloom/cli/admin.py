"""`flowloom admin …`: bootstrap and manage the server's users, projects, roles and API keys.

These commands work on the directory in the database directly (no server needed).
The command line proves no one, so it records as itself (the `flowloom-admin-cli`
service actor, named with the operating-system user). Offboarding and team commands
(`admin user …`, `admin team …`) name the instance owner they act for with `--as`, who
must exist, be enabled and hold owner on "*", so the Directory's rules (nobody acts on
themselves, only owners on owners) apply; `--as` is a claim by whoever can reach the
database, not a sign-in, kept as `refs.claimed_by`. Every change is also recorded in
the ledger: project-scoped events in that project's log, instance-wide ones in the log
of the reserved project "flowloom-instance".
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import ConflictError, InputError, PermissionDeniedError
from flowloom.services import AuditLedgers

__all__ = ["admin", "parse_duration"]

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """'90d', '24h', '30m', '2w', '45s' → timedelta; InputError otherwise."""
    match = _DURATION_RE.match(value or "")
    if match is None:
        raise InputError(
            f"{value!r} is not a duration", hint="write a number and a unit: 30m, 24h, 90d, 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@contextmanager
def _directory(ctx: click.Context) -> Iterator[Any]:
    from flowloom.auth.directory import Directory
    from flowloom.services import default_actor

    app = AppContext.of(ctx)
    database = ctx.find_object(_AdminOptions)
    url = (database.database if database else None) or app.settings().database
    audit = AuditLedgers(app.settings().with_overrides(database=url))
    try:
        audit.require_key()  # every change is recorded in the instance's log, with its key
        # The command line proves no one: it acts as itself, naming who ran it.
        os_user = default_actor()["id"]
        actor = {
            "type": "service",
            "id": "flowloom-admin-cli",
            "name": f"flowloom admin ({os_user})",
        }
        directory = Directory(url, audit=audit, default_actor=actor)
        try:
            yield directory
        finally:
            directory.close()
    finally:
        audit.close()


@contextmanager
def _vkey_revoker(ctx: click.Context, directory: Any) -> Iterator[Any]:
    """revoke(user as before, by, why): revoke the gateway virtual keys a deprovisioned
    user owns (by id or email) in the same database, each recorded as auth.vkey_revoked."""
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings
    from flowloom.ledger.keys import KeyStore
    from flowloom.server.deprovision import owners_of

    home = AppContext.of(ctx).settings().home
    with Access(
        directory.engine,
        master_key_loader=KeyStore(home).master_key,
        settings=AccessSettings(background=False),
    ) as access:

        def revoke(user: Any, by: Any, why: str) -> None:
            for key in access.revoke_owned_keys("user", owners_of(user)):
                refs = {"vkey_id": key.id, "prefix": key.prefix, "owner": key.owner}
                refs.update(user_id=user.id, reason=f"user {why}")
                directory.record("auth.vkey_revoked", by=by, subject=key.id, refs=refs)

        yield revoke


class _AdminOptions:
    def __init__(self, database: str | None) -> None:
        self.database = database


def _read_password(from_stdin: bool, *, prompt: bool) -> str | None:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise InputError("no password on standard input", hint="pipe one line to it")
        return password
    if prompt:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


def _fmt_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group()
@click.option(
    "--database",
    metavar="URL",
    help="SQLite path or postgresql:// URL of the server database (default: settings).",
)
@click.pass_context
def admin(ctx: click.Context, database: str | None) -> None:
    """Manage users, projects, roles and API keys of a FlowLoom server."""
    ctx.obj = _AdminOptions(database)


@admin.command("create-owner")
@click.option("--email", required=True, help="The owner's email address (their sign-in).")
@click.option("--name", required=True, help="The owner's printed name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--force-add", is_flag=True, help="Add another owner even if one exists.")
@click.pass_context
def create_owner(
    ctx: click.Context, email: str, name: str, password_stdin: bool, force_add: bool
) -> None:
    """Create the first user, with the owner role on every project ("*")."""
    with _directory(ctx) as directory:
        if not force_add:
            owners = [
                u
                for u in directory.list_users()
                if "owner" in directory.grants_of(u.id).get("*", frozenset())
            ]
            if owners:
                raise ConflictError(
                    f"an owner already exists ({owners[0].email or owners[0].id})",
                    hint="sign in as that owner, or pass --force-add to add another",
                )
        password = _read_password(password_stdin, prompt=True)
        user = directory.create_user(email, name, password=password)
        directory.grant(user.id, "*", "owner")
    click.echo(f"created owner {user.email} ({user.id})")


@admin.command("create-user")
@click.option("--email", help="Email address (required for people).")
@click.option("--name", required=True, help="Printed name.")
@click.option(
    "--kind",
    type=click.Choice(["user", "service"]),
    default="user",
    show_default=True,
    help="'service' for a machine account that uses API keys.",
)
@click.option("--password-stdin", is_flag=True, help="Read a password from standard input.")
@click.option("--prompt-password", is_flag=True, help="Ask for a password.")
@click.pass_context
def create_user(
    ctx: click.Context,
    email: str | None,
    name: str,
    kind: str,
    password_stdin: bool,
    prompt_password: bool,
) -> None:
    """Create a user or service account (no password: OIDC sign-in or API keys only)."""
    password = _read_password(password_stdin, prompt=prompt_password)
    with _directory(ctx) as directory:
        user = directory.create_user(email, name, password=password, kind=kind)
    click.echo(f"created {kind} {user.email or user.name} ({user.id})")


@admin.command("create-project")
@click.argument("name")
@click.pass_context
def create_project(ctx: click.Context, name: str) -> None:
    """Create a project (one ledger log of the same name)."""
    with _directory(ctx) as directory:
        project = directory.create_project(name)
    click.echo(f"created project {project.name}")


def _user_id(directory: Any, email: str) -> str:
    if email.startswith("usr_"):
        return str(directory.get_user(email).id)
    return str(directory.user_by_email(email).id)


_EMAIL_HELP = "The user's email address (or user id, usr_...)."


@admin.command("grant")
@click.option("--email", required=True, help=_EMAIL_HELP)
@click.option("--project", required=True, help='Project name, or "*" for every project.')
@click.option("--role", required=True, help="owner, admin, approver, developer, auditor, service.")
@click.pass_context
def grant(ctx: click.Context, email: str, project: str, role: str) -> None:
    """Give a user a role on a project."""
    with _directory(ctx) as directory:
        directory.grant(_user_id(directory, email), project, role)
    click.echo(f"granted {role} on {project} to {email}")


@admin.command("revoke")
@click.option("--email", required=True, help=_EMAIL_HELP)
@click.option("--project", required=True, help='Project name, or "*".')
@click.option("--role", required=True, help="The role to take away.")
@click.pass_context
def revoke(ctx: click.Context, email: str, project: str, role: str) -> None:
    """Take a role on a project away from a user."""
    with _directory(ctx) as directory:
        directory.revoke(_user_id(directory, email), project, role)
    click.echo(f"revoked {role} on {project} from {email}")


@admin.command("create-key")
@click.option("--email", required=True, help=_EMAIL_HELP)
@click.option("--name", default="cli", show_default=True, help="A label for the key.")
@click.option("--scope", "scopes", multiple=True, help="Limit to a permission (repeatable).")
@click.option("--expires-in", help="Lifetime such as 90d, 24h (default: no expiry).")
@click.pass_context
def create_key(
    ctx: click.Context, email: str, name: str, scopes: tuple[str, ...], expires_in: str | None
) -> None:
    """Create an API key; its secret is printed once, on standard output."""
    expires_at = datetime.now(UTC) + parse_duration(expires_in) if expires_in else None
    with _directory(ctx) as directory:
        key, secret = directory.create_key(
            _user_id(directory, email),
            name=name,
            scopes=list(scopes) if scopes else None,
            expires_at=expires_at,
        )
    click.echo(
        f"created API key {key.id} (flk_{key.prefix}_...); it is shown once, below:"
        " store it now, it cannot be shown again",
        err=True,
    )
    click.echo(secret)


@admin.command("list-keys")
@click.option("--email", required=True, help=_EMAIL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_keys(ctx: click.Context, email: str, as_json: bool) -> None:
    """List a user's API keys (never their secrets)."""
    now = datetime.now(UTC)
    with _directory(ctx) as directory:
        keys = directory.list_keys(_user_id(directory, email))
    rows = [
        {
            "id": k.id,
            "prefix": k.prefix,
            "name": k.name,
            "scopes": None if k.scopes is None else sorted(k.scopes),
            "created_at": _fmt_time(k.created_at),
            "expires_at": None if k.expires_at is None else _fmt_time(k.expires_at),
            "last_used_at": None if k.last_used_at is None else _fmt_time(k.last_used_at),
            "status": "revoked"
            if k.revoked_at is not None
            else ("active" if k.active(now) else "expired"),
        }
        for k in keys
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        scopes = ",".join(row["scopes"]) if row["scopes"] else "all"
        click.echo(
            f"{row['id']}  flk_{row['prefix']}_…  {row['status']:<7}  {row['name']}"
            f"  scopes={scopes}  expires={row['expires_at'] or '-'}"
            f"  last_used={row['last_used_at'] or '-'}"
        )


@admin.command("rotate-key")
@click.argument("key_id")
@click.option(
    "--overlap", default="24h", show_default=True, help="How long the old key keeps working."
)
@click.pass_context
def rotate_key(ctx: click.Context, key_id: str, overlap: str) -> None:
    """Replace an API key; the old one works until the overlap ends."""
    with _directory(ctx) as directory:
        key, secret = directory.rotate_key(key_id, overlap=parse_duration(overlap))
    click.echo(
        f"created API key {key.id} replacing {key_id} (which keeps working for {overlap});"
        " the new secret is shown once, below: store it now",
        err=True,
    )
    click.echo(secret)


@admin.command("revoke-key")
@click.argument("key_id")
@click.pass_context
def revoke_key(ctx: click.Context, key_id: str) -> None:
    """Revoke an API key at once."""
    with _directory(ctx) as directory:
        directory.revoke_key(key_id)
    click.echo(f"revoked API key {key_id}")


def _state(user: Any) -> str:
    return "deleted" if user.deleted_at is not None else "disabled" if user.disabled else "active"


def _echo_users(ctx: click.Context, as_json: bool) -> None:
    with _directory(ctx) as directory:
        rows = [
            {
                "id": u.id,
                "email": u.email,
                "name": u.name,
                "kind": u.kind,
                "disabled": u.disabled,
                "state": _state(u),
                "grants": {p: sorted(r) for p, r in sorted(directory.grants_of(u.id).items())},
            }
            for u in directory.list_users()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        grants = "; ".join(f"{p}: {','.join(r)}" for p, r in row["grants"].items()) or "no roles"
        state = "" if row["state"] == "active" else f" ({row['state']})"
        click.echo(
            f"{row['id']}  {row['email'] or '-'}  {row['name']}  [{row['kind']}]{state}  {grants}"
        )


@admin.command("list-users")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_users(ctx: click.Context, as_json: bool) -> None:
    """List users and service accounts with their roles (same as `user list`)."""
    _echo_users(ctx, as_json)


# -- offboarding and teams: acting as a named instance owner -------------------------------

_AS_HELP = "Act as this instance owner (email or usr_ id); recorded as the actor."


def _acting(directory: Any, who: str) -> Any:
    """The principal `--as` names, once it is an enabled instance owner."""
    principal = directory.principal_for_user(_user_id(directory, who), via="cli")
    if "owner" not in principal.grants.get("*", frozenset()):
        raise PermissionDeniedError(
            f'{who} is not an instance owner (owner on "*")',
            hint="name an instance owner with --as",
        )
    return principal


@admin.group("user")
def user_group() -> None:
    """List, disable, enable or delete users."""


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List users and service accounts with their state and roles."""
    _echo_users(ctx, as_json)


@user_group.command("disable")
@click.argument("user")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def user_disable(ctx: click.Context, user: str, acting: str) -> None:
    """Disable USER (email or usr_ id): their sessions end and API keys are revoked at once."""
    with _directory(ctx) as directory, _vkey_revoker(ctx, directory) as revoke:
        by = _acting(directory, acting)
        before = directory.get_user(_user_id(directory, user))
        done = directory.disable_user(before.id, by=by)
        revoke(before, by, "disabled")
    click.echo(f"disabled {user} ({done.id}): sessions ended, API keys revoked")


@user_group.command("enable")
@click.argument("user")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def user_enable(ctx: click.Context, user: str, acting: str) -> None:
    """Enable USER again: sign-in works; revoked API keys stay revoked."""
    with _directory(ctx) as directory:
        done = directory.enable_user(_user_id(directory, user), by=_acting(directory, acting))
    click.echo(f"enabled {user} ({done.id})")


@user_group.command("delete")
@click.argument("user")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.option("--yes", is_flag=True, help="Confirm: deleting cannot be undone.")
@click.pass_context
def user_delete(ctx: click.Context, user: str, acting: str, yes: bool) -> None:
    """Delete USER: erase their email, name, password and sign-on link; keep their id."""
    if not yes:
        raise InputError(
            "deleting a user erases their personal data and cannot be undone",
            hint="pass --yes to confirm, or disable the user instead",
        )
    with _directory(ctx) as directory, _vkey_revoker(ctx, directory) as revoke:
        by = _acting(directory, acting)
        before = directory.get_user(_user_id(directory, user))
        done = directory.delete_user(before.id, by=by)
        revoke(before, by, "deleted")
    click.echo(f"deleted {user}: {done.id} remains, as a deleted user")


@user_group.command("grants")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def user_grants(ctx: click.Context, user: str, as_json: bool) -> None:
    """List USER's effective roles, direct and through teams."""
    with _directory(ctx) as directory:
        grants = directory.effective_grants(_user_id(directory, user))
    rows = [{"project": g.project, "role": g.role, "team": g.team} for g in grants]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        via = f"team {row['team']}" if row["team"] else "direct"
        click.echo(f"{row['project']}  {row['role']}  ({via})")


@admin.group("team")
def team_group() -> None:
    """Create teams, add members, grant, revoke and list teams' roles."""


@team_group.command("create")
@click.argument("team")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def team_create(ctx: click.Context, team: str, acting: str) -> None:
    """Create a team."""
    with _directory(ctx) as directory:
        created = directory.create_team(team, by=_acting(directory, acting))
    click.echo(f"created team {created.name} ({created.id})")


@team_group.command("add-member")
@click.argument("team")
@click.argument("user")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def team_add_member(ctx: click.Context, team: str, user: str, acting: str) -> None:
    """Put USER (email or usr_ id) in TEAM."""
    with _directory(ctx) as directory:
        directory.add_member(team, _user_id(directory, user), by=_acting(directory, acting))
    click.echo(f"added {user} to team {team}")


@team_group.command("grant")
@click.argument("team")
@click.option("--project", required=True, help='Project name, or "*" for every project.')
@click.option("--role", required=True, help="owner, admin, approver, developer, auditor, service.")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def team_grant(ctx: click.Context, team: str, project: str, role: str, acting: str) -> None:
    """Give every member of TEAM a role on a project."""
    with _directory(ctx) as directory:
        directory.grant_team(team, project, role, by=_acting(directory, acting))
    click.echo(f"granted {role} on {project} to team {team}")


@team_group.command("revoke")
@click.argument("team")
@click.option("--project", required=True, help='Project name, or "*".')
@click.option("--role", required=True, help="The role to take away.")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def team_revoke(ctx: click.Context, team: str, project: str, role: str, acting: str) -> None:
    """Take a role on a project away from TEAM."""
    with _directory(ctx) as directory:
        directory.revoke_team(team, project, role, by=_acting(directory, acting))
    click.echo(f"revoked {role} on {project} from team {team}")


@team_group.command("roles")
@click.argument("team", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def team_roles(ctx: click.Context, team: str | None, as_json: bool) -> None:
    """List the roles of TEAM, or of every team."""
    with _directory(ctx) as directory:
        grants = directory.team_grants(team=team)
    rows = [{"team": g.team, "project": g.project, "role": g.role} for g in grants]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['team']}  {row['project']}  {row['role']}")


@admin.group("scim-token")
def scim_token_group() -> None:
    """Create, list and revoke the bearer tokens identity providers provision with (SCIM)."""


@scim_token_group.command("create")
@click.option("--name", required=True, help="What the token is for (e.g. okta, entra).")
@click.pass_context
def scim_token_create(ctx: click.Context, name: str) -> None:
    """Create a SCIM provisioning token; it is printed once, on standard output."""
    from flowloom.auth.scim import Provisioning

    with _directory(ctx) as directory:
        token, secret = Provisioning(directory).create_token(name)
    click.echo(f"created SCIM token {token.id} ({token.name}); shown once:", err=True)
    click.echo(secret)


@scim_token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def scim_token_list(ctx: click.Context, as_json: bool) -> None:
    """List SCIM tokens (never their secrets)."""
    from flowloom.auth.scim import Provisioning

    with _directory(ctx) as directory:
        tokens = Provisioning(directory).list_tokens()
    rows = [
        {
            "id": t.id,
            "name": t.name,
            "prefix": t.prefix,
            "created_at": _fmt_time(t.created_at),
            "revoked_at": None if t.revoked_at is None else _fmt_time(t.revoked_at),
        }
        for t in tokens
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "revoked " + str(row["revoked_at"]) if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['name']}  flscim_{row['prefix']}_…  {state}")


@scim_token_group.command("revoke")
@click.argument("token_id")
@click.pass_context
def scim_token_revoke(ctx: click.Context, token_id: str) -> None:
    """Stop a SCIM token at once."""
    from flowloom.auth.scim import Provisioning

    with _directory(ctx) as directory:
        Provisioning(directory).revoke_token(token_id)
    click.echo(f"revoked SCIM token {token_id}")


@admin.group("ldap")
def ldap_group() -> None:
    """Group sync with the LDAP directory of [server.ldap]."""


@ldap_group.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ldap_sync(ctx: click.Context, as_json: bool) -> None:
    """Teams follow LDAP groups; disable accounts gone from LDAP or its required group.

    Disabling ends sessions, revokes API keys and the user's gateway virtual keys at once.
    """
    from flowloom.auth.ldap import LdapDirectory, LdapSettings
    from flowloom.server.settings import load_server_settings

    table = load_server_settings().ldap
    if not table:
        raise InputError(
            "no [server.ldap] table in the configuration",
            hint="add it to ~/.config/flowloom/config.toml (docs/auth.md#ldap)",
        )
    settings = LdapSettings.from_mapping(table)
    with _directory(ctx) as directory, _vkey_revoker(ctx, directory) as revoke:
        report = LdapDirectory(settings, directory, cut_off=[revoke]).sync()
    rows = {
        "disabled": list(report.disabled),
        "joined": [{"user_id": u, "team": t} for u, t in report.joined],
        "left": [{"user_id": u, "team": t} for u, t in report.left],
    }
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"disabled {len(report.disabled)}, joined {len(report.joined)}, left {len(report.left)}"
    )


def _register_recovery() -> None:
    """`admin backup` / `admin restore` live in their own module (cli/backup.py)."""
    from flowloom.cli.backup import backup, restore

    admin.add_command(backup)
    admin.add_command(restore)


_register_recovery()
