"""`flowloom admin`, run as an operator runs it: a real process, a real database, the
ledger receiving every change, secrets printed once and never stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from flowloom.auth.directory import INSTANCE_PROJECT, Directory
from flowloom.cli.admin import parse_duration
from flowloom.errors import InputError
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
    # project grants in the project's own log, all by the operating-system user.
    instance = admin.kinds(INSTANCE_PROJECT)
    assert instance.count("auth.user_created") == 4
    assert instance.count("auth.role_granted") == 2  # the two "*" owner grants
    assert "auth.project_created" in instance
    # The first write to the new log pins its signing key (it attests the grants).
    assert admin.kinds("alpha") == ["key.generated", "auth.role_granted", "auth.role_revoked"]
    envelope = admin.envelopes("alpha")[1]
    assert envelope["project"] == "alpha"
    assert envelope["actor"]["type"] == "human"  # type: ignore[index]
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
    ):
        assert command in out
