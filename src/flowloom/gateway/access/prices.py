"""The price table: list prices per 1M tokens per provider and model, and the cost math.

The table ships with the package (prices.toml) and can be overridden or extended by a
TOML file or mapping of the same shape ({provider: {model: {input, output, ...}}}).
A model is looked up under the given provider first, then under every provider (route
provider names such as "azure-eu" need not match a price section); its id is tried as
given, then without a provider path ("models/", "anthropic/"), a date suffix
("-20250929", "-2024-08-06", "@20240620") or "-latest", then as the longest priced name
it extends ("gemini-2.5-flash-preview-05-20" → "gemini-2.5-flash"). Lookups are
memoised in a bounded map.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from flowloom.errors import ConfigError
from flowloom.gateway.access.records import Cost, Price, Usage

__all__ = ["PriceTable", "cost_of", "load_price_file"]

_PER = 1_000_000.0
_DATE_SUFFIX = re.compile(r"(?:-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8}|@latest|-latest)$")
_MEMO_LIMIT = 4096
_FIELDS = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "above_tokens",
    "input_above",
    "output_above",
    "cache_read_above",
    "cache_write_above",
)


def load_price_file(path: Path) -> dict[str, Any]:
    """A price override file, parsed; ConfigError when it is not TOML."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the price file {path}: {exc}", hint="fix the TOML or remove the file"
        ) from exc


def _packaged() -> dict[str, Any]:
    text = resources.files("flowloom.gateway.access").joinpath("prices.toml").read_text("utf-8")
    return tomllib.loads(text)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"price {where} must be a number ≥ 0, not {value!r}")
    return float(value)


def _price(provider: str, model: str, entry: Mapping[str, Any]) -> Price:
    where = f"{provider}.{model}"
    unknown = set(entry) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"price {where} has unknown fields {sorted(unknown)}")
    if "input" not in entry or "output" not in entry:
        raise ConfigError(f"price {where} needs input and output prices per 1M tokens")
    base = _number(entry["input"], where + ".input")

    def opt(name: str) -> float | None:
        return _number(entry[name], f"{where}.{name}") if name in entry else None

    above = entry.get("above_tokens")
    if above is not None and (isinstance(above, bool) or not isinstance(above, int) or above < 1):
        raise ConfigError(f"price {where}.above_tokens must be a positive integer")
    cache_read, cache_write = opt("cache_read"), opt("cache_write")
    return Price(
        provider=provider,
        model=model,
        input=base,
        output=_number(entry["output"], where + ".output"),
        cache_read=base if cache_read is None else cache_read,
        cache_write=base if cache_write is None else cache_write,
        above_tokens=above,
        input_above=opt("input_above"),
        output_above=opt("output_above"),
        cache_read_above=opt("cache_read_above"),
        cache_write_above=opt("cache_write_above"),
    )


class PriceTable:
    """Prices by provider and model: the packaged table with `overrides` merged over it."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        merged: dict[str, dict[str, Price]] = {}
        for source in (_packaged(), overrides or {}):
            for provider, models in source.items():
                if not isinstance(models, Mapping):
                    raise ConfigError(f"price section {provider!r} must be a table of models")
                for model, entry in models.items():
                    if not isinstance(entry, Mapping):
                        raise ConfigError(f"price {provider}.{model} must be a table")
                    merged.setdefault(provider, {})[model] = _price(provider, model, entry)
        self._table = merged
        self._memo: dict[tuple[str | None, str], Price | None] = {}

    def providers(self) -> Mapping[str, Mapping[str, Price]]:
        return self._table

    def lookup(self, provider: str | None, model: str) -> Price | None:
        """The price of `model` (at `provider` when priced there), or None when unknown."""
        memo_key = (provider, model)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        found = self._find(provider, model)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[memo_key] = found
        return found

    def _sections(self, provider: str | None) -> list[Mapping[str, Price]]:
        first = self._table.get(provider) if provider is not None else None
        found: list[Mapping[str, Price]] = [first] if first else []
        found.extend(models for name, models in self._table.items() if name != provider)
        return found

    def _find(self, provider: str | None, model: str) -> Price | None:
        bare = model.rsplit("/", 1)[-1]
        undated = _DATE_SUFFIX.sub("", bare)
        sections = self._sections(provider)
        for candidate in dict.fromkeys((model, bare, undated)):
            for models in sections:
                if candidate in models:
                    return models[candidate]
        for models in sections:
            best = max(
                (name for name in models if undated.startswith(name + "-")),
                key=len,
                default=None,
            )
            if best is not None:
                return models[best]
        return None


def cost_of(price: Price | None, usage: Usage) -> Cost:
    """What `usage` costs at `price`; zero and priced=False when the price is unknown."""
    if price is None:
        return Cost(priced=False)
    prompt = usage.input_tokens + usage.cache_read + usage.cache_write
    p_in, p_out, p_read, p_write = price.input, price.output, price.cache_read, price.cache_write
    if price.above_tokens is not None and prompt > price.above_tokens:
        p_in = price.input_above if price.input_above is not None else p_in
        p_out = price.output_above if price.output_above is not None else p_out
        p_read = price.cache_read_above if price.cache_read_above is not None else p_read
        p_write = price.cache_write_above if price.cache_write_above is not None else p_write
    return Cost(
        input_usd=usage.input_tokens * p_in / _PER,
        output_usd=usage.output_tokens * p_out / _PER,
        cache_read_usd=usage.cache_read * p_read / _PER,
        cache_write_usd=usage.cache_write * p_write / _PER,
    )
