"""The records of gateway access: virtual keys, admissions, usage, prices and costs.

Plain frozen dataclasses shared by the access service, the gateway app and the CLI.
Token counting convention (Anthropic's): ``Usage.input_tokens`` are the *uncached*
input tokens; tokens read from the prompt cache are ``cache_read`` and tokens written
to it ``cache_write``. OpenAI and Gemini report cached tokens inside their prompt count,
so their usage must be split (input = prompt - cached) before it reaches settle().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "Admission",
    "BudgetScope",
    "BudgetStatus",
    "Cost",
    "OwnerKind",
    "Period",
    "Price",
    "ProviderKeyInfo",
    "Usage",
    "UsageRow",
    "VirtualKey",
]

OwnerKind = Literal["user", "team", "project"]
Period = Literal["day", "month"]
BudgetScope = Literal["key", "project"]


@dataclass(frozen=True)
class VirtualKey:
    """A caller's key as the gateway knows it (never the secret: only its prefix).

    ``models`` are glob patterns (``claude-*``); None allows every model. ``rpm``/``tpm``
    None means unlimited; ``budget_usd`` None means no budget for ``period``.
    """

    id: str
    prefix: str
    name: str
    owner_kind: OwnerKind
    owner: str
    project: str | None
    models: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    period: Period
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Usage:
    """Tokens of one exchange; input_tokens excludes cache reads and writes."""

    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read + self.cache_write


@dataclass(frozen=True)
class Price:
    """List prices in USD per 1M tokens for one provider's model.

    ``cache_write`` defaults to the input price (providers without a write surcharge),
    ``cache_read`` to the input price too (no discount known). When a prompt (input +
    cache tokens) is longer than ``above_tokens``, the ``*_above`` prices apply to the
    whole exchange (long-context tiers of Gemini 2.5 Pro and Claude Sonnet 4.x).
    """

    provider: str
    model: str
    input: float
    output: float
    cache_read: float
    cache_write: float
    above_tokens: int | None = None
    input_above: float | None = None
    output_above: float | None = None
    cache_read_above: float | None = None
    cache_write_above: float | None = None


@dataclass(frozen=True)
class Cost:
    """What one exchange cost in USD, split by token kind; priced=False when unknown."""

    input_usd: float = 0.0
    output_usd: float = 0.0
    cache_read_usd: float = 0.0
    cache_write_usd: float = 0.0
    priced: bool = True

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.output_usd + self.cache_read_usd + self.cache_write_usd


@dataclass(frozen=True)
class Admission:
    """A request let through by admit(); hand it to settle() (or release()) exactly once.

    ``reserved_usd`` is the estimated input cost held against the budgets until settled;
    ``slot`` is the rate-limit window slot the estimated tokens were counted in;
    ``shared`` what was taken from quotas shared with other processes (quota.py).
    """

    key: VirtualKey
    model: str
    est_tokens: int
    at: float
    reserved_usd: float
    slot: float
    scopes: tuple[str, ...] = field(default=())
    shared: tuple[tuple[str, int, float], ...] = field(default=())
    """(quota scope, bucket, amount) taken from shared quotas to correct on settlement."""


@dataclass(frozen=True)
class ProviderKeyInfo:
    """A stored upstream provider key, without the key."""

    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UsageRow:
    """One line of a usage report, grouped by the requested dimension."""

    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class BudgetStatus:
    """One budget and what its scope spent in the current period, for reports and pages.

    ``scope`` "project": the budget shared by every key bound to ``project``; "key": one
    virtual key's own budget (``key_id``, ``prefix`` and ``name`` say which). The period
    runs from ``period_start`` (a UTC day, 'YYYY-MM-DD') to ``period_end``, the same
    bounds admission uses. ``spent_usd`` is the settled spend the database holds (plus
    what the reading process has not flushed yet).
    """

    scope: BudgetScope
    project: str | None
    budget_usd: float
    period: Period
    period_start: str
    period_end: datetime
    spent_usd: float
    key_id: str | None = None
    prefix: str | None = None
    name: str | None = None

    @property
    def remaining_usd(self) -> float:
        return max(self.budget_usd - self.spent_usd, 0.0)

    @property
    def exhausted(self) -> bool:
        """True when admission refuses requests until the period ends."""
        return self.spent_usd >= self.budget_usd

    @property
    def used(self) -> float:
        """The share of the budget spent, 0 to 1 (1 for a spent zero budget)."""
        if self.budget_usd <= 0:
            return 1.0 if self.exhausted else 0.0
        return min(self.spent_usd / self.budget_usd, 1.0)
