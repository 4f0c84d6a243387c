"""`flowloom admin scim-token …` and every command of docs/auth.md's "SCIM provisioning"
section, run as an operator runs them: real processes over a real database."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from flowloom.auth.directory import INSTANCE_PROJECT, Directory
from flowloom.auth.scim import Provisioning
from tests.cli.test_admin import PASSWORD, Admin

DOCS = Path(__file__).resolve().parents[2] / "docs" / "auth.md"
TOKEN_RE = re.compile(r"^flscim_[a-z0-9]{8}_[A-Za-z0-9_-]{43}$")


def _documented() -> list[list[str]]:
    """The `flowloom admin …` lines of the SCIM section's code blocks, in order."""
    section = DOCS.read_text("utf-8").split("## SCIM provisioning", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    return [
        shlex.split(line)[2:]
        for block in blocks
        for line in block.splitlines()
        if line.startswith("flowloom admin ")
    ]


def test_every_documented_scim_command_runs(tmp_path: Path) -> None:
    admin = Admin(tmp_path, str(tmp_path / "server.db"))
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
    commands = _documented()
    assert [c[:2] for c in commands] == [
        ["scim-token", "create"],
        ["scim-token", "list"],
        ["scim-token", "revoke"],
        ["team", "grant"],
    ]
    created = admin("scim-token", "create", *commands[0][2:])
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert TOKEN_RE.match(secret) and "shown once" in created.stderr
    listed = json.loads(admin.ok("scim-token", "list", "--json"))
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("okta", None)]
    assert secret not in admin.ok(*commands[1]) and "okta" in admin.ok(*commands[1])

    # The identity provider pushes a group; the documented grant maps it to a role.
    directory = Directory(admin.database)
    try:
        provisioning = Provisioning(directory)
        principal = provisioning.principal_for_token(secret)
        person = provisioning.create_user(
            {"userName": "dev@example.org"}, "http://flowloom.test/scim/v2", by=principal
        )
        provisioning.create_group(
            {"displayName": "Engineering", "members": [{"value": person["id"]}]},
            "http://flowloom.test/scim/v2",
            by=principal,
        )
    finally:
        directory.close()
    admin.ok(*commands[3])
    directory = Directory(admin.database)
    try:
        assert "developer" in directory.grants_of(person["id"])["payments"]
    finally:
        directory.close()

    token_id = listed[0]["id"]
    revoke = [token_id if part.startswith("scim_") else part for part in commands[2]]
    assert admin.ok(*revoke).strip() == f"revoked SCIM token {token_id}"
    assert json.loads(admin.ok("scim-token", "list", "--json"))[0]["revoked_at"]
    kinds = admin.kinds(INSTANCE_PROJECT)
    assert "auth.scim_token_created" in kinds and "auth.scim_token_revoked" in kinds
    events = admin.envelopes(INSTANCE_PROJECT)
    assert secret not in json.dumps(events)


def test_revoking_an_unknown_token_says_so(tmp_path: Path) -> None:
    admin = Admin(tmp_path, str(tmp_path / "server.db"))
    result = admin("scim-token", "revoke", "scim_nope")
    assert result.returncode == 6 and "no SCIM token 'scim_nope'" in result.stderr
    empty = admin("scim-token", "create", "--name", "  ")
    assert empty.returncode == 3 and "token name" in empty.stderr


def test_disabling_on_the_command_line_revokes_gateway_keys(tmp_path: Path) -> None:
    from flowloom.gateway.access import Access
    from flowloom.ledger.keys import KeyStore

    admin = Admin(tmp_path, str(tmp_path / "server.db"))
    admin.ok(
        "create-owner",
        "--email",
        "olive@example.org",
        "--name",
        "Olive Owner",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    admin.ok("create-user", "--email", "lee@example.org", "--name", "Lee Leaver")
    keys = KeyStore(tmp_path / "home")
    with Access(admin.database, master_key_loader=keys.master_key) as access:
        vkey, _ = access.create_key(owner_user="lee@example.org")
    admin.ok("user", "disable", "lee@example.org", "--as", "olive@example.org")
    with Access(admin.database, master_key_loader=keys.master_key) as access:
        assert access.get_key(vkey.id).revoked_at is not None
    revoked = [e for e in admin.envelopes(INSTANCE_PROJECT) if e["kind"] == "auth.vkey_revoked"]
    assert [e["subject"] for e in revoked] == [vkey.id]
    assert revoked[0]["refs"]["reason"] == "user disabled"  # type: ignore[index]
