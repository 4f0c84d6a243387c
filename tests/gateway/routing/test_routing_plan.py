"""Planning: aliases, capability filters, residency and the four strategies."""

from __future__ import annotations

from collections import Counter

import pytest

from flowloom.errors import InputError, NotFoundError, PermissionDeniedError
from flowloom.gateway.routing import (
    NoCapableTargetError,
    ResidencyError,
    RoutingError,
    Target,
    UnknownModelError,
)

from .conftest import MakeRouter, request

THREE = (
    'targets = [{ provider = "us1", model = "a" }, { provider = "us2", model = "b" },'
    ' { provider = "eu1", model = "c" }]\n'
)


def names(plan: list[Target]) -> list[str]:
    return [f"{t.provider}/{t.model}" for t in plan]


def test_alias_and_canonical_name_route_the_same(make_router: MakeRouter) -> None:
    router = make_router('[models.m]\naliases = ["m-20250101"]\n' + THREE)
    assert router.plan(request("m")) == router.plan(request("m-20250101"))
    assert names(router.plan(request("m"))) == ["us1/a", "us2/b", "eu1/c"]


def test_unknown_model_is_404(make_router: MakeRouter) -> None:
    router = make_router("[models.m]\n" + THREE)
    with pytest.raises(UnknownModelError) as info:
        router.plan(request("nope"))
    assert info.value.status == 404 and isinstance(info.value, NotFoundError)
    assert isinstance(info.value, RoutingError)


def test_direct_provider_model_names(make_router: MakeRouter) -> None:
    router = make_router("[models.m]\n" + THREE)
    plan = router.plan(request("eu1/gemini-x"))
    assert names(plan) == ["eu1/gemini-x"] and plan[0].format == "gemini"
    with pytest.raises(UnknownModelError):
        router.plan(request("ghost/x"))
    with pytest.raises(ResidencyError):  # direct names obey residency too
        router.plan(request("us1/x", residency=frozenset({"eu"})))


def test_direct_names_can_be_switched_off(make_router: MakeRouter) -> None:
    router = make_router("[router]\ndirect = false\n[models.m]\n" + THREE)
    with pytest.raises(UnknownModelError):
        router.plan(request("us1/a"))


@pytest.mark.parametrize(
    ("model", "provider", "fmt"),
    [
        ("claude-sonnet-4-5-20250929", "us1", "anthropic"),
        ("claude-3-5-haiku-latest", "us1", "anthropic"),
        ("gpt-4o-mini", "us2", "openai"),
        ("gpt-5-codex", "us2", "openai"),
        ("chatgpt-4o-latest", "us2", "openai"),
        ("o3", "us2", "openai"),
        ("o4-mini-2025-04-16", "us2", "openai"),
        ("gemini-2.5-flash", "eu1", "gemini"),
        ("gemma-3-27b-it", "eu1", "gemini"),
    ],
)
def test_a_providers_own_model_names_pass_straight_through(
    make_router: MakeRouter, model: str, provider: str, fmt: str
) -> None:
    """Unrouted claude-*, gpt-* / o-series and gemini-* names go to the first provider of
    their kind (us1 anthropic, us2 openai, eu1 gemini; azure eu2 is not "openai"), under
    their own name, in its native format."""
    router = make_router("[models.m]\n" + THREE)
    plan = router.plan(request(model))
    assert names(plan) == [f"{provider}/{model}"] and plan[0].format == fmt
    assert router.plan(request(model)) == plan  # cached, same answer


def test_pass_through_yields_to_the_policy_and_can_be_switched_off(
    make_router: MakeRouter,
) -> None:
    routed = make_router('[models."claude-x"]\n' + THREE)
    assert names(routed.plan(request("claude-x"))) == ["us1/a", "us2/b", "eu1/c"]
    for unknown in ("llama-3-70b", "o", "gpt", "claude", "my-claude-x", "openai/gpt-4o-x"):
        with pytest.raises(UnknownModelError) as unknown_info:
            routed.plan(request(unknown))
        assert "own model name (claude-*, gpt-*, gemini-*" in unknown_info.value.diagnostics()
    off = make_router("[router]\npassthrough = false\n[models.m]\n" + THREE)
    with pytest.raises(UnknownModelError) as info:
        off.plan(request("claude-sonnet-4-5"))
    assert "own model name" not in info.value.diagnostics()
    # No provider of the kind: nothing to pass it to.
    only_gemini = make_router(
        '[providers.g]\nkind = "gemini"\nbase_url = "http://x"\n'
        '[models.m]\ntargets = [{ provider = "g", model = "a" }]\n',
        base=False,
    )
    assert names(only_gemini.plan(request("gemini-2.0-flash"))) == ["g/gemini-2.0-flash"]
    with pytest.raises(UnknownModelError):
        only_gemini.plan(request("claude-sonnet-4-5"))


