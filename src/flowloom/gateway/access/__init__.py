"""Gateway access: who may call the gateway, for which models, how fast, at what cost.

Virtual keys ("flv_<prefix>_<secret>", stored hashed) per user, team or project, glob
model allow-lists, per-key requests/tokens-per-minute limits, USD budgets per day or
month, usage and cost accounting from a price table, and upstream provider keys
encrypted at rest. See docs/gateway-access.md.
"""

from __future__ import annotations

from flowloom.gateway.access.errors import BudgetExceededError, RateLimitedError
from flowloom.gateway.access.records import (
    Admission,
    Cost,
    OwnerKind,
    Period,
    Price,
    ProviderKeyInfo,
    Usage,
    UsageRow,
    VirtualKey,
)
from flowloom.gateway.access.service import Access, AuditHook

__all__ = [
    "Access",
    "Admission",
    "AuditHook",
    "BudgetExceededError",
    "Cost",
    "OwnerKind",
    "Period",
    "Price",
    "ProviderKeyInfo",
    "RateLimitedError",
    "Usage",
    "UsageRow",
    "VirtualKey",
]
