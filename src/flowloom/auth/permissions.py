"""Roles and permissions: the role → permission table as data, checked in one place.

A role is granted to a user or a team on one project or on "*" (every project). What a
principal may do on a project is the union of the permissions of its roles there and
on "*", intersected with its API key's scopes when it has any. ``instance.admin`` counts
only from a "*" grant: a project owner is not an instance administrator.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from flowloom.errors import PermissionDeniedError

if TYPE_CHECKING:
    from flowloom.auth.principals import Principal

__all__ = [
    "ALL_PROJECTS",
    "INSTANCE_ONLY_PERMISSIONS",
    "INSTANCE_PROJECT",
    "PERMISSIONS",
    "PERMISSION_DESCRIPTIONS",
    "ROLES",
    "ROLE_DESCRIPTIONS",
    "ROLE_PERMISSIONS",
    "Authorizer",
    "permissions_table_markdown",
    "validate_role",
    "validate_scopes",
]

ALL_PROJECTS: Final = "*"
INSTANCE_PROJECT: Final = "flowloom-instance"
"""The reserved project whose ledger holds the instance's own security events."""
"""The grant target meaning every project, instance-wide."""

PERMISSION_DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "instance.admin": 'create projects, create users, manage teams, grant "*" roles',
        "project.read": "see the project exists, its settings and members",
        "project.admin": "grant/revoke roles on the project, change project settings",
        "ledger.read": "read entries, bodies, checkpoints, proofs, bundles",
        "ledger.append": "append events",
        "ledger.checkpoint": "sign a new checkpoint",
        "ledger.key": "rotate the log's signing key",
        "decision.read": "list/show decisions, signatures",
        "decision.approve": "approve decisions / apply e-signatures",
        "key.self": "create/rotate/revoke one's own API keys",
        "key.admin": "manage anyone's API keys in the project",
        "audit.read": "read the security audit trail (auth events)",
    }
)
"""Every permission name, in documentation order, with what it allows."""

PERMISSIONS: Final[frozenset[str]] = frozenset(PERMISSION_DESCRIPTIONS)
"""Every permission name; API key scopes must be a subset of this."""

INSTANCE_ONLY_PERMISSIONS: Final[frozenset[str]] = frozenset({"instance.admin"})
"""Permissions that only a "*" grant confers."""

ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "owner": PERMISSIONS,
        "admin": PERMISSIONS - {"instance.admin"},
        "approver": frozenset(
            {
                "project.read",
                "ledger.read",
                "ledger.append",
                "decision.read",
                "decision.approve",
                "key.self",
            }
        ),
        "developer": frozenset(
            {
                "project.read",
                "ledger.read",
                "ledger.append",
                "ledger.checkpoint",
                "decision.read",
                "key.self",
            }
        ),
        "auditor": frozenset(
            {"project.read", "ledger.read", "decision.read", "audit.read", "key.self"}
        ),
        "service": frozenset({"project.read", "ledger.read", "ledger.append", "ledger.checkpoint"}),
    }
)
"""The table: role → the permissions it grants (docs/auth.md is checked against it)."""

ROLE_DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "owner": 'everything, including instance administration when granted on "*"',
        "admin": "everything on the project except instance administration",
        "approver": "reads, appends, approves decisions and signs",
        "developer": "reads, appends and checkpoints; cannot approve",
        "auditor": "read-only access including the security audit trail",
        "service": "machine access: read, append, checkpoint",
    }
)

ROLES: Final[frozenset[str]] = frozenset(ROLE_PERMISSIONS)
"""Every role name."""


def validate_role(role: str) -> str:
    """Return `role` if it is a known role; raise InputError naming the valid ones."""
    from flowloom.errors import InputError

    if role not in ROLES:
        raise InputError(
            f"unknown role {role!r}",
            hint=f"use one of: {', '.join(ROLE_PERMISSIONS)}",
        )
    return role


def validate_scopes(scopes: object) -> frozenset[str] | None:
    """Normalise API key scopes: None (no restriction) or a non-empty subset of PERMISSIONS."""
    from flowloom.errors import InputError

    if scopes is None:
        return None
    if isinstance(scopes, str) or not hasattr(scopes, "__iter__"):
        raise InputError("scopes must be a list of permission names")
    names = list(scopes)
    if not names:
        raise InputError(
            "an API key needs at least one scope, or none given for no restriction",
            hint=f"scopes are permission names: {', '.join(PERMISSION_DESCRIPTIONS)}",
        )
    unknown = sorted(str(n) for n in names if not isinstance(n, str) or n not in PERMISSIONS)
    if unknown:
        raise InputError(
            f"unknown scope(s): {', '.join(unknown)}",
            hint=f"scopes are permission names: {', '.join(PERMISSION_DESCRIPTIONS)}",
        )
    return frozenset(str(n) for n in names)


class Authorizer:
    """The one place that decides whether a principal may do something on a project."""

    def __init__(self, table: Mapping[str, frozenset[str]] = ROLE_PERMISSIONS) -> None:
        self._table = table

    def permissions(self, principal: Principal, project: str | None) -> frozenset[str]:
        """What `principal` may do on `project` (None: instance-wide, "*" grants only)."""
        granted: set[str] = set()
        for role in principal.grants.get(ALL_PROJECTS, frozenset()):
            granted |= self._table.get(role, frozenset())
        if project is not None and project != ALL_PROJECTS:
            for role in principal.grants.get(project, frozenset()):
                granted |= self._table.get(role, frozenset()) - INSTANCE_ONLY_PERMISSIONS
        if principal.scopes is not None:
            granted &= principal.scopes
        return frozenset(granted)

    def allowed(self, principal: Principal, permission: str, project: str | None) -> bool:
        """Whether `principal` holds `permission` on `project` (None: instance-wide)."""
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        return permission in self.permissions(principal, project)

    def check(self, principal: Principal, permission: str, project: str | None) -> None:
        """Raise PermissionDeniedError unless `principal` holds `permission` on `project`."""
        if self.allowed(principal, permission, project):
            return
        where = f"project {project!r}" if project not in (None, ALL_PROJECTS) else "this instance"
        hint = "ask an administrator of the project for a role that includes it"
        if principal.scopes is not None and permission not in principal.scopes:
            hint = "this API key's scopes do not include it; use a key with that scope"
        raise PermissionDeniedError(
            f"{principal.name} lacks permission {permission} on {where}", hint=hint
        )

    def projects_with(self, principal: Principal, permission: str) -> frozenset[str] | None:
        """Projects where `principal` holds `permission`; None means every project."""
        if self.allowed(principal, permission, ALL_PROJECTS):
            return None
        return frozenset(
            p
            for p in principal.grants
            if p != ALL_PROJECTS and self.allowed(principal, permission, p)
        )


def permissions_table_markdown(table: Mapping[str, frozenset[str]] = ROLE_PERMISSIONS) -> str:
    """The roles × permissions table as Markdown (docs/auth.md embeds this verbatim)."""
    roles = list(table)
    lines = [
        "| permission | " + " | ".join(roles) + " |",
        "|---|" + "|".join(":-:" for _ in roles) + "|",
    ]
    for permission in PERMISSION_DESCRIPTIONS:
        cells = ["✓" if permission in table[r] else "" for r in roles]
        lines.append(f"| `{permission}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