def test_pass_through_obeys_residency(make_router: MakeRouter) -> None:
    router = make_router('[projects.acme]\nresidency = ["eu"]\n[models.m]\n' + THREE)
    assert names(router.plan(request("gemini-2.5-pro", project="acme"))) == ["eu1/gemini-2.5-pro"]
    with pytest.raises(ResidencyError):
        router.plan(request("claude-opus-4-1", project="acme"))


def test_target_format_follows_provider_kind(make_router: MakeRouter) -> None:
    router = make_router(
        '[providers.oa]\nkind = "openai"\nbase_url = "http://x"\n'
        '[models.m]\ntargets = [{ provider = "us1", model = "a" },'
        ' { provider = "oa", model = "b" },'
        ' { provider = "eu1", model = "c" }, { provider = "eu2", model = "d" },'
        ' { provider = "nowhere", model = "e" },'
        ' { provider = "us2", model = "f", format = "anthropic" }]'
        "\nmax_attempts = 6\n"
    )
    fmts = [t.format for t in router.plan(request(format="openai"))]
    assert fmts == ["anthropic", "openai", "gemini", "openai", "openai", "anthropic"]
    fmts = [t.format for t in router.plan(request(format="responses"))]
    assert fmts == ["anthropic", "responses", "gemini", "openai", "openai", "anthropic"]


def test_capability_filters(make_router: MakeRouter) -> None:
    router = make_router(
        "[models.m]\nmax_attempts = 5\ntargets = [\n"
        ' { provider = "us1", model = "notools", tools = false, context_window = 200000 },\n'
        ' { provider = "us2", model = "novision", vision = false, context_window = 100000 },\n'
        ' { provider = "eu1", model = "small", context_window = 8000, max_output = 1000 },\n'
        ' { provider = "eu2", model = "big", context_window = 1000000, max_output = 64000 },\n'
        "]\n"
    )
    assert "us1/notools" not in names(router.plan(request(has_tools=True)))
    assert "us2/novision" not in names(router.plan(request(has_images=True)))
    assert names(router.plan(request(est_input_tokens=150_000))) == ["us1/notools", "eu2/big"]
    # Input + requested output must fit the window; a target allowing less output than
    # asked is kept (the pipeline clamps), and then only the clamped output must fit.
    assert names(router.plan(request(est_input_tokens=7000, max_output_tokens=2000))) == [
        "us1/notools",
        "us2/novision",
        "eu1/small",
        "eu2/big",
    ]
    assert "eu1/small" not in names(
        router.plan(request(est_input_tokens=7001, max_output_tokens=2000))
    )
    assert names(router.plan(request(est_input_tokens=150_000, has_tools=True))) == ["eu2/big"]
    with pytest.raises(NoCapableTargetError) as info:
        router.plan(request(est_input_tokens=2_000_000))
    assert info.value.status == 400 and isinstance(info.value, InputError)
    assert "largest window is 1000000" in info.value.message


def test_no_vision_anywhere_says_so(make_router: MakeRouter) -> None:
    router = make_router(
        '[models.m]\nvision = false\ntargets = [{ provider = "us1", model = "a" }]\n'
    )
    with pytest.raises(NoCapableTargetError, match="images"):
        router.plan(request(has_images=True))


def test_residency_project_and_request(make_router: MakeRouter) -> None:
    router = make_router(
        '[projects.acme]\nresidency = ["eu"]\n[projects.usonly]\nresidency = ["us"]\n'
        "[models.m]\nmax_attempts = 5\n"
        + THREE.replace("]\n", ', { provider = "nowhere", model = "d" }]\n')
    )
    assert names(router.plan(request(project="acme"))) == ["eu1/c"]
    assert names(router.plan(request(residency=frozenset({"us"})))) == ["us1/a", "us2/b"]
    # A target without a region is never chosen under a residency constraint.
    assert "nowhere/d" not in names(router.plan(request(residency=frozenset({"us", "eu"}))))
    assert "nowhere/d" in names(router.plan(request()))
    # The request's regions and the project's are intersected.
    with pytest.raises(ResidencyError) as info:
        router.plan(request(project="usonly", residency=frozenset({"eu"})))
    assert info.value.status == 403 and isinstance(info.value, PermissionDeniedError)
    assert "project 'usonly'" in info.value.message
    # An unknown project has no policy of its own.
    assert len(router.plan(request(project="other"))) == 4


def test_residency_is_checked_before_capabilities(make_router: MakeRouter) -> None:
    router = make_router(
        '[models.m]\ntargets = [{ provider = "us1", model = "a", tools = true },'
        ' { provider = "eu1", model = "b", tools = false }]\n'
    )
    with pytest.raises(NoCapableTargetError):
        router.plan(request(has_tools=True, residency=frozenset({"eu"})))


