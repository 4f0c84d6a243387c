"""The request pipeline's collaborators as it sees them, and the simplest stand-ins.

`RouterPort` and `AccessPort` are the parts of `flowloom.gateway.routing.Router` and
`flowloom.gateway.access.Access` the pipeline calls. `SingleProviderRouter` and
`OpenAccess` satisfy them with no configuration at all: one provider, any model, any
key. They serve a gateway started without a routing file or an access database (a
local developer setup) and the pipeline's own tests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from flowloom.errors import AuthError
from flowloom.gateway.access.records import Admission, Cost, Usage, VirtualKey
from flowloom.gateway.providers.interface import Format, ProviderConfig
from flowloom.gateway.routing.model import ModelInfo, RouteRequest, Target

__all__ = ["AccessPort", "OpenAccess", "RouterPort", "SingleProviderRouter", "native_format"]


class RouterPort(Protocol):
    def plan(self, req: RouteRequest) -> list[Target]: ...

    def outcome(
        self,
        target: Target,
        *,
        ok: bool,
        status: int | None,
        latency_s: float,
        retry_after_s: float | None,
        error_kind: str | None,
    ) -> None: ...

    def should_fall_back(self, status: int | None, error_kind: str | None) -> bool: ...

    def reload_if_changed(self) -> bool: ...

    def providers(self) -> Mapping[str, ProviderConfig]: ...

    def models(self) -> list[ModelInfo]: ...


class AccessPort(Protocol):
    def authenticate(self, secret: str) -> VirtualKey: ...

    def check_model(self, vkey: VirtualKey, model: str) -> None: ...

    def admit(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission: ...

    async def admit_async(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission:
        """`admit` without blocking the event loop (database work in a thread)."""
        ...

    def settle(self, admission: Admission, *, provider: str, model: str, usage: Usage) -> Cost: ...

    def release(self, admission: Admission) -> None: ...

    def provider_key(self, ref: str) -> str | None: ...


def native_format(kind: str, caller: Format) -> Format:
    """The format a provider kind speaks, preferring the caller's where the kind has it."""
    if kind == "anthropic":
        return "anthropic"
    if kind == "gemini":
        return "gemini"
    if kind == "openai" and caller == "responses":
        return "responses"
    return "openai"


class SingleProviderRouter:
    """Every call goes to one provider under the model name the caller asked for."""

    def __init__(self, provider: ProviderConfig) -> None:
        self._provider = provider

    def plan(self, req: RouteRequest) -> list[Target]:
        fmt = native_format(self._provider.kind, req.format)
        return [Target(self._provider.name, req.model, fmt, self._provider.region, 0.0, 0.0)]

    def outcome(
        self,
        target: Target,
        *,
        ok: bool,
        status: int | None,
        latency_s: float,
        retry_after_s: float | None,
        error_kind: str | None,
    ) -> None:
        return None

    def should_fall_back(self, status: int | None, error_kind: str | None) -> bool:
        if status is None:
            return error_kind is not None
        return status == 429 or status >= 500 or error_kind == "context_window"

    def reload_if_changed(self) -> bool:
        return False

    def providers(self) -> Mapping[str, ProviderConfig]:
        return {self._provider.name: self._provider}

    def models(self) -> list[ModelInfo]:
        return []

    @property
    def passthrough(self) -> bool:
        """Every name goes to the one provider, so its own model list is the list."""
        return True


class OpenAccess:
    """No keys, no limits: every caller is admitted (a local, single-user gateway).

    With `required_secret` set, only that exact secret is accepted.
    """

    def __init__(
        self,
        *,
        required_secret: str | None = None,
        provider_keys: Mapping[str, str] | None = None,
    ) -> None:
        self._required = required_secret
        self._provider_keys = dict(provider_keys or {})
        self._key = VirtualKey(
            id="local",
            prefix="local",
            name="local",
            owner_kind="user",
            owner="local",
            project=None,
            models=None,
            rpm=None,
            tpm=None,
            budget_usd=None,
            period="month",
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
        )

    def authenticate(self, secret: str) -> VirtualKey:
        if self._required is not None and secret != self._required:
            raise AuthError("the gateway key is missing or wrong", hint="use a valid virtual key")
        return self._key

    def check_model(self, vkey: VirtualKey, model: str) -> None:
        return None  # open access: every model

    def admit(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission:
        return Admission(
            key=vkey, model=model, est_tokens=est_tokens, at=time.time(), reserved_usd=0.0, slot=0.0
        )

    async def admit_async(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission:
        return self.admit(vkey, model=model, est_tokens=est_tokens)

    def settle(self, admission: Admission, *, provider: str, model: str, usage: Usage) -> Cost:
        return Cost(priced=False)

    def release(self, admission: Admission) -> None:
        return None

    def provider_key(self, ref: str) -> str | None:
        return self._provider_keys.get(ref)
