"""The routing configuration: a TOML file compiled once into an immutable, lookup-ready form.

Everything the hot path needs (targets per alias and per request format, capabilities,
prices, residency sets) is computed here, so `Router.plan` only filters and orders a few
precomputed objects. Errors name the file and the line of the offending table, and say
what to change.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

from flowloom.errors import ConfigError
from flowloom.gateway.providers.interface import Format, ProviderConfig, ProviderKind
from flowloom.gateway.routing.model import ModelInfo, Target

__all__ = [
    "FORMATS",
    "STRATEGIES",
    "BreakerSettings",
    "CompiledConfig",
    "CompiledTarget",
    "LatencySettings",
    "Route",
    "RouterSettings",
    "Strategy",
    "compile_config",
    "empty_config",
    "target_format",
]

Strategy = Literal["cost", "latency", "weighted", "ordered"]
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)
FORMATS: Final[tuple[Format, ...]] = cast("tuple[Format, ...]", get_args(Format))
_KINDS: Final[tuple[str, ...]] = get_args(ProviderKind)
_NATIVE_FORMAT: Final[Mapping[str, Format]] = MappingProxyType(
    {
        "anthropic": "anthropic",
        "openai": "openai",
        "azure": "openai",
        "gemini": "gemini",
        "openai_compatible": "openai",
    }
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_KEYS: Final = frozenset(
    {"router", "breaker", "latency", "providers", "prices", "models", "projects"}
)


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """`[router]`: defaults for every model and the reload cadence."""

    default_strategy: Strategy = "ordered"
    max_attempts: int = 3
    direct: bool = True
    passthrough: bool = True
    max_retry_after_s: float = 300.0
    assumed_output_tokens: int = 1000
    check_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """`[breaker]`: when a target's circuit opens, how long it rests, how it is probed."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window_s: float = 60.0
    min_requests: int = 10
    cooldown_s: float = 30.0
    half_open_probes: int = 1
    probe_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class LatencySettings:
    """`[latency]`: how measured latency is summarised and how often a slower target is tried."""

    metric: Literal["ewma", "p50"] = "ewma"
    alpha: float = 0.3
    window: int = 32
    explore: float = 0.05


@dataclass(frozen=True, slots=True)
class CompiledTarget:
    """One target of a route with its capabilities and the Target to hand out per format."""

    key: tuple[str, str]
    region: str | None
    tools: bool
    vision: bool
    context_window: int | None
    max_output: int | None
    weight: float
    price_in: float
    price_out: float
    by_format: Mapping[Format, Target]


@dataclass(frozen=True, slots=True)
class Route:
    """A routable model name: its targets in configuration order and how to order them."""

    name: str
    strategy: Strategy
    targets: tuple[CompiledTarget, ...]
    max_attempts: int


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    """An immutable, validated configuration; the router swaps whole instances on reload."""

    source: str
    digest: str | None
    router: RouterSettings
    breaker: BreakerSettings
    latency: LatencySettings
    providers: Mapping[str, ProviderConfig]
    routes: Mapping[str, Route]
    projects: Mapping[str, frozenset[str]]
    prices: Mapping[tuple[str, str], tuple[float, float]]
    models: tuple[ModelInfo, ...]
    # Routes built on demand for "provider/model" names; bounded, and replaced with the config.
    direct_cache: dict[str, Route] = field(default_factory=dict, compare=False)


def empty_config(source: str = "<none>") -> CompiledConfig:
    """The configuration in force when no file is given: no providers, no models."""
    return CompiledConfig(
        source=source,
        digest=None,
        router=RouterSettings(),
        breaker=BreakerSettings(),
        latency=LatencySettings(),
        providers=MappingProxyType({}),
        routes=MappingProxyType({}),
        projects=MappingProxyType({}),
        prices=MappingProxyType({}),
        models=(),
    )


