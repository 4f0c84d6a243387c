"""The routing vocabulary: what a request asks for, where it may go, and why it cannot.

These are the values the request pipeline and the router exchange; they are frozen so a
compiled configuration can be shared by every request without copying or locking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowloom.errors import FlowLoomError, InputError, NotFoundError, PermissionDeniedError
from flowloom.gateway.providers.interface import Format

__all__ = [
    "ConfigChange",
    "ModelInfo",
    "NoCapableTargetError",
    "ResidencyError",
    "RouteRequest",
    "RoutingError",
    "Target",
    "TargetsUnavailableError",
    "UnknownModelError",
]


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """The few facts about one call that routing needs (peeked from the body, never parsed whole).

    `residency` is the set of regions the caller's project policy allows (None = any); it is
    intersected with the `[projects.<name>] residency` of the routing configuration.
    """

    format: Format
    model: str
    stream: bool
    has_tools: bool
    has_images: bool
    est_input_tokens: int
    max_output_tokens: int | None
    project: str | None
    residency: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream choice: a provider, the provider's own model id and the format to speak.

    Prices are USD per million tokens, for information (accounting uses the access price
    table). `context_window` and `max_output` are the declared capabilities (None = not
    declared); the pipeline needs `context_window` to fall back on a context-window error.
    """

    provider: str
    model: str
    format: Format
    region: str | None
    price_in: float
    price_out: float
    context_window: int | None = field(default=None, compare=False)
    max_output: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One routable model name, as listed by GET /v1/models."""

    id: str
    display_name: str
    owned_by: str
    providers: tuple[str, ...]
    context_window: int | None
    max_output: int | None
    tools: bool
    vision: bool
    alias_of: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a configuration (re)load did, for the `config.change` record.

    `ok` False means the new file was rejected and the previous configuration stays in force;
    `error` then says why, with the file and line.
    """

    path: str
    ok: bool
    digest: str | None
    previous_digest: str | None
    error: str | None
    providers: int
    models: int


class RoutingError(FlowLoomError):
    """No upstream target can serve this call; `status` is the HTTP status to answer with.

    404 unknown model, 400 no capable target, 403 residency cannot be met, 503 every capable
    target is cooling down (`retry_after_s` says for how long).
    """

    status: int = 400
    code: str = "routing_error"

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class UnknownModelError(RoutingError, NotFoundError):
    """The model name is neither an alias in the routing configuration nor provider/model."""

    status = 404
    code = "model_not_found"


class NoCapableTargetError(RoutingError, InputError):
    """Every target of the model lacks a capability the call needs (tools, vision, window)."""

    status = 400
    code = "no_capable_target"


class ResidencyError(RoutingError, PermissionDeniedError):
    """The project's data-residency policy excludes every target of the model."""

    status = 403
    code = "residency_violation"


class TargetsUnavailableError(RoutingError):
    """Every allowed target is cooling down (open circuit breaker or provider retry-after)."""

    status = 503
    code = "targets_unavailable"
