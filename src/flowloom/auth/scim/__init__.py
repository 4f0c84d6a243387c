"""SCIM 2.0 provisioning (RFC 7643/7644): filters, PATCH, schemas, and the service."""

from __future__ import annotations

from flowloom.auth.scim.filter import ScimFilterError, parse_filter
from flowloom.auth.scim.patch import ScimPatchError, apply_patch
from flowloom.auth.scim.service import (
    TOKEN_PREFIX,
    CutOffHook,
    PreconditionFailedError,
    Provisioning,
    ScimConflictError,
    ScimToken,
)

__all__ = [
    "TOKEN_PREFIX",
    "CutOffHook",
    "PreconditionFailedError",
    "Provisioning",
    "ScimConflictError",
    "ScimFilterError",
    "ScimPatchError",
    "ScimToken",
    "apply_patch",
    "parse_filter",
]
