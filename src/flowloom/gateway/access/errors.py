"""Access errors the gateway turns into HTTP answers: rate limited, over budget.

Both answer HTTP 429 (``http_status``): OpenAI and Anthropic SDKs treat 429 as "slow
down / try later", which is what an exhausted budget means for a caller too (402 is not
understood by the SDKs). RateLimitedError carries ``retry_after_s`` for the Retry-After
header; BudgetExceededError carries when the budget period ends (``retry_after_s`` too,
the seconds until the next period), so a client that honours Retry-After does not spin.
Unknown or revoked keys raise flowloom.errors.AuthError (401); a model outside the key's
allow-list raises flowloom.errors.PermissionDeniedError (403).
"""

from __future__ import annotations

from flowloom.errors import EXIT_DENIED, FlowLoomError

__all__ = ["BudgetExceededError", "RateLimitedError"]


class RateLimitedError(FlowLoomError):
    """The key's requests- or tokens-per-minute limit is reached; HTTP 429 + Retry-After."""

    exit_code = EXIT_DENIED
    http_status = 429
    error_type = "rate_limit_error"

    def __init__(
        self,
        retry_after_s: float,
        message: str | None = None,
        *,
        limit: str = "rpm",
    ) -> None:
        self.retry_after_s = max(0.0, float(retry_after_s))
        self.limit = limit
        super().__init__(
            message
            or f"the virtual key's {limit} limit is reached; retry in {self.retry_after_s:.1f} s",
            hint="slow down, or ask an administrator to raise the key's limit",
        )


class BudgetExceededError(FlowLoomError):
    """The key's (or its project's) budget for the current period is spent; HTTP 429."""

    exit_code = EXIT_DENIED
    http_status = 429
    error_type = "budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        scope: str = "key",
        budget_usd: float = 0.0,
        spent_usd: float = 0.0,
        retry_after_s: float | None = None,
    ) -> None:
        self.scope = scope
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.retry_after_s = retry_after_s
        super().__init__(
            message, hint="wait for the next budget period, or ask an administrator to raise it"
        )
