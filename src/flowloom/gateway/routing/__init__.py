"""Routing: which upstream targets serve a call, in which order, and when to fall back.

The policy lives in a reloadable TOML file (see docs/gateway-routing.md): providers, model
aliases with per-target capabilities, strategies (cost, measured latency, weighted, ordered),
per-project data residency that no fallback may cross, fallback on 429/5xx/529, timeouts and
context-window errors, retry-after and circuit breakers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from flowloom.gateway.routing.model import (
    ConfigChange,
    ModelInfo,
    NoCapableTargetError,
    ResidencyError,
    RouteRequest,
    RoutingError,
    Target,
    TargetsUnavailableError,
    UnknownModelError,
)
from flowloom.gateway.routing.router import Router

__all__ = [
    "DEFAULT_POLICY",
    "ConfigChange",
    "ModelInfo",
    "NoCapableTargetError",
    "ResidencyError",
    "RouteRequest",
    "Router",
    "RoutingError",
    "Target",
    "TargetsUnavailableError",
    "UnknownModelError",
]

DEFAULT_POLICY: Final = Path(__file__).with_name("default.toml")
"""The policy without --config: each provider's own model names pass straight through."""
