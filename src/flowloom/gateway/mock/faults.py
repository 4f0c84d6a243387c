"""Injected faults: which failure (if any) the simulator plays for one request.

Faults come from a request header (`x-mock-fault: 429;retry_after=2`) or from server-wide
rules (`--faults "429:0.1,500:0.05,claude-opus*@529:1"`) drawn with a seeded RNG, so a
benchmark or a fallback test is reproducible. A rule may be limited to its first N uses
(`times=N`), which is how a test says "the first call fails, the retry succeeds".

Spec grammar (comma-separated items):
    [MODEL_GLOB@]KIND[;param=value...][:PROBABILITY]
KIND is an HTTP status (429, 500, 503, 529, any 4xx/5xx) or one of
    disconnect (param after=N events), slow_first (ms=), slow_stream (ms=),
    context (the provider's context-window error), timeout (hang until the client leaves).
Params: retry_after (seconds, on status faults), after, ms, times.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field, replace

from flowloom.errors import InputError

__all__ = ["FaultPlan", "FaultRule", "Faults", "parse_fault_spec", "parse_header"]

_NAMED = {"disconnect", "slow_first", "slow_stream", "context", "timeout"}
_ALIASES = {
    "hang": "timeout",
    "context_window": "context",
    "slow": "slow_first",
    "overloaded": "529",
    "ratelimit": "429",
    "rate_limit": "429",
}
_DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Faults:
    """The resolved faults for one request (all optional; combine freely)."""

    status: int | None = None
    retry_after: float | None = None
    disconnect_after: int | None = None
    first_delay_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    context: bool = False
    hang: bool = False

    @property
    def any(self) -> bool:
        return self != _NONE

    def label(self) -> str | None:
        """A short description for the request log (None when there is no fault)."""
        if not self.any:
            return None
        parts: list[str] = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.context:
            parts.append("context")
        if self.hang:
            parts.append("timeout")
        if self.disconnect_after is not None:
            parts.append(f"disconnect;after={self.disconnect_after}")
        if self.first_delay_ms:
            parts.append(f"slow_first;ms={self.first_delay_ms:g}")
        if self.chunk_delay_ms:
            parts.append(f"slow_stream;ms={self.chunk_delay_ms:g}")
        return ",".join(parts)


_NONE = Faults()


@dataclass
class FaultRule:
    """One server-wide rule: a fault kind, its parameters, a model glob and a probability."""

    kind: str
    model: str = "*"
    probability: float = 1.0
    params: dict[str, float] = field(default_factory=dict)
    times: int | None = None  # remaining uses; None = unlimited

    def apply(self, faults: Faults) -> Faults:
        return _apply(faults, self.kind, self.params)


def _apply(faults: Faults, kind: str, params: dict[str, float]) -> Faults:
    if kind.isdigit():
        if faults.status is not None:
            return faults  # the first status fault wins
        status = int(kind)
        retry = params.get("retry_after")
        if retry is None and status in (429, 503, 529):
            retry = _DEFAULT_RETRY_AFTER
        return replace(faults, status=status, retry_after=retry)
    if kind == "disconnect":
        return replace(faults, disconnect_after=int(params.get("after", 2)))
    if kind == "slow_first":
        return replace(faults, first_delay_ms=params.get("ms", 500.0))
    if kind == "slow_stream":
        return replace(faults, chunk_delay_ms=params.get("ms", 50.0))
    if kind == "context":
        return replace(faults, context=True)
    if kind == "timeout":
        return replace(faults, hang=True)
    raise InputError(f"unknown fault {kind!r}", hint=_HINT)


_HINT = "use a status (429, 500, 503, 529) or disconnect, slow_first, slow_stream, context, timeout"


def _parse_item(item: str, *, with_probability: bool) -> FaultRule:
    text = item.strip()
    model = "*"
    if "@" in text:
        model, _, text = text.partition("@")
        model = model.strip() or "*"
    probability = 1.0
    if with_probability and ":" in text:
        text, _, prob_text = text.rpartition(":")
        try:
            probability = float(prob_text)
        except ValueError:
            raise InputError(f"bad fault probability in {item!r}", hint=_HINT) from None
        if not 0.0 <= probability <= 1.0:
            raise InputError(f"fault probability out of [0, 1] in {item!r}", hint=_HINT)
    kind, *param_texts = [p.strip() for p in text.split(";")]
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if not (kind.isdigit() and 400 <= int(kind) <= 599) and kind not in _NAMED:
        raise InputError(f"unknown fault {kind!r} in {item!r}", hint=_HINT)
    params: dict[str, float] = {}
    times: int | None = None
    for ptext in param_texts:
        if not ptext:
            continue
        key, sep, value = ptext.partition("=")
        if not sep:
            raise InputError(f"fault parameter {ptext!r} needs a value (name=value)", hint=_HINT)
        try:
            number = float(value.strip().removesuffix("ms").removesuffix("s"))
        except ValueError:
            raise InputError(f"fault parameter {ptext!r} is not a number", hint=_HINT) from None
        key = key.strip().replace("-", "_")
        if key == "times":
            times = int(number)
        else:
            params[key] = number
    return FaultRule(kind=kind, model=model, probability=probability, params=params, times=times)


def parse_fault_spec(spec: str | None) -> list[FaultRule]:
    """Parse a server-wide spec such as "429:0.1,500:0.05,claude-opus*@529:1"."""
    if not spec or not spec.strip():
        return []
    return [_parse_item(item, with_probability=True) for item in spec.split(",") if item.strip()]


def parse_header(value: str | None) -> Faults:
    """Parse an `x-mock-fault` header ("429;retry_after=3", "disconnect;after=2,slow_stream")."""
    faults = _NONE
    if not value:
        return faults
    for item in value.split(","):
        if item.strip():
            rule = _parse_item(item, with_probability=False)
            faults = rule.apply(faults)
    return faults


class FaultPlan:
    """Server-wide fault rules with a seeded RNG; safe to change from another thread."""

    def __init__(self, rules: list[FaultRule] | None = None, *, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules = list(rules or [])
        self._rng = random.Random(seed)
        self._seed = seed

    def set(self, rules: list[FaultRule], *, seed: int | None = None) -> None:
        with self._lock:
            self._rules = list(rules)
            if seed is not None:
                self._seed = seed
            self._rng = random.Random(self._seed)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        self.set([])

    def describe(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {
                    "kind": r.kind,
                    "model": r.model,
                    "probability": r.probability,
                    "params": dict(r.params),
                    "times": r.times,
                }
                for r in self._rules
            ]

    def choose(self, model: str, header: str | None) -> Faults:
        """The faults for one request: the header's, then every matching rule that fires."""
        faults = parse_header(header)
        if not self._rules:
            return faults
        with self._lock:
            for rule in self._rules:
                if rule.times is not None and rule.times <= 0:
                    continue
                if rule.model != "*" and not fnmatch.fnmatchcase(model, rule.model):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                faults = rule.apply(faults)
        return faults