def target_format(kind: str, requested: Format, override: Format | None) -> Format:
    """The format to speak to a target: an override, else the provider's native format.

    OpenAI itself speaks both Chat Completions and Responses, so a Responses call to an
    "openai" provider stays in Responses instead of being translated.
    """
    if override is not None:
        return override
    if kind == "openai" and requested == "responses":
        return "responses"
    return _NATIVE_FORMAT[kind]


def make_target(
    provider: ProviderConfig,
    model: str,
    *,
    tools: bool = True,
    vision: bool = True,
    context_window: int | None = None,
    max_output: int | None = None,
    weight: float = 1.0,
    price: tuple[float, float] = (0.0, 0.0),
    format_override: Format | None = None,
) -> CompiledTarget:
    """Build a compiled target with one precomputed Target per request format."""
    by_format: dict[Format, Target] = {}
    for fmt in FORMATS:
        by_format[fmt] = Target(
            provider=provider.name,
            model=model,
            format=target_format(provider.kind, fmt, format_override),
            region=provider.region,
            price_in=price[0],
            price_out=price[1],
            context_window=context_window,
            max_output=max_output,
        )
    return CompiledTarget(
        key=(provider.name, model),
        region=provider.region,
        tools=tools,
        vision=vision,
        context_window=context_window,
        max_output=max_output,
        weight=weight,
        price_in=price[0],
        price_out=price[1],
        by_format=MappingProxyType(by_format),
    )


class _Locator:
    """Finds the line of a table or key in the raw text, so errors can say file:line."""

    def __init__(self, text: str, source: str) -> None:
        self._lines = text.splitlines()
        self._source = source

    @staticmethod
    def _part(name: str) -> str:
        esc = re.escape(name)
        return rf"(?:{esc}|\"{esc}\"|'{esc}')"

    def line_of(self, *path: str, key: str | None = None) -> int | None:
        header = r"\s*\.\s*".join(self._part(p) for p in path)
        head_re = re.compile(rf"^\s*\[\s*{header}\s*\]")
        start = None
        for i, line in enumerate(self._lines):
            if head_re.match(line):
                start = i
                break
        if start is None:
            # Maybe written inline or dotted (`models."x" = {...}`); search for the last name.
            inline = re.compile(rf"^\s*(?:.*\.\s*)?{self._part(path[-1])}\s*=")
            for i, line in enumerate(self._lines):
                if inline.match(line):
                    return i + 1
            return None
        if key is not None:
            key_re = re.compile(rf"^\s*{self._part(key)}\s*=")
            for i in range(start + 1, len(self._lines)):
                line = self._lines[i]
                if re.match(r"^\s*\[", line):
                    break
                if key_re.match(line):
                    return i + 1
        return start + 1

    def error(self, path: tuple[str, ...], message: str, *, key: str | None = None) -> ConfigError:
        line = self.line_of(*path, key=key) if path else None
        where = f"{self._source}:{line}" if line is not None else self._source
        table = ".".join(f'"{p}"' if not re.fullmatch(r"[A-Za-z0-9_-]+", p) else p for p in path)
        prefix = f"{where}: [{table}] " if table else f"{where}: "
        return ConfigError(prefix + message)


