"""The role → permission table, the Authorizer, and docs/auth.md agreeing with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.auth import Authorizer, Principal
from flowloom.auth.permissions import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    permissions_table_markdown,
    validate_role,
    validate_scopes,
)
from flowloom.errors import InputError, PermissionDeniedError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "auth.md"

# The contract's table, written out independently of the module's own data.
EXPECTED = {
    "owner": set(PERMISSIONS),
    "admin": set(PERMISSIONS) - {"instance.admin"},
    "approver": {
        "project.read",
        "ledger.read",
        "ledger.append",
        "decision.read",
        "decision.approve",
        "key.self",
    },
    "developer": {
        "project.read",
        "ledger.read",
        "ledger.append",
        "ledger.checkpoint",
        "decision.read",
        "key.self",
    },
    "auditor": {"project.read", "ledger.read", "decision.read", "audit.read", "key.self"},
    "service": {"project.read", "ledger.read", "ledger.append", "ledger.checkpoint"},
}


def principal(grants: dict[str, frozenset[str]], scopes: frozenset[str] | None = None) -> Principal:
    return Principal(
        user_id="usr_1",
        email="a@example.org",
        name="Ann",
        kind="user",
        grants=grants,
        scopes=scopes,
        via="key" if scopes is not None else "session",
    )


def test_table_is_the_contract() -> None:
    assert {
        "instance.admin",
        "project.read",
        "project.admin",
        "ledger.read",
        "ledger.append",
        "ledger.checkpoint",
        "ledger.key",
        "decision.read",
        "decision.approve",
        "key.self",
        "key.admin",
        "audit.read",
    } == PERMISSIONS
    assert set(EXPECTED) == ROLES
    assert {r: set(p) for r, p in ROLE_PERMISSIONS.items()} == EXPECTED


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_on_a_project(role: str) -> None:
    auth = Authorizer()
    who = principal({"alpha": frozenset({role})})
    for permission in PERMISSIONS:
        expected = permission in EXPECTED[role] and permission != "instance.admin"
        assert auth.allowed(who, permission, "alpha") is expected, permission
        assert not auth.allowed(who, permission, "beta")  # strictly per project
        assert not auth.allowed(who, permission, None)


def test_instance_admin_only_from_star_grant() -> None:
    auth = Authorizer()
    project_owner = principal({"alpha": frozenset({"owner"})})
    assert not auth.allowed(project_owner, "instance.admin", None)
    assert not auth.allowed(project_owner, "instance.admin", "alpha")
    instance_owner = principal({"*": frozenset({"owner"})})
    assert auth.allowed(instance_owner, "instance.admin", None)
    assert auth.allowed(instance_owner, "ledger.append", "any-project")
    star_admin = principal({"*": frozenset({"admin"})})
    assert not auth.allowed(star_admin, "instance.admin", None)
    assert auth.allowed(star_admin, "project.admin", "alpha")


def test_scopes_intersect_roles() -> None:
    auth = Authorizer()
    key = principal({"alpha": frozenset({"developer"})}, scopes=frozenset({"ledger.read"}))
    assert auth.allowed(key, "ledger.read", "alpha")
    assert not auth.allowed(key, "ledger.append", "alpha")
    # A scope cannot add what the role lacks.
    wide = principal({"alpha": frozenset({"auditor"})}, scopes=frozenset({"ledger.append"}))
    assert not auth.allowed(wide, "ledger.append", "alpha")
    with pytest.raises(PermissionDeniedError, match=r"ledger\.append") as caught:
        auth.check(key, "ledger.append", "alpha")
    assert caught.value.hint is not None and "scope" in caught.value.hint


def test_check_raises_permission_denied_with_exit_code() -> None:
    auth = Authorizer()
    who = principal({"alpha": frozenset({"auditor"})})
    auth.check(who, "audit.read", "alpha")
    with pytest.raises(PermissionDeniedError) as caught:
        auth.check(who, "decision.approve", "alpha")
    assert caught.value.exit_code == 8
    assert "alpha" in caught.value.message


def test_unknown_permission_is_a_bug() -> None:
    with pytest.raises(ValueError):
        Authorizer().allowed(principal({}), "ledger.write", "alpha")


def test_projects_with() -> None:
    auth = Authorizer()
    who = principal({"alpha": frozenset({"developer"}), "beta": frozenset({"service"})})
    assert auth.projects_with(who, "ledger.append") == frozenset({"alpha", "beta"})
    assert auth.projects_with(who, "decision.read") == frozenset({"alpha"})
    assert auth.projects_with(principal({"*": frozenset({"auditor"})}), "ledger.read") is None


def test_validators() -> None:
    assert validate_role("approver") == "approver"
    with pytest.raises(InputError, match="unknown role"):
        validate_role("superuser")
    assert validate_scopes(None) is None
    assert validate_scopes(["ledger.read", "ledger.read"]) == frozenset({"ledger.read"})
    with pytest.raises(InputError, match="unknown scope"):
        validate_scopes(["ledger.read", "ledger.write"])
    with pytest.raises(InputError):
        validate_scopes([])
    with pytest.raises(InputError):
        validate_scopes("ledger.read")


def test_actor_of_principal() -> None:
    assert principal({}).actor() == {"type": "human", "id": "usr_1", "name": "Ann"}
    service = Principal("usr_2", None, "ci", "service", {}, None, "key", key_id="key_1")
    assert service.actor()["type"] == "service"


def test_docs_table_matches_the_data() -> None:
    text = DOCS.read_text("utf-8")
    assert permissions_table_markdown() in text, (
        "docs/auth.md's roles × permissions table is out of date: paste"
        " flowloom.auth.permissions.permissions_table_markdown() into it"
    )
