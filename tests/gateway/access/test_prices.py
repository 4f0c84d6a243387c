"""The price table and the cost math, cache tokens and long-context tiers included."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.errors import ConfigError
from flowloom.gateway.access import Usage
from flowloom.gateway.access.prices import PriceTable, cost_of


@pytest.fixture
def table() -> PriceTable:
    return PriceTable()


def test_packaged_prices_cover_the_common_models(table: PriceTable) -> None:
    for provider, model in (
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-4o"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "o4-mini"),
        ("gemini", "gemini-2.5-pro"),
        ("gemini", "gemini-2.5-flash"),
    ):
        price = table.lookup(provider, model)
        assert price is not None and price.output > price.input > 0, model
        assert price.cache_read < price.input, model


def test_anthropic_cost_with_cache_reads_and_writes(table: PriceTable) -> None:
    price = table.lookup("anthropic", "claude-sonnet-4-5-20250929")
    assert price is not None and price.model == "claude-sonnet-4-5"
    cost = cost_of(
        price, Usage(input_tokens=1000, output_tokens=500, cache_read=20_000, cache_write=4000)
    )
    assert cost.input_usd == pytest.approx(1000 * 3.0 / 1e6)
    assert cost.output_usd == pytest.approx(500 * 15.0 / 1e6)
    assert cost.cache_read_usd == pytest.approx(20_000 * 0.30 / 1e6)
    assert cost.cache_write_usd == pytest.approx(4000 * 3.75 / 1e6)
    assert cost.total_usd == pytest.approx(0.003 + 0.0075 + 0.006 + 0.015)
    assert cost.priced


def test_openai_cached_input_is_discounted_and_writes_cost_input(table: PriceTable) -> None:
    price = table.lookup("openai", "gpt-4o-2024-08-06")
    assert price is not None and price.model == "gpt-4o"
    assert price.cache_write == price.input == 2.5 and price.cache_read == 1.25
    cost = cost_of(price, Usage(input_tokens=200, output_tokens=100, cache_read=800))
    assert cost.total_usd == pytest.approx((200 * 2.5 + 100 * 10 + 800 * 1.25) / 1e6)


def test_long_context_tier_applies_above_the_threshold(table: PriceTable) -> None:
    price = table.lookup("gemini", "models/gemini-2.5-pro")
    assert price is not None
    small = cost_of(price, Usage(200_000, 1000))
    large = cost_of(price, Usage(150_000, 1000, cache_read=60_000))
    assert small.input_usd == pytest.approx(200_000 * 1.25 / 1e6)
    assert large.input_usd == pytest.approx(150_000 * 2.5 / 1e6)
    assert large.output_usd == pytest.approx(1000 * 15.0 / 1e6)
    assert large.cache_read_usd == pytest.approx(60_000 * 0.25 / 1e6)


def test_lookup_falls_back_across_providers_and_names(table: PriceTable) -> None:
    azure = table.lookup("azure-eu", "gpt-4o-mini")
    assert azure is not None and azure.provider == "openai" and azure.model == "gpt-4o-mini"
    preview = table.lookup("gemini", "gemini-2.5-flash-preview-05-20")
    assert preview is not None and preview.model == "gemini-2.5-flash"
    vertex = table.lookup("vertex", "claude-3-5-haiku@20241022")
    assert vertex is not None and vertex.model == "claude-3-5-haiku"
    assert table.lookup("anthropic", "claude-3-5-sonnet-latest") is not None
    assert table.lookup("openai", "totally-unknown") is None
    assert cost_of(None, Usage(10, 10)).priced is False


def test_overrides_replace_and_extend(tmp_path: Path) -> None:
    table = PriceTable(
        {
            "openai": {"gpt-4o": {"input": 1.0, "output": 2.0}},
            "local": {"llama3": {"input": 0, "output": 0}},
        }
    )
    gpt = table.lookup("openai", "gpt-4o")
    assert gpt is not None and (gpt.input, gpt.output, gpt.cache_read) == (1.0, 2.0, 1.0)
    assert table.lookup("local", "llama3") is not None
    assert table.lookup("anthropic", "claude-haiku-4-5") is not None  # the rest stays
    with pytest.raises(ConfigError):
        PriceTable({"x": {"m": {"input": 1.0}}})
    with pytest.raises(ConfigError):
        PriceTable({"x": {"m": {"input": -1.0, "output": 1.0}}})
    with pytest.raises(ConfigError):
        PriceTable({"x": {"m": {"input": 1.0, "output": 1.0, "typo": 1}}})


def test_access_reads_a_price_file(tmp_path: Path) -> None:
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings

    file = tmp_path / "prices.toml"
    file.write_text('[mine."house-model"]\ninput = 4.0\noutput = 8.0\n', "utf-8")
    with Access(
        str(tmp_path / "db.sqlite"),
        master_key_loader=lambda: bytes(32),
        prices=file,
        settings=AccessSettings(background=False),
    ) as access:
        price = access.price("mine", "house-model")
        assert price is not None and price.output == 8.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[mine\n", "utf-8")
    with pytest.raises(ConfigError):
        Access(str(tmp_path / "db2.sqlite"), master_key_loader=lambda: bytes(32), prices=bad)