class _Compiler:
    """One compilation of one text; holds the locator and environment while it runs."""

    def __init__(self, text: str, source: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.source = source
        self.env = env
        self.loc = _Locator(text, source)

    # -- small typed readers ------------------------------------------------------------

    def _table(self, data: Mapping[str, Any], key: str, path: tuple[str, ...]) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.loc.error(path, f"'{key}' must be a table")
        return value

    def _check_keys(
        self, table: Mapping[str, Any], allowed: frozenset[str], path: tuple[str, ...]
    ) -> None:
        for key in table:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.loc.error(path, f"unknown key '{key}'; use one of: {known}", key=key)

    def _num(
        self,
        table: Mapping[str, Any],
        key: str,
        default: float,
        path: tuple[str, ...],
        *,
        minimum: float = 0.0,
        strict: bool = False,
        maximum: float = math.inf,
    ) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.loc.error(path, f"'{key}' must be a number", key=key)
        bad = value <= minimum if strict else value < minimum
        if bad or value > maximum:
            rel = ">" if strict else ">="
            raise self.loc.error(
                path,
                f"'{key}' = {value} is out of range; it must be {rel} {minimum:g}"
                + (f" and <= {maximum:g}" if maximum != math.inf else ""),
                key=key,
            )
        return float(value)

    def _int(
        self,
        table: Mapping[str, Any],
        key: str,
        default: int | None,
        path: tuple[str, ...],
        *,
        minimum: int = 1,
    ) -> int | None:
        value = table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.loc.error(path, f"'{key}' must be a whole number", key=key)
        if value < minimum:
            raise self.loc.error(path, f"'{key}' = {value} must be >= {minimum}", key=key)
        return value

    def _bool(
        self, table: Mapping[str, Any], key: str, default: bool, path: tuple[str, ...]
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.loc.error(path, f"'{key}' must be true or false", key=key)
        return value

    def _str(
        self, table: Mapping[str, Any], key: str, path: tuple[str, ...], *, required: bool = False
    ) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise self.loc.error(path, f"'{key}' is missing; add {key} = \"...\"")
            return None
        if not isinstance(value, str) or not value:
            raise self.loc.error(path, f"'{key}' must be a non-empty string", key=key)
        return value

    def _substitute(self, value: str, path: tuple[str, ...], key: str) -> str:
        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise self.loc.error(
                path,
                f"'{key}' uses ${{{name}}} but the environment variable {name} is not set; "
                f"set it or write ${{{name}:-default}}",
                key=key,
            )

        return _VAR.sub(repl, value)

    # -- sections -----------------------------------------------------------------------

    def router(self, data: Mapping[str, Any]) -> RouterSettings:
        path = ("router",)
        t = self._table(data, "router", ())
        self._check_keys(
            t,
            frozenset(
                {
                    "default_strategy",
                    "max_attempts",
                    "direct",
                    "passthrough",
                    "max_retry_after_s",
                    "assumed_output_tokens",
                    "check_interval_s",
                }
            ),
            path,
        )
        strategy = self._strategy(t, "default_strategy", "ordered", path)
        d = RouterSettings()
        return RouterSettings(
            default_strategy=strategy,
            max_attempts=self._int(t, "max_attempts", d.max_attempts, path) or d.max_attempts,
            direct=self._bool(t, "direct", d.direct, path),
            passthrough=self._bool(t, "passthrough", d.passthrough, path),
            max_retry_after_s=self._num(t, "max_retry_after_s", d.max_retry_after_s, path),
            assumed_output_tokens=self._int(
                t, "assumed_output_tokens", d.assumed_output_tokens, path, minimum=0
            )
            or 0,
            check_interval_s=self._num(t, "check_interval_s", d.check_interval_s, path),
        )

    def _strategy(
        self, t: Mapping[str, Any], key: str, default: str, path: tuple[str, ...]
    ) -> Strategy:
        value = t.get(key, default)
        if value not in STRATEGIES:
            raise self.loc.error(
                path,
                f"'{key}' = {value!r} is not a strategy; use one of: " + ", ".join(STRATEGIES),
                key=key,
            )
        return cast("Strategy", value)

    def breaker(self, data: Mapping[str, Any]) -> BreakerSettings:
        path = ("breaker",)
        t = self._table(data, "breaker", ())
        d = BreakerSettings()
        self._check_keys(t, frozenset(BreakerSettings.__dataclass_fields__), path)
        return BreakerSettings(
            consecutive_failures=self._int(t, "consecutive_failures", d.consecutive_failures, path)
            or 1,
            failure_rate=self._num(t, "failure_rate", d.failure_rate, path, strict=True, maximum=1),
            window_s=self._num(t, "window_s", d.window_s, path, strict=True),
            min_requests=self._int(t, "min_requests", d.min_requests, path) or 1,
            cooldown_s=self._num(t, "cooldown_s", d.cooldown_s, path),
            half_open_probes=self._int(t, "half_open_probes", d.half_open_probes, path) or 1,
            probe_timeout_s=self._num(t, "probe_timeout_s", d.probe_timeout_s, path, strict=True),
        )

    def latency(self, data: Mapping[str, Any]) -> LatencySettings:
        path = ("latency",)
        t = self._table(data, "latency", ())
        d = LatencySettings()
        self._check_keys(t, frozenset(LatencySettings.__dataclass_fields__), path)
        metric = t.get("metric", d.metric)
        if metric not in ("ewma", "p50"):
            raise self.loc.error(
                path, f'\'metric\' = {metric!r}; use "ewma" or "p50"', key="metric"
            )
        return LatencySettings(
            metric=cast("Literal['ewma', 'p50']", metric),
            alpha=self._num(t, "alpha", d.alpha, path, strict=True, maximum=1),
            window=self._int(t, "window", d.window, path) or 1,
            explore=self._num(t, "explore", d.explore, path, maximum=1),
        )

    def providers(self, data: Mapping[str, Any]) -> dict[str, ProviderConfig]:
        table = self._table(data, "providers", ())
        out: dict[str, ProviderConfig] = {}
        allowed = frozenset(
            {
                "kind",
                "base_url",
                "api_key_ref",
                "region",
                "api_version",
                "deployments",
                "timeout_s",
                "first_byte_timeout_s",
            }
        )
        for name, t in table.items():
            path = ("providers", name)
            if not isinstance(t, dict):
                raise self.loc.error(path, "must be a table with kind and base_url")
            self._check_keys(t, allowed, path)
            kind = t.get("kind")
            if kind not in _KINDS:
                raise self.loc.error(
                    path,
                    f"'kind' = {kind!r} is not a provider kind; use one of: " + ", ".join(_KINDS),
                    key="kind",
                )
            raw_url = self._str(t, "base_url", path, required=True)
            assert raw_url is not None
            base_url = self._substitute(raw_url, path, "base_url").rstrip("/")
            if not re.match(r"^https?://[^/\s]+", base_url):
                raise self.loc.error(
                    path, f"'base_url' = {raw_url!r} is not an http(s) URL", key="base_url"
                )
            deployments = t.get("deployments", {})
            if not isinstance(deployments, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in deployments.items()
            ):
                raise self.loc.error(
                    path,
                    "'deployments' must map model names to deployment names (strings)",
                    key="deployments",
                )
            d = ProviderConfig(name=name, kind="openai", base_url="")
            out[name] = ProviderConfig(
                name=name,
                kind=cast("ProviderKind", kind),
                base_url=base_url,
                api_key_ref=self._str(t, "api_key_ref", path),
                region=self._str(t, "region", path),
                api_version=self._str(t, "api_version", path),
                deployments=MappingProxyType(dict(deployments)),
                timeout_s=self._num(t, "timeout_s", d.timeout_s, path, strict=True),
                first_byte_timeout_s=self._num(
                    t, "first_byte_timeout_s", d.first_byte_timeout_s, path, strict=True
                ),
            )
        return out

    def prices(
        self, data: Mapping[str, Any], providers: Mapping[str, ProviderConfig]
    ) -> dict[tuple[str, str], tuple[float, float]]:
        table = self._table(data, "prices", ())
        out: dict[tuple[str, str], tuple[float, float]] = {}
        for name, t in table.items():
            path = ("prices", name)
            provider, sep, model = name.partition("/")
            if not sep or not model:
                raise self.loc.error(path, 'price keys are "provider/model"')
            if provider not in providers:
                raise self.loc.error(path, f"provider '{provider}' is not defined in [providers]")
            if not isinstance(t, dict):
                raise self.loc.error(path, "must be a table like { input = 3.0, output = 15.0 }")
            self._check_keys(t, frozenset({"input", "output"}), path)
            out[(provider, model)] = (
                self._num(t, "input", 0.0, path),
                self._num(t, "output", 0.0, path),
            )
        return out

    def models(
        self,
        data: Mapping[str, Any],
        providers: Mapping[str, ProviderConfig],
        prices: Mapping[tuple[str, str], tuple[float, float]],
        settings: RouterSettings,
    ) -> tuple[dict[str, Route], list[ModelInfo]]:
        table = self._table(data, "models", ())
        routes: dict[str, Route] = {}
        infos: list[ModelInfo] = []
        allowed = frozenset(
            {
                "targets",
                "strategy",
                "aliases",
                "tools",
                "vision",
                "context_window",
                "max_output",
                "max_attempts",
                "display_name",
            }
        )
        target_keys = frozenset(
            {
                "provider",
                "model",
                "weight",
                "tools",
                "vision",
                "context_window",
                "max_output",
                "price_in",
                "price_out",
                "format",
            }
        )
        for name, t in table.items():
            path = ("models", name)
            if not isinstance(t, dict):
                raise self.loc.error(path, "must be a table with targets = [...]")
            self._check_keys(t, allowed, path)
            strategy = self._strategy(t, "strategy", settings.default_strategy, path)
            tools = self._bool(t, "tools", True, path)
            vision = self._bool(t, "vision", True, path)
            window = self._int(t, "context_window", None, path)
            max_out = self._int(t, "max_output", None, path)
            raw_targets = t.get("targets")
            if not isinstance(raw_targets, list) or not raw_targets:
                raise self.loc.error(
                    path,
                    "'targets' is missing or empty; add targets = "
                    '[{ provider = "...", model = "..." }]',
                    key="targets",
                )
            compiled: list[CompiledTarget] = []
            seen: set[tuple[str, str]] = set()
            for i, raw in enumerate(raw_targets, start=1):
                if not isinstance(raw, dict):
                    raise self.loc.error(path, f"target {i} must be an inline table", key="targets")
                for key in raw:
                    if key not in target_keys:
                        raise self.loc.error(
                            path,
                            f"target {i} has unknown key '{key}'; use one of: "
                            + ", ".join(sorted(target_keys)),
                            key="targets",
                        )
                tpath = path
                pname = raw.get("provider")
                if not isinstance(pname, str) or pname not in providers:
                    raise self.loc.error(
                        tpath,
                        f"target {i} names provider {pname!r}, which is not defined in "
                        "[providers]; define it or fix the name",
                        key="targets",
                    )
                model = raw.get("model")
                if not isinstance(model, str) or not model:
                    raise self.loc.error(
                        tpath, f'target {i} needs model = "<upstream id>"', key="targets"
                    )
                if (pname, model) in seen:
                    raise self.loc.error(
                        tpath,
                        f"target {i} repeats {pname}/{model}; list each target once",
                        key="targets",
                    )
                seen.add((pname, model))
                fmt = raw.get("format")
                if fmt is not None and fmt not in FORMATS:
                    raise self.loc.error(
                        tpath,
                        f"target {i} format {fmt!r}; use one of: " + ", ".join(FORMATS),
                        key="targets",
                    )
                price = prices.get((pname, model), (0.0, 0.0))
                compiled.append(
                    make_target(
                        providers[pname],
                        model,
                        tools=self._target_bool(raw, "tools", tools, tpath, i),
                        vision=self._target_bool(raw, "vision", vision, tpath, i),
                        context_window=self._target_int(raw, "context_window", window, tpath, i),
                        max_output=self._target_int(raw, "max_output", max_out, tpath, i),
                        weight=self._target_num(raw, "weight", 1.0, tpath, i, strict=True),
                        price=(
                            self._target_num(raw, "price_in", price[0], tpath, i),
                            self._target_num(raw, "price_out", price[1], tpath, i),
                        ),
                        format_override=cast("Format | None", fmt),
                    )
                )
            attempts = self._int(t, "max_attempts", settings.max_attempts, path)
            route = Route(
                name=name,
                strategy=strategy,
                targets=tuple(compiled),
                max_attempts=attempts or settings.max_attempts,
            )
            aliases = t.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
                raise self.loc.error(path, "'aliases' must be a list of names", key="aliases")
            display = self._str(t, "display_name", path) or name
            for alias_name, alias_of in [(name, None), *((a, name) for a in aliases)]:
                if alias_name in routes:
                    raise self.loc.error(
                        path,
                        f"the name '{alias_name}' is defined twice; give each model "
                        "name or alias once",
                        key="aliases" if alias_of else None,
                    )
                routes[alias_name] = route
                infos.append(self._info(alias_name, display, route, alias_of))
        return routes, infos

    @staticmethod
    def _info(name: str, display: str, route: Route, alias_of: str | None) -> ModelInfo:
        windows = [t.context_window for t in route.targets if t.context_window is not None]
        outs = [t.max_output for t in route.targets if t.max_output is not None]
        return ModelInfo(
            id=name,
            display_name=display,
            owned_by="flowloom",
            providers=tuple(dict.fromkeys(t.key[0] for t in route.targets)),
            context_window=max(windows) if windows else None,
            max_output=max(outs) if outs else None,
            tools=any(t.tools for t in route.targets),
            vision=any(t.vision for t in route.targets),
            alias_of=alias_of,
        )

    def _target_bool(
        self, raw: Mapping[str, Any], key: str, default: bool, path: tuple[str, ...], i: int
    ) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise self.loc.error(path, f"target {i} '{key}' must be true or false", key="targets")
        return value

    def _target_int(
        self, raw: Mapping[str, Any], key: str, default: int | None, path: tuple[str, ...], i: int
    ) -> int | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.loc.error(
                path, f"target {i} '{key}' must be a positive whole number", key="targets"
            )
        return value

    def _target_num(
        self,
        raw: Mapping[str, Any],
        key: str,
        default: float,
        path: tuple[str, ...],
        i: int,
        *,
        strict: bool = False,
    ) -> float:
        value = raw.get(key, default)
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and (value > 0 if strict else value >= 0)
        )
        if not ok:
            rel = "> 0" if strict else ">= 0"
            raise self.loc.error(path, f"target {i} '{key}' must be a number {rel}", key="targets")
        return float(value)

    def projects(self, data: Mapping[str, Any]) -> dict[str, frozenset[str]]:
        table = self._table(data, "projects", ())
        out: dict[str, frozenset[str]] = {}
        for name, t in table.items():
            path = ("projects", name)
            if not isinstance(t, dict):
                raise self.loc.error(path, 'must be a table like { residency = ["eu"] }')
            self._check_keys(t, frozenset({"residency"}), path)
            if "residency" not in t:
                continue
            regions = t["residency"]
            if not isinstance(regions, list) or not all(isinstance(r, str) and r for r in regions):
                raise self.loc.error(
                    path, "'residency' must be a list of region names", key="residency"
                )
            out[name] = frozenset(regions)
        return out

    def compile(self) -> CompiledConfig:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{self.source}: not valid TOML: {exc}", hint="fix the syntax at that line"
            ) from exc
        for key in data:
            if key not in _TOP_KEYS:
                raise self.loc.error(
                    (key,), "is not a routing section; use: " + ", ".join(sorted(_TOP_KEYS))
                )
        settings = self.router(data)
        providers = self.providers(data)
        prices = self.prices(data, providers)
        routes, infos = self.models(data, providers, prices, settings)
        return CompiledConfig(
            source=self.source,
            digest=hashlib.sha256(self.text.encode()).hexdigest(),
            router=settings,
            breaker=self.breaker(data),
            latency=self.latency(data),
            providers=MappingProxyType(providers),
            routes=MappingProxyType(routes),
            projects=MappingProxyType(self.projects(data)),
            prices=MappingProxyType(prices),
            models=tuple(infos),
        )


def compile_config(text: str, *, source: str, env: Mapping[str, str]) -> CompiledConfig:
    """Validate and compile a routing configuration; ConfigError (with file:line) if unusable."""
    return _Compiler(text, source, env).compile()