def test_ordered_and_max_attempts(make_router: MakeRouter) -> None:
    router = make_router("[router]\nmax_attempts = 2\n[models.m]\n" + THREE)
    assert names(router.plan(request())) == ["us1/a", "us2/b"]


def test_cost_strategy_depends_on_token_mix(make_router: MakeRouter) -> None:
    router = make_router(
        '[models.m]\nstrategy = "cost"\ntargets = [\n'
        ' { provider = "us1", model = "cheap-out", price_in = 10.0, price_out = 1.0 },\n'
        ' { provider = "us2", model = "cheap-in", price_in = 1.0, price_out = 10.0 },\n'
        ' { provider = "eu1", model = "dear", price_in = 20.0, price_out = 20.0 }]\n'
    )
    long_prompt = request(est_input_tokens=100_000, max_output_tokens=100)
    assert names(router.plan(long_prompt)) == ["us2/cheap-in", "us1/cheap-out", "eu1/dear"]
    long_answer = request(est_input_tokens=100, max_output_tokens=100_000)
    assert names(router.plan(long_answer)) == ["us1/cheap-out", "us2/cheap-in", "eu1/dear"]


def test_latency_strategy_learns_from_outcomes(make_router: MakeRouter) -> None:
    router = make_router('[latency]\nexplore = 0\n[models.m]\nstrategy = "latency"\n' + THREE)
    # Unmeasured targets come first, in configuration order.
    assert names(router.plan(request())) == ["us1/a", "us2/b", "eu1/c"]
    plan = router.plan(request())
    for target, seconds in zip(plan, (0.9, 0.2, 0.5), strict=True):
        router.outcome(
            target, ok=True, status=200, latency_s=seconds, retry_after_s=None, error_kind=None
        )
    assert names(router.plan(request())) == ["us2/b", "eu1/c", "us1/a"]
    # us2 gets slow: the EWMA moves and the order follows.
    for _ in range(6):
        router.outcome(
            plan[1], ok=True, status=200, latency_s=3.0, retry_after_s=None, error_kind=None
        )
    assert names(router.plan(request())) == ["eu1/c", "us1/a", "us2/b"]


def test_latency_p50_ignores_a_single_outlier(make_router: MakeRouter) -> None:
    router = make_router(
        '[latency]\nexplore = 0\nmetric = "p50"\nwindow = 5\n'
        '[models.m]\nstrategy = "latency"\n' + THREE
    )
    a, b, c = router.plan(request())
    for t, s in ((a, 0.3), (b, 0.4), (c, 0.5)):
        for _ in range(4):
            router.outcome(t, ok=True, status=200, latency_s=s, retry_after_s=None, error_kind=None)
    router.outcome(a, ok=True, status=200, latency_s=60.0, retry_after_s=None, error_kind=None)
    assert names(router.plan(request())) == ["us1/a", "us2/b", "eu1/c"]


def test_latency_explores_slower_targets_sometimes(make_router: MakeRouter) -> None:
    router = make_router('[latency]\nexplore = 0.1\n[models.m]\nstrategy = "latency"\n' + THREE)
    for t, s in zip(router.plan(request()), (0.1, 0.2, 0.3), strict=True):
        router.outcome(t, ok=True, status=200, latency_s=s, retry_after_s=None, error_kind=None)
    firsts = Counter(router.plan(request())[0].model for _ in range(4000))
    assert 0.86 < firsts["a"] / 4000 < 0.94
    assert firsts["b"] > 100 and firsts["c"] > 100


def test_weighted_distribution_follows_weights(make_router: MakeRouter) -> None:
    router = make_router(
        '[models.m]\nstrategy = "weighted"\ntargets = [\n'
        ' { provider = "us1", model = "a", weight = 6 },\n'
        ' { provider = "us2", model = "b", weight = 3 },\n'
        ' { provider = "eu1", model = "c", weight = 1 }]\n',
        seed=12345,
    )
    n = 20_000
    firsts: Counter[str] = Counter()
    for _ in range(n):
        plan = router.plan(request())
        assert sorted(names(plan)) == ["eu1/c", "us1/a", "us2/b"]  # a full cascade each time
        firsts[plan[0].model] += 1
    for model, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(firsts[model] / n - share) < 0.015, (model, firsts)


def test_weighted_is_reproducible_with_a_seed(make_router: MakeRouter) -> None:
    text = (
        '[models.m]\nstrategy = "weighted"\ntargets = [{ provider = "us1", model = "a" },'
        ' { provider = "us2", model = "b" }]\n'
    )
    one = make_router(text, seed=3)
    seq1 = [one.plan(request())[0].model for _ in range(50)]
    two = make_router(text, seed=3)
    seq2 = [two.plan(request())[0].model for _ in range(50)]
    assert seq1 == seq2 and set(seq1) == {"a", "b"}
