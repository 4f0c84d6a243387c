"""The router: plans an ordered cascade of targets per call and learns from the outcomes.

`plan` is on the hot path: it reads the current compiled configuration once, filters a
handful of precompiled targets (residency first, then capabilities, then health) and orders
them by the model's strategy — no I/O, no parsing. `outcome` feeds circuit breakers,
retry-after and latency. `reload_if_changed` swaps a whole new compiled configuration in
one assignment, so a call sees either the old policy or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from flowloom.errors import ConfigError
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.routing.breaker import CircuitBreaker
from flowloom.gateway.routing.config import (
    CompiledConfig,
    CompiledTarget,
    LatencySettings,
    Route,
    compile_config,
    empty_config,
    make_target,
)
from flowloom.gateway.routing.families import family_of
from flowloom.gateway.routing.latency import LatencyTracker
from flowloom.gateway.routing.model import (
    ConfigChange,
    ModelInfo,
    NoCapableTargetError,
    ResidencyError,
    RouteRequest,
    Target,
    TargetsUnavailableError,
    UnknownModelError,
)

__all__ = ["FALLBACK_ERROR_KINDS", "Router"]

_log = logging.getLogger("flowloom.gateway.routing")

FALLBACK_ERROR_KINDS: Final = frozenset(
    {
        "timeout",
        "first_byte_timeout",
        "connect",
        "disconnect",
        "context_window",
        "rate_limited",
        "overloaded",
        "server_error",
        "translation",
    }
)
"""Error kinds (besides the statuses) after which the next target of a cascade is tried.

"translation": the call cannot be carried in that target's format (a hosted tool an
Anthropic model cannot run, say); another target may speak the caller's format."""

_NO_FALLBACK_KINDS: Final = frozenset({"invalid_request", "cancelled", "client_disconnect"})
_TIMEOUT_KINDS: Final = frozenset({"timeout", "first_byte_timeout"})
_MAX_STATES: Final = 4096  # per-target health/latency records kept; bounded against odd names
_MAX_DIRECT: Final = 1024  # "provider/model" routes cached per configuration


class _TargetState:
    """What the router has learned about one (provider, model): health and speed."""

    __slots__ = ("blocked_until", "breaker", "latency")

    def __init__(self, window: int) -> None:
        self.breaker = CircuitBreaker()
        self.latency = LatencyTracker(window)
        self.blocked_until = 0.0


