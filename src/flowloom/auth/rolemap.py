"""Identity-provider groups → FlowLoom roles, one mapping shared by OIDC and SAML.

Both sign-in methods read the same shape from their config table (`role_map` and
`default_roles`) and grant the same way, so an administrator learns it once and a group
means the same thing whichever protocol carried it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from flowloom.auth.permissions import ALL_PROJECTS, ROLES
from flowloom.errors import ConfigError

__all__ = ["RoleGrant", "RoleMap", "groups_from", "role_grants"]

_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RoleGrant(NamedTuple):
    """One role on one project ("*" for every project) that a provider group confers."""

    project: str
    role: str


@dataclass(frozen=True)
class RoleMap:
    """Which grants each provider group confers, plus those every signed-in user gets."""

    groups: Mapping[str, tuple[RoleGrant, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    default_roles: tuple[RoleGrant, ...] = ()

    @classmethod
    def from_mapping(cls, table: str, data: Mapping[str, Any]) -> RoleMap:
        """Read `role_map` and `default_roles` from the `[server.<table>]` settings."""
        raw = data.get("role_map", {})
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f'[server.{table}] role_map must be a table of group = ["project:role", ...]'
            )
        groups = {
            str(group): role_grants(table, f"role_map.{group}", grants)
            for group, grants in raw.items()
        }
        defaults = role_grants(table, "default_roles", data.get("default_roles", []))
        return cls(MappingProxyType(groups), defaults)

    def roles_for(self, groups: Iterable[str]) -> frozenset[RoleGrant]:
        """The grants a member of `groups` receives: default_roles plus each group's roles."""
        grants = set(self.default_roles)
        for group in groups:
            grants.update(self.groups.get(group, ()))
        return frozenset(grants)


def role_grants(table: str, where: str, value: object) -> tuple[RoleGrant, ...]:
    """Parse ["project:role", {project = "p", role = "r"}, ...] into checked RoleGrants."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(
            f'[server.{table}] {where} must be a list such as ["alpha:developer", "*:auditor"]'
        )
    grants: list[RoleGrant] = []
    for item in value:
        if isinstance(item, str) and ":" in item:
            project, _, role = item.rpartition(":")
        elif isinstance(item, Mapping):
            project, role = str(item.get("project", "")), str(item.get("role", ""))
        else:
            raise ConfigError(
                f'[server.{table}] {where}: {item!r} is not "project:role"',
                hint='use "*" as the project for an instance-wide role',
            )
        if project != ALL_PROJECTS and not _PROJECT_RE.match(project):
            raise ConfigError(f'[server.{table}] {where}: {project!r} is not a project name or "*"')
        if role not in ROLES:
            raise ConfigError(
                f"[server.{table}] {where}: unknown role {role!r}",
                hint=f"roles are: {', '.join(sorted(ROLES))}",
            )
        grants.append(RoleGrant(project, role))
    return tuple(dict.fromkeys(grants))


def groups_from(value: object) -> tuple[str, ...]:
    """Group names from a claim or attribute: a list of strings, or one string."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(dict.fromkeys(str(v) for v in value if isinstance(v, str)))
    return ()
