"""The routing configuration file: the example loads, and every mistake names file:line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flowloom.errors import ConfigError
from flowloom.gateway.routing import DEFAULT_POLICY, Router

from .conftest import BASE, FakeClock, MakeRouter, request

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gateway.toml"


def test_example_config_loads_with_every_provider_kind() -> None:
    router = Router(
        EXAMPLE,
        clock=FakeClock(),
        rng=random.Random(1),
        env={"FLOWLOOM_MOCK_URL": "http://127.0.0.1:9999"},
    )
    providers = router.providers()
    assert set(providers) == {"anthropic", "openai", "gemini", "azure", "local"}
    assert {p.kind for p in providers.values()} == {
        "anthropic",
        "openai",
        "gemini",
        "azure",
        "openai_compatible",
    }
    assert all(p.base_url == "http://127.0.0.1:9999" for p in providers.values())
    assert providers["azure"].deployments["gpt-4o"] == "gpt-4o-eu"
    assert providers["azure"].api_version == "2024-10-21"
    ids = {m.id for m in router.models()}
    assert {"claude-sonnet", "claude-sonnet-4-5-20250929", "gpt-4o", "local-llama"} <= ids
    plan = router.plan(request("claude-sonnet-4-5-20250929", project="acme-eu"))
    assert plan and all(t.region == "eu" for t in plan)


def test_example_default_url_without_the_variable() -> None:
    router = Router(EXAMPLE, clock=FakeClock(), rng=random.Random(1), env={})
    assert router.providers()["openai"].base_url == "http://127.0.0.1:9999"


def test_env_substitution_in_base_url(make_router: MakeRouter, tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[providers.p]\nkind = "openai"\nbase_url = "${HOST}/v1"\n')
    router = Router(path, clock=FakeClock(), env={"HOST": "http://10.0.0.1:8000"})
    assert router.providers()["p"].base_url == "http://10.0.0.1:8000/v1"


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Router(path, clock=FakeClock(), env=env or {})
    return info.value.diagnostics()


def test_missing_variable_is_named_with_its_line(tmp_path: Path) -> None:
    msg = load_error(tmp_path, '\n[providers.p]\nkind = "openai"\nbase_url = "${NOPE}"\n')
    assert "bad.toml:4" in msg and "NOPE" in msg and "not set" in msg


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    msg = load_error(tmp_path, '[providers.p]\nkind = "openai"\nbase_url = \n')
    assert "bad.toml" in msg and "not valid TOML" in msg and "line 3" in msg


def test_unknown_provider_in_a_target_points_at_the_model(tmp_path: Path) -> None:
    text = BASE + '\n[models."m"]\ntargets = [{ provider = "typo", model = "x" }]\n'
    msg = load_error(tmp_path, text)
    line = text.splitlines().index('targets = [{ provider = "typo", model = "x" }]') + 1
    assert f"bad.toml:{line}" in msg
    assert "'typo'" in msg and "[providers]" in msg and "[models.m]" in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[providers.p]\nkind = "cohere"\nbase_url = "http://x"\n', "is not a provider kind"),
        ('[providers.p]\nkind = "openai"\n', "'base_url' is missing"),
        ('[providers.p]\nkind = "openai"\nbase_url = "ftp://x"\n', "not an http(s) URL"),
        (
            '[providers.p]\nkind = "openai"\nbase_url = "http://x"\nregoin = "eu"\n',
            "unknown key 'regoin'",
        ),
        ('[providers.p]\nkind = "openai"\nbase_url = "http://x"\ntimeout_s = 0\n', "out of range"),
        ('[router]\ndefault_strategy = "fastest"\n', "is not a strategy"),
        ("[breaker]\nfailure_rate = 2\n", "out of range"),
        ('[latency]\nmetric = "p99"\n', "metric"),
        ("[routes]\n", "is not a routing section"),
        (BASE + '[models.m]\nstrategy = "ordered"\n', "'targets' is missing"),
        (BASE + '[models.m]\ntargets = [{ provider = "us1" }]\n', "needs model"),
        (
            BASE + '[models.m]\ntargets = [{ provider = "us1", model = "a", weight = 0 }]\n',
            "'weight' must be a number > 0",
        ),
        (
            BASE
            + '[models.m]\ntargets = [{ provider = "us1", model = "a", context_window = -5 }]\n',
            "positive whole number",
        ),
        (
            BASE + '[models.m]\ntargets = [{ provider = "us1", model = "a" },'
            ' { provider = "us1", model = "a" }]\n',
            "repeats us1/a",
        ),
        (
            BASE + '[models.m]\naliases = ["n"]\ntargets = [{ provider = "us1", model = "a" }]\n'
            '[models.n]\ntargets = [{ provider = "us1", model = "a" }]\n',
            "defined twice",
        ),
        (BASE + '[projects.x]\nresidency = "eu"\n', "list of region names"),
        (BASE + '[prices]\n"us1-a" = { input = 1 }\n', "provider/model"),
        ('[router]\npassthrough = "yes"\n', "'passthrough' must be true or false"),
    ],
)
def test_config_errors_are_clear(tmp_path: Path, text: str, needle: str) -> None:
    msg = load_error(tmp_path, text)
    assert needle in msg
    assert msg.startswith(str(tmp_path / "bad.toml"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the routing configuration"):
        Router(tmp_path / "absent.toml", clock=FakeClock())


def test_no_file_means_no_models() -> None:
    router = Router(None, clock=FakeClock())
    assert router.models() == [] and dict(router.providers()) == {}
    assert router.reload_if_changed() is False


def test_prices_section_feeds_targets(make_router: MakeRouter) -> None:
    router = make_router(
        '[prices]\n"us1/a" = { input = 3.0, output = 15.0 }\n'
        '[models.m]\ntargets = [{ provider = "us1", model = "a" },'
        ' { provider = "us2", model = "b", price_in = 1.0, price_out = 2.0 }]\n'
    )
    a, b = router.plan(request())
    assert (a.price_in, a.price_out) == (3.0, 15.0)
    assert (b.price_in, b.price_out) == (1.0, 2.0)


def test_models_listing_aggregates_capabilities(make_router: MakeRouter) -> None:
    router = make_router(
        '[models.m]\naliases = ["m-2025"]\ndisplay_name = "Model M"\nvision = false\n'
        'targets = [{ provider = "us1", model = "a", context_window = 1000, max_output = 10 },'
        ' { provider = "eu1", model = "b", context_window = 5000, tools = false }]\n'
    )
    infos = {m.id: m for m in router.models()}
    m = infos["m"]
    assert (m.display_name, m.context_window, m.max_output) == ("Model M", 5000, 10)
    assert m.tools and not m.vision and m.providers == ("us1", "eu1") and m.alias_of is None
    assert infos["m-2025"].alias_of == "m"


def test_documented_example_compiles_and_keeps_residency(tmp_path: Path) -> None:
    doc = (EXAMPLE.parents[1] / "docs" / "gateway-routing.md").read_text()
    text = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "doc.toml"
    path.write_text(text)
    router = Router(path, clock=FakeClock(), env={})
    assert router.providers()["vllm"].base_url == "http://localhost:8000/v1"
    plan = router.plan(request("claude-sonnet-4-5-20250929", project="acme-eu"))
    assert [(t.provider, t.region) for t in plan] == [("azure-eu", "eu"), ("gemini-eu", "eu")]
    assert [t.provider for t in router.plan(request("local", project="clinic"))] == ["vllm"]


def test_the_default_policy_compiles_and_passes_names_through() -> None:
    """What `flowloom gateway serve` uses without --config: three providers, no models."""
    router = Router(DEFAULT_POLICY, clock=FakeClock(), env={})
    providers = router.providers()
    assert {p.kind for p in providers.values()} == {"anthropic", "openai", "gemini"}
    assert providers["anthropic"].base_url == "https://api.anthropic.com"
    assert providers["openai"].api_key_ref == "openai" and router.models() == []
    moved = Router(
        DEFAULT_POLICY, clock=FakeClock(), env={"FLOWLOOM_ANTHROPIC_BASE_URL": "http://a:1"}
    )
    assert moved.providers()["anthropic"].base_url == "http://a:1"
