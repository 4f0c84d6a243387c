"""`flowloom admin`, run as an operator runs it: a real process, a real database, the
ledger receiving every change, secrets printed once and never stored."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from flowloom.auth.directory import INSTANCE_PROJECT, Directory
from flowloom.cli.admin import parse_duration
from flowloom.errors import AuthError, InputError
from flowloom.services import open_store

PASSWORD = "correct horse battery staple"
KEY_RE = re.compile(r"^flk_[a-z0-9]{8}_[A-Za-z0-9_-]{43}$")


class Admin:
    """Runs `python -m flowloom admin …` with an isolated home against one database."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.database = database
        self.cwd = tmp_path / "work"
        self.cwd.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "FLOWLOOM_HOME": str(tmp_path / "home"),
            "FLOWLOOM_DATABASE": database,
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
        }
        self.env.pop("FLOWLOOM_DEBUG", None)

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", "admin", *args],
            input=input,
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.env,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def kinds(self, log: str) -> list[str]:
        store = open_store(self.database)
        try:
            return [e.kind for e in store.entries(log)]
        finally:
            store.close()

    def envelopes(self, log: str) -> list[dict[str, object]]:
        store = open_store(self.database)
        try:
            return [json.loads(e.envelope) for e in store.entries(log)]
        finally:
            store.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def admin(request: pytest.FixtureRequest, tmp_path: Path) -> Admin:
    if request.param == "sqlite":
        return Admin(tmp_path, str(tmp_path / "ledger.db"))
    return Admin(tmp_path, request.getfixturevalue("pg_url"))


def test_parse_duration() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "90", "d", "1.5h", "-1d"):
        with pytest.raises(InputError):
            parse_duration(bad)