class Router:
    """Routing policy from a TOML file, with breakers, retry-after and measured latency.

    `clock` is a monotonic seconds source and `rng` a `random.Random`; both are injected so
    that tests are deterministic. `env` supplies ${VAR} values for base URLs (default: the
    process environment, read only while loading). `on_change` is told about every load and
    every rejected reload, so the gateway can record a `config.change` event.
    """

    def __init__(
        self,
        config_path: Path | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        env: Mapping[str, str] | None = None,
        on_change: Callable[[ConfigChange], None] | None = None,
    ) -> None:
        self._path = Path(config_path) if config_path is not None else None
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._env = env
        self._on_change = on_change
        self._states: dict[tuple[str, str], _TargetState] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._bad_stamp: tuple[int, int, int] | None = None
        if self._path is None:
            self._config = empty_config()
        else:
            stamp, text = self._read(self._path)
            self._config = compile_config(text, source=str(self._path), env=self._environ())
            self._stamp = stamp
            self._report(self._config, None)
        self._next_check = self._clock() + self._config.router.check_interval_s

    # -- planning -------------------------------------------------------------------------

    def plan(self, req: RouteRequest) -> list[Target]:
        """The ordered cascade of targets for one call (first = try first).

        Never contains a target outside the effective residency (the request's regions
        intersected with the project's configured ones). Raises UnknownModelError (404),
        ResidencyError (403), NoCapableTargetError (400) or TargetsUnavailableError (503).
        """
        cfg = self._config
        route = cfg.routes.get(req.model)
        if route is None:
            route = self._direct(cfg, req.model)
        allowed = self._residency(cfg, req)
        candidates: Sequence[CompiledTarget] = route.targets
        if allowed is not None:
            candidates = [t for t in candidates if t.region is not None and t.region in allowed]
            if not candidates:
                where = f"project '{req.project}'" if req.project else "this request"
                regions = ", ".join(sorted(allowed)) or "none"
                raise ResidencyError(
                    f"no target of model '{req.model}' is in a region allowed for {where} "
                    f"({regions})",
                    hint="add a target in an allowed region to the routing configuration",
                )
        est, wanted = req.est_input_tokens, req.max_output_tokens or 0
        need_window = est + wanted
        # A target whose max_output is below the request's gets it clamped (the pipeline
        # does that and records it), so only the clamped output has to fit its window.
        capable = [
            t
            for t in candidates
            if (t.tools or not req.has_tools)
            and (t.vision or not req.has_images)
            and (
                t.context_window is None
                or t.context_window
                >= est + (wanted if t.max_output is None else min(wanted, t.max_output))
            )
        ]
        if not capable:
            raise NoCapableTargetError(
                f"no target of model '{req.model}' can serve this call: "
                + self._missing(candidates, req, need_window),
                hint="use a model whose targets have the capability, or shorten the request",
            )
        ordered = self._order(cfg, route, capable, req)
        now = self._clock()
        states = self._states
        out: list[Target] = []
        for t in ordered:
            st = states.get(t.key)
            if st is not None and (
                st.blocked_until > now or not st.breaker.allow(now, cfg.breaker)
            ):
                continue
            out.append(t.by_format[req.format])
            if len(out) >= route.max_attempts:
                break
        if not out:
            wait = min(self._wait(cfg, t.key, now) for t in capable)
            raise TargetsUnavailableError(
                f"every target of model '{req.model}' is cooling down after failures or a "
                f"provider's retry-after; retry in {wait:.1f}s",
                hint="retry later",
                retry_after_s=wait,
            )
        return out

    @staticmethod
    def _residency(cfg: CompiledConfig, req: RouteRequest) -> frozenset[str] | None:
        allowed = req.residency
        if req.project is not None:
            policy = cfg.projects.get(req.project)
            if policy is not None:
                allowed = policy if allowed is None else allowed & policy
        return allowed

    @staticmethod
    def _missing(candidates: Sequence[CompiledTarget], req: RouteRequest, window: int) -> str:
        if req.has_tools and not any(t.tools for t in candidates):
            return "it uses tools and no target supports tools"
        if req.has_images and not any(t.vision for t in candidates):
            return "it contains images and no target supports vision"
        windows = [t.context_window for t in candidates if t.context_window is not None]
        if windows and max(windows) < window:
            return (
                f"it needs about {window} tokens of context and the largest window is "
                f"{max(windows)}"
            )
        return "no single target has every capability it needs"

    def _direct(self, cfg: CompiledConfig, name: str) -> Route:
        """A one-target route for a name no `[models]` entry routes.

        "provider/model" goes to that provider (with `[router] direct`); a provider's own
        model name (claude-*, gpt-* / o-series, gemini-*: `families`) goes under that name
        to the first provider of its kind (with `[router] passthrough`).
        """
        cache = cfg.direct_cache
        route = cache.get(name)
        if route is not None:
            return route
        settings = cfg.router
        provider, sep, model = name.partition("/")
        pconf = cfg.providers.get(provider) if sep and model and settings.direct else None
        if pconf is None and settings.passthrough:
            kind = family_of(name)
            if kind is not None:
                pconf = next((p for p in cfg.providers.values() if p.kind == kind), None)
                model = name
        if pconf is None:
            ways = ["a model listed by GET /v1/models"]
            if settings.direct:
                ways.append("provider/model")
            if settings.passthrough:
                ways.append("a provider's own model name (claude-*, gpt-*, gemini-*, ...)")
            raise UnknownModelError(
                f"model '{name}' is not configured for this gateway",
                hint="use " + ", or ".join(ways),
            )
        target = make_target(pconf, model, price=cfg.prices.get((pconf.name, model), (0.0, 0.0)))
        route = Route(name=name, strategy="ordered", targets=(target,), max_attempts=1)
        if len(cache) >= _MAX_DIRECT:
            cache.clear()
        cache[name] = route
        return route

    def _order(
        self,
        cfg: CompiledConfig,
        route: Route,
        capable: list[CompiledTarget],
        req: RouteRequest,
    ) -> list[CompiledTarget]:
        if len(capable) < 2:
            return capable
        strategy = route.strategy
        if strategy == "ordered":
            return capable
        if strategy == "cost":
            tin = req.est_input_tokens
            tout = (
                req.max_output_tokens
                if req.max_output_tokens is not None
                else cfg.router.assumed_output_tokens
            )
            return sorted(capable, key=lambda t: t.price_in * tin + t.price_out * tout)
        if strategy == "latency":
            return self._by_latency(cfg.latency, capable)
        return self._weighted(capable)

    def _by_latency(
        self, s: LatencySettings, capable: list[CompiledTarget]
    ) -> list[CompiledTarget]:
        states = self._states

        def key(t: CompiledTarget) -> tuple[int, float]:
            st = states.get(t.key)
            score = st.latency.score(s) if st is not None else None
            # Unmeasured targets first, so that every target gets measured once.
            return (0, 0.0) if score is None else (1, score)

        ordered = sorted(capable, key=key)
        if s.explore > 0 and self._rng.random() < s.explore:
            # Now and then try a slower target first, so its measurement stays current.
            pick = ordered.pop(1 + int(self._rng.random() * (len(ordered) - 1)))
            ordered.insert(0, pick)
        return ordered

    def _weighted(self, capable: list[CompiledTarget]) -> list[CompiledTarget]:
        """A weighted random order without replacement (the first pick is weight-proportional)."""
        rest = list(capable)
        out: list[CompiledTarget] = []
        rng = self._rng
        while len(rest) > 1:
            total = sum(t.weight for t in rest)
            r = rng.random() * total
            acc = 0.0
            chosen = len(rest) - 1
            for i, t in enumerate(rest):
                acc += t.weight
                if r < acc:
                    chosen = i
                    break
            out.append(rest.pop(chosen))
        out.extend(rest)
        return out

    def _wait(self, cfg: CompiledConfig, key: tuple[str, str], now: float) -> float:
        st = self._states.get(key)
        if st is None:
            return 0.0
        return max(st.blocked_until - now, st.breaker.retry_in(now, cfg.breaker), 0.0)

    # -- learning -------------------------------------------------------------------------

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
        """Record what happened on one attempt: breakers, retry-after and latency learn from it.

        Health failures are transport errors, timeouts, 408 and 5xx (529 included). A 429 or
        any other 4xx says nothing about the target's health; a retry-after (capped by
        `max_retry_after_s`) keeps the target out of plans until it has passed.
        """
        cfg = self._config
        now = self._clock()
        st = self._state((target.provider, target.model), cfg.latency.window)
        if retry_after_s is not None and retry_after_s > 0:
            until = now + min(retry_after_s, cfg.router.max_retry_after_s)
            st.blocked_until = max(st.blocked_until, until)
        if ok:
            st.latency.add(latency_s, cfg.latency)
            st.breaker.record(now, True, cfg.breaker)
            return
        if error_kind in _TIMEOUT_KINDS:
            st.latency.add(latency_s, cfg.latency)
        if _is_health_failure(status, error_kind):
            st.breaker.record(now, False, cfg.breaker)
        else:
            st.breaker.release()

    def should_fall_back(self, status: int | None, error_kind: str | None) -> bool:
        """Whether the next target of the cascade should be tried after this failure.

        Yes on 408, 429, 5xx (529 included), timeouts, transport errors, context-window
        errors and translation errors (another target may not need the translation); no on
        other 4xx (the same request would fail anywhere) and on cancellations.
        """
        if error_kind in FALLBACK_ERROR_KINDS:
            return True
        if error_kind in _NO_FALLBACK_KINDS:
            return False
        if status is None:
            return True
        return status in (408, 429) or status >= 500

    def fallbacks(
        self, cascade: Sequence[Target], failed: Target, *, error_kind: str | None
    ) -> list[Target]:
        """The targets after `failed` in `cascade` that are still worth trying.

        Drops targets that have since asked to be left alone (retry-after) or whose circuit
        opened; after a context-window error keeps only targets with a larger declared window
        (an undeclared window counts as 0). Only ever a subset of the planned cascade, so
        residency holds here too.
        """
        try:
            rest = cascade[cascade.index(failed) + 1 :]
        except ValueError:
            rest = list(cascade)
        now = self._clock()
        cfg = self._config
        out: list[Target] = []
        floor = (failed.context_window or 0) if error_kind == "context_window" else None
        for t in rest:
            if t == failed:
                continue
            if floor is not None and (t.context_window or 0) <= floor:
                continue
            st = self._states.get((t.provider, t.model))
            if st is not None and (
                st.blocked_until > now or st.breaker.current(now, cfg.breaker) == "open"
            ):
                continue
            out.append(t)
        return out

    def _state(self, key: tuple[str, str], window: int) -> _TargetState:
        st = self._states.get(key)
        if st is None:
            if len(self._states) >= _MAX_STATES:
                self._states.pop(next(iter(self._states)))
            st = self._states[key] = _TargetState(window)
        return st

    def health(self, target: Target) -> str:
        """The breaker state of a target ("closed", "open", "half_open"), for status pages."""
        st = self._states.get((target.provider, target.model))
        if st is None:
            return "closed"
        return st.breaker.current(self._clock(), self._config.breaker)

    # -- configuration --------------------------------------------------------------------

    def providers(self) -> Mapping[str, ProviderConfig]:
        """The configured providers by name (read-only)."""
        return self._config.providers

    def models(self) -> list[ModelInfo]:
        """Every routable model name and alias, for GET /v1/models."""
        return list(self._config.models)

    @property
    def passthrough(self) -> bool:
        """Whether provider model names no entry routes go straight to their provider."""
        return self._config.router.passthrough

    @property
    def digest(self) -> str | None:
        """SHA-256 of the configuration text in force (None without a file)."""
        return self._config.digest

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True when a new configuration took effect.

        Cheap enough to call per request: it looks at the file at most once per
        `check_interval_s` (1 s by default) and only reads it when its mtime, size or inode
        changed. A broken file keeps the configuration in force, is logged and reported to
        `on_change` once (until the file changes again).
        """
        path = self._path
        if path is None:
            return False
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self._config.router.check_interval_s
        try:
            st = os.stat(path)
        except OSError as exc:
            self._reject(
                (-1, -1, -1),
                f"{path}: cannot read the routing configuration: "
                f"{exc.strerror or exc}; the previous configuration stays in force",
            )
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp or stamp == self._bad_stamp:
            return False
        try:
            stamp, text = self._read(path)
            new = compile_config(text, source=str(path), env=self._environ())
        except ConfigError as exc:
            self._reject(stamp, exc.diagnostics())
            return False
        old = self._config
        self._stamp = stamp
        recovered = self._bad_stamp is not None
        self._bad_stamp = None
        if new.digest == old.digest:
            if recovered:  # the file is back to the policy in force: say the alarm is over
                self._report(old, old.digest)
            return False
        self._swap(new)
        self._report(new, old.digest)
        _log.info("routing configuration reloaded from %s (%s)", path, (new.digest or "")[:12])
        return True

    def _swap(self, new: CompiledConfig) -> None:
        providers = new.providers
        for key in [k for k in self._states if k[0] not in providers]:
            self._states.pop(key, None)
        self._config = new  # one assignment: a plan sees the old or the new, never a mix

    def _reject(self, stamp: tuple[int, int, int], error: str) -> None:
        if stamp == self._bad_stamp:
            return
        self._bad_stamp = stamp
        _log.error("routing configuration rejected: %s", error)
        old = self._config
        self._notify(
            ConfigChange(
                path=str(self._path),
                ok=False,
                digest=None,
                previous_digest=old.digest,
                error=error,
                providers=len(old.providers),
                models=len(old.models),
            )
        )

    def _report(self, cfg: CompiledConfig, previous: str | None) -> None:
        self._notify(
            ConfigChange(
                path=str(self._path),
                ok=True,
                digest=cfg.digest,
                previous_digest=previous,
                error=None,
                providers=len(cfg.providers),
                models=len(cfg.models),
            )
        )

    def _notify(self, change: ConfigChange) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(change)
        except Exception:  # a failing recorder must not take routing down
            _log.exception("config change callback failed")

    def _environ(self) -> Mapping[str, str]:
        return self._env if self._env is not None else os.environ

    @staticmethod
    def _read(path: Path) -> tuple[tuple[int, int, int], str]:
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the routing configuration: {exc.strerror or exc}",
                hint="check the path given with --config",
            ) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: the routing configuration is not UTF-8 text") from exc
        return (st.st_mtime_ns, st.st_size, st.st_ino), text


def _is_health_failure(status: int | None, error_kind: str | None) -> bool:
    """Whether a failed attempt says the target is unhealthy (counts towards its breaker)."""
    if error_kind == "context_window" or error_kind in _NO_FALLBACK_KINDS:
        return False
    if status is None:
        return True
    return status == 408 or status >= 500
