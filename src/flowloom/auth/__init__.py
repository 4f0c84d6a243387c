"""Identity and access: principals, roles and permissions, API keys, sessions, the directory.

Import the Directory from flowloom.auth.directory (it pulls in SQLAlchemy); this package
itself stays light so the permission table can be used without a database.
"""

from __future__ import annotations

from flowloom.auth.permissions import (
    ALL_PROJECTS,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Authorizer,
)
from flowloom.auth.principals import Principal

__all__ = ["ALL_PROJECTS", "PERMISSIONS", "ROLES", "ROLE_PERMISSIONS", "Authorizer", "Principal"]