def test_bootstrap_flow(admin: Admin) -> None:
    out = admin.ok(
        "create-owner",
        "--email",
        "olive@example.org",
        "--name",
        "Olive",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert "created owner olive@example.org" in out
    again = admin(
        "create-owner",
        "--email",
        "other@example.org",
        "--name",
        "O",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert again.returncode == 3 and "owner already exists" in again.stderr
    assert "Traceback" not in again.stderr
    admin.ok(
        "create-owner",
        "--email",
        "second@example.org",
        "--name",
        "Second",
        "--password-stdin",
        "--force-add",
        input=PASSWORD + "\n",
    )
    admin.ok("create-project", "alpha")
    admin.ok("create-user", "--email", "dev@example.org", "--name", "Dev")
    admin.ok("create-user", "--name", "ci bot", "--kind", "service")
    admin.ok("grant", "--email", "dev@example.org", "--project", "alpha", "--role", "developer")
    users = json.loads(admin.ok("list-users", "--json"))
    by_email = {u["email"]: u for u in users}
    assert by_email["olive@example.org"]["grants"] == {"*": ["owner"]}
    assert by_email["dev@example.org"]["grants"] == {"alpha": ["developer"]}
    assert by_email[None]["kind"] == "service"
    assert "Dev" in admin.ok("list-users")
    admin.ok("revoke", "--email", "dev@example.org", "--project", "alpha", "--role", "developer")
    missing = admin(
        "revoke", "--email", "dev@example.org", "--project", "alpha", "--role", "developer"
    )
    assert missing.returncode == 6

    # The owner's password works (and is what was piped in, newline excluded).
    directory = Directory(admin.database)
    try:
        who = directory.check_password("olive@example.org", PASSWORD, client="test")
        assert who.grants == {"*": {"owner"}}
    finally:
        directory.close()

    # Every change is in the ledger: instance-wide ones in the reserved project's log,
    # project grants in the project's own log, all by the command line (which proves
    # no one: the operating-system user is named, not trusted).
    instance = admin.kinds(INSTANCE_PROJECT)
    assert instance.count("auth.user_created") == 4
    assert instance.count("auth.role_granted") == 2  # the two "*" owner grants
    assert "auth.project_created" in instance
    # The first write to the new log pins its signing key (it attests the grants).
    assert admin.kinds("alpha") == ["key.generated", "auth.role_granted", "auth.role_revoked"]
    envelope = admin.envelopes("alpha")[1]
    assert envelope["project"] == "alpha"
    assert envelope["actor"]["type"] == "service"  # type: ignore[index]
    assert envelope["actor"]["id"] == "flowloom-admin-cli"  # type: ignore[index]
    assert envelope["refs"]["role"] == "developer"  # type: ignore[index]


def test_key_commands(admin: Admin) -> None:
    admin.ok("create-user", "--email", "dev@example.org", "--name", "Dev")
    result = admin(
        "create-key",
        "--email",
        "dev@example.org",
        "--name",
        "laptop",
        "--scope",
        "ledger.read",
        "--scope",
        "ledger.append",
        "--expires-in",
        "90d",
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert KEY_RE.match(secret)  # only the secret on stdout, for piping
    assert "shown once" in result.stderr and secret not in result.stderr
    listed = json.loads(admin.ok("list-keys", "--email", "dev@example.org", "--json"))
    assert len(listed) == 1 and listed[0]["status"] == "active"
    assert listed[0]["scopes"] == ["ledger.append", "ledger.read"]
    assert listed[0]["expires_at"] is not None
    key_id = listed[0]["id"]
    text_listing = admin.ok("list-keys", "--email", "dev@example.org")
    assert key_id in text_listing and secret not in text_listing

    rotated = admin("rotate-key", key_id, "--overlap", "1h")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert KEY_RE.match(new_secret) and new_secret != secret
    directory = Directory(admin.database)
    try:
        assert directory.principal_for_key(secret).scopes == frozenset(
            {"ledger.read", "ledger.append"}
        )
        assert directory.principal_for_key(new_secret).key_id != key_id
        old = directory.get_key(key_id)
        assert old.expires_at is not None
        assert old.expires_at - old.created_at < timedelta(hours=1, minutes=5)
    finally:
        directory.close()
    admin.ok("revoke-key", key_id)
    statuses = {
        k["id"]: k["status"]
        for k in json.loads(admin.ok("list-keys", "--email", "dev@example.org", "--json"))
    }
    assert statuses[key_id] == "revoked"
    assert admin("revoke-key", "key_missing").returncode == 6
    assert admin("rotate-key", key_id).returncode == 3
    bad_scope = admin("create-key", "--email", "dev@example.org", "--scope", "root")
    assert bad_scope.returncode == 3 and "unknown scope" in bad_scope.stderr
    assert admin("create-key", "--email", "nobody@example.org").returncode == 6

    kinds = admin.kinds(INSTANCE_PROJECT)
    assert [k for k in kinds if k.startswith("auth.key_")] == [
        "auth.key_created",
        "auth.key_rotated",
        "auth.key_revoked",
    ]
    # The ledger never holds a key secret.
    for envelope in admin.envelopes(INSTANCE_PROJECT):
        dumped = json.dumps(envelope)
        for s in (secret, new_secret, secret.split("_", 2)[2], new_secret.split("_", 2)[2]):
            assert s not in dumped


def test_errors_are_one_line(admin: Admin) -> None:
    short = admin(
        "create-owner",
        "--email",
        "o@example.org",
        "--name",
        "O",
        "--password-stdin",
        input="short\n",
    )
    assert short.returncode == 3 and "at least 12 characters" in short.stderr
    assert short.stderr.count("\n") == 1 and "Traceback" not in short.stderr
    assert admin("create-project", "bad name").returncode == 3
    assert admin("create-project", INSTANCE_PROJECT).returncode == 3
    admin.ok("create-project", "alpha")
    assert admin("create-project", "alpha").returncode == 3
    admin.ok("create-user", "--email", "dev@example.org", "--name", "Dev")
    bad_role = admin("grant", "--email", "dev@example.org", "--project", "alpha", "--role", "god")
    assert bad_role.returncode == 3 and "unknown role" in bad_role.stderr
    assert admin("create-key", "--email", "dev@example.org", "--expires-in", "soon").returncode == 3


def test_database_option_overrides_settings(tmp_path: Path) -> None:
    admin = Admin(tmp_path, str(tmp_path / "default.db"))
    other = tmp_path / "other.db"
    admin.ok("--database", str(other), "create-project", "alpha")
    assert other.exists()
    directory = Directory(str(other))
    try:
        assert [p.name for p in directory.list_projects()] == ["alpha"]
    finally:
        directory.close()


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = Admin(tmp_path, str(tmp_path / "x.db")).ok("--help")
    for command in (
        "create-owner",
        "create-user",
        "create-project",
        "grant",
        "revoke",
        "create-key",
        "list-keys",
        "rotate-key",
        "revoke-key",
        "list-users",
        "user",
        "team",
    ):
        assert command in out


DOCS = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def _documented_offboarding() -> list[list[str]]:
    """The `flowloom admin …` lines of docs/auth.md's "Offboarding and roles" block."""
    section = DOCS.read_text("utf-8").split("## Offboarding and roles", 1)[1]
    block = section.split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.startswith("flowloom admin ")]
    return [shlex.split(line)[2:] for line in lines]


def _offboarding_world(admin: Admin) -> dict[str, str]:
    admin.ok(
        "create-owner",
        "--email",
        "olive@example.org",
        "--name",
        "Olive Owner",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    admin.ok("create-project", "payments")
    admin.ok("create-user", "--email", "nia@example.org", "--name", "Nia New")
    admin.ok(
        "create-user",
        "--email",
        "lee@example.org",
        "--name",
        "Lee Leaver",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    admin.ok("grant", "--email", "lee@example.org", "--project", "payments", "--role", "developer")
    ids = {u["email"]: u["id"] for u in json.loads(admin.ok("user", "list", "--json"))}
    ids["lee-key"] = admin.ok("create-key", "--email", "lee@example.org").strip()
    return ids


def test_the_documented_offboarding_commands(admin: Admin) -> None:
    commands = _documented_offboarding()
    assert len(commands) == 10, commands
    ids = _offboarding_world(admin)
    olive, lee = ids["olive@example.org"], ids["lee@example.org"]
    out = [admin.ok(*command) for command in commands]
    assert out[3].split() == ["payments", "payments", "developer"]  # team roles
    assert out[4].split() == ["payments", "developer", "(team", "payments)"]  # user grants
    assert f"deleted lee@example.org: {lee} remains" in out[8]
    listing = out[9]
    assert f"{lee}  -  deleted user  [user] (deleted)  no roles" in listing
    assert "lee@example.org" not in listing and "Lee Leaver" not in listing

    directory = Directory(admin.database)
    try:
        gone = directory.get_user(lee)
        assert gone.deleted_at is not None and gone.email is None and not gone.has_password
        with pytest.raises(AuthError):
            directory.principal_for_key(ids["lee-key"])
        assert directory.effective_grants(ids["nia@example.org"]) == []  # the team's role left
        assert directory.team_members("payments")[0].email == "nia@example.org"
    finally:
        directory.close()

    # Every change is in the ledger, by Olive, labelled as made from the command line.
    by_cli = [
        e
        for log in (INSTANCE_PROJECT, "payments")
        for e in admin.envelopes(log)
        if e["refs"].get("auth_via") == "cli"  # type: ignore[union-attr]
    ]
    assert sorted(str(e["kind"]) for e in by_cli) == sorted(
        [
            "auth.team_created",
            "auth.team_member_added",
            "auth.role_granted",
            "auth.role_revoked",
            "auth.user_disabled",
            "auth.key_revoked",  # Lee's key, revoked by the disabling
            "auth.user_enabled",
            "auth.user_deleted",
            "auth.role_revoked",  # Lee's developer role on payments, removed by the deletion
        ]
    )
    for event in by_cli:
        # The owner named with --as is a claim; the command line is the actor.
        assert event["actor"]["id"] == "flowloom-admin-cli"  # type: ignore[index]
        claimed = {"type": "human", "id": olive, "name": "Olive Owner"}
        assert event["refs"]["claimed_by"] == claimed  # type: ignore[index]
    deleted = next(e for e in by_cli if e["kind"] == "auth.user_deleted")
    assert deleted["subject"] == lee and "lee@example.org" not in json.dumps(deleted)


def test_offboarding_refusals(admin: Admin) -> None:
    ids = _offboarding_world(admin)
    as_olive = ("--as", "olive@example.org")

    def refused(code: int, text: str, *args: str) -> None:
        result = admin(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr
        if code != 2:  # usage errors are click's, with the usage line
            assert result.stderr.count("\n") == 1, result.stderr

    refused(8, "your own account", "user", "disable", "olive@example.org", *as_olive)
    refused(
        8, "not an instance owner", "user", "disable", "lee@example.org", "--as", "nia@example.org"
    )
    refused(6, "no user", "user", "disable", "lee@example.org", "--as", "nobody@example.org")
    refused(3, "pass --yes", "user", "delete", "lee@example.org", *as_olive)
    refused(
        6,
        "no team",
        "team",
        "grant",
        "nobody",
        "--project",
        "payments",
        "--role",
        "developer",
        *as_olive,
    )
    refused(2, "--as", "user", "disable", "lee@example.org")  # --as is required
    # A second owner, disabled, cannot act; and Olive is then the last owner left.
    admin.ok(
        "create-owner",
        "--email",
        "otto@example.org",
        "--name",
        "Otto",
        "--password-stdin",
        "--force-add",
        input=PASSWORD + "\n",
    )
    admin.ok("user", "disable", "otto@example.org", *as_olive)
    refused(7, "disabled", "user", "disable", "lee@example.org", "--as", "otto@example.org")
    refused(
        3,
        "without an owner",
        "revoke",
        "--email",
        "olive@example.org",
        "--project",
        "*",
        "--role",
        "owner",
    )
    admin.ok("user", "delete", "lee@example.org", "--yes", *as_olive)
    refused(3, "cannot be enabled", "user", "enable", ids["lee@example.org"], *as_olive)
