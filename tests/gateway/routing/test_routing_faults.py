"""Faults: fallback decisions, retry-after, breakers, context-window fallbacks, residency."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom.gateway.routing import (
    ResidencyError,
    Router,
    RoutingError,
    Target,
    TargetsUnavailableError,
)

from .conftest import BASE, FakeClock, MakeRouter, request

THREE = (
    '[models.m]\ntargets = [{ provider = "us1", model = "a" }, { provider = "us2", model = "b" },'
    ' { provider = "eu1", model = "c" }]\n'
)


def fail(
    router: Router,
    target: Target,
    status: int | None = 500,
    *,
    retry_after: float | None = None,
    kind: str | None = None,
) -> None:
    router.outcome(
        target, ok=False, status=status, latency_s=0.1, retry_after_s=retry_after, error_kind=kind
    )


def succeed(router: Router, target: Target) -> None:
    router.outcome(target, ok=True, status=200, latency_s=0.1, retry_after_s=None, error_kind=None)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
def test_falls_back_on_retryable_statuses(make_router: MakeRouter, status: int) -> None:
    assert make_router("").should_fall_back(status, None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_does_not_fall_back_on_client_errors(make_router: MakeRouter, status: int) -> None:
    assert not make_router("").should_fall_back(status, None)


@pytest.mark.parametrize(
    "kind", ["timeout", "first_byte_timeout", "connect", "disconnect", "context_window"]
)
def test_falls_back_on_timeouts_transport_and_context_window(
    make_router: MakeRouter, kind: str
) -> None:
    router = make_router("")
    assert router.should_fall_back(None, kind)
    assert router.should_fall_back(400, kind)  # e.g. a 400 that says "prompt is too long"


def test_no_fallback_when_the_caller_went_away(make_router: MakeRouter) -> None:
    assert not make_router("").should_fall_back(None, "cancelled")
    assert make_router("").should_fall_back(None, None)  # no answer at all: try elsewhere


def test_retry_after_is_honoured_until_it_passes(make_router: MakeRouter, clock: FakeClock) -> None:
    router = make_router(THREE)
    a = router.plan(request())[0]
    fail(router, a, 429, retry_after=20)
    assert [t.model for t in router.plan(request())] == ["b", "c"]
    clock.advance(19.9)
    assert router.plan(request())[0].model == "b"
    clock.advance(0.2)
    assert router.plan(request())[0].model == "a"


def test_retry_after_is_capped(make_router: MakeRouter, clock: FakeClock) -> None:
    router = make_router("[router]\nmax_retry_after_s = 60\n" + THREE)
    a = router.plan(request())[0]
    fail(router, a, 503, retry_after=86400)
    clock.advance(61)
    assert router.plan(request())[0].model == "a"


def test_429_without_retry_after_does_not_trip_the_breaker(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router("[breaker]\nconsecutive_failures = 2\n" + THREE)
    a = router.plan(request())[0]
    for _ in range(10):
        fail(router, a, 429)
    assert router.health(a) == "closed" and router.plan(request())[0] == a


def test_all_targets_cooling_down_is_503_with_retry_after(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router(THREE)
    for t, wait in zip(router.plan(request()), (30, 10, 50), strict=True):
        fail(router, t, 429, retry_after=wait)
    with pytest.raises(TargetsUnavailableError) as info:
        router.plan(request())
    assert info.value.status == 503 and info.value.retry_after_s == pytest.approx(10)
    clock.advance(10)
    assert [t.model for t in router.plan(request())] == ["b"]


def test_breaker_opens_after_consecutive_failures(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router("[breaker]\nconsecutive_failures = 3\ncooldown_s = 10\n" + THREE)
    a = router.plan(request())[0]
    fail(router, a)
    fail(router, a)
    succeed(router, a)  # a success resets the run
    fail(router, a)
    fail(router, a)
    assert router.health(a) == "closed"
    fail(router, a, None, kind="timeout")
    assert router.health(a) == "open"
    assert [t.model for t in router.plan(request())] == ["b", "c"]


def test_breaker_opens_on_failure_rate(make_router: MakeRouter, clock: FakeClock) -> None:
    router = make_router(
        "[breaker]\nconsecutive_failures = 100\nfailure_rate = 0.5\nmin_requests = 10\n"
        "window_s = 60\n" + THREE
    )
    a = router.plan(request())[0]
    for i in range(9):
        (fail if i % 2 else succeed)(router, a)
        clock.advance(1)
    assert router.health(a) == "closed"  # 4 of 9: below the minimum sample anyway
    fail(router, a)
    assert router.health(a) == "open"  # 5 of 10 failed


def test_failure_rate_window_forgets_old_failures(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router(
        "[breaker]\nconsecutive_failures = 100\nfailure_rate = 0.5\nmin_requests = 4\n"
        "window_s = 10\n" + THREE
    )
    a = router.plan(request())[0]
    succeed(router, a)
    fail(router, a)
    fail(router, a)
    clock.advance(11)
    succeed(router, a)
    succeed(router, a)
    fail(router, a)  # 1 of 3 in the window (3 of 6 had the old failures counted)
    succeed(router, a)
    fail(router, a)  # 2 of 5
    assert router.health(a) == "closed"


def test_breaker_half_open_probes_then_closes(make_router: MakeRouter, clock: FakeClock) -> None:
    router = make_router(
        "[breaker]\nconsecutive_failures = 1\ncooldown_s = 30\nhalf_open_probes = 1\n"
        "probe_timeout_s = 5\n" + THREE
    )
    a = router.plan(request())[0]
    fail(router, a, 503)
    assert router.health(a) == "open"
    clock.advance(29)
    assert "a" not in [t.model for t in router.plan(request())]
    clock.advance(1)
    assert router.health(a) == "half_open"
    assert router.plan(request())[0] == a  # the one probe
    assert "a" not in [t.model for t in router.plan(request())]  # no second probe meanwhile
    clock.advance(5)  # the probe was never reported: its slot expires
    assert router.plan(request())[0] == a
    succeed(router, a)
    assert router.health(a) == "closed"
    assert all(router.plan(request())[0] == a for _ in range(5))


def test_failed_probe_reopens(make_router: MakeRouter, clock: FakeClock) -> None:
    router = make_router(
        "[breaker]\nconsecutive_failures = 1\ncooldown_s = 30\nhalf_open_probes = 2\n" + THREE
    )
    a = router.plan(request())[0]
    fail(router, a)
    clock.advance(30)
    assert router.plan(request())[0] == a
    assert router.plan(request())[0] == a  # two probes allowed
    assert router.plan(request())[0].model == "b"
    fail(router, a)
    assert router.health(a) == "open"
    clock.advance(29.9)
    assert router.plan(request())[0].model == "b"
    clock.advance(0.1)
    assert router.plan(request())[0] == a


def test_neutral_outcome_in_half_open_frees_the_probe(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router("[breaker]\nconsecutive_failures = 1\ncooldown_s = 1\n" + THREE)
    a = router.plan(request())[0]
    fail(router, a)
    clock.advance(1)
    assert router.plan(request())[0] == a
    fail(router, a, 400)  # the target answered: not a health failure
    assert router.health(a) == "half_open"
    assert router.plan(request())[0] == a


def test_context_window_error_falls_back_only_to_larger_windows(make_router: MakeRouter) -> None:
    router = make_router(
        "[models.m]\nmax_attempts = 5\ntargets = [\n"
        ' { provider = "us1", model = "w100k", context_window = 100000 },\n'
        ' { provider = "us2", model = "w50k", context_window = 50000 },\n'
        ' { provider = "eu1", model = "w100k-b", context_window = 100000 },\n'
        ' { provider = "eu2", model = "w1m", context_window = 1000000 },\n'
        ' { provider = "nowhere", model = "unknown" }]\n'
    )
    cascade = router.plan(request(est_input_tokens=40_000))
    first = cascade[0]
    assert router.should_fall_back(400, "context_window")
    fail(router, first, 400, kind="context_window")
    assert [t.model for t in router.fallbacks(cascade, first, error_kind="context_window")] == [
        "w1m"
    ]
    assert router.health(first) == "closed"  # not a health failure
    # Other errors keep the whole rest of the cascade.
    assert [t.model for t in router.fallbacks(cascade, first, error_kind=None)] == [
        "w50k",
        "w100k-b",
        "w1m",
        "unknown",
    ]


def test_fallbacks_skip_targets_that_became_unavailable(
    make_router: MakeRouter, clock: FakeClock
) -> None:
    router = make_router("[breaker]\nconsecutive_failures = 1\n" + THREE)
    cascade = router.plan(request())
    a, b, c = cascade
    fail(router, c, 429, retry_after=5)
    fail(router, a, 500)
    assert router.fallbacks(cascade, a, error_kind=None) == [b]
    fail(router, b, 500)
    assert router.fallbacks(cascade, b, error_kind=None) == []


# -- residency is never violated, whatever happens ---------------------------------------

RESIDENCY_CONFIG = (
    BASE
    + """
[breaker]
consecutive_failures = 2
cooldown_s = 5
half_open_probes = 1
probe_timeout_s = 3

[projects.eu-only]
residency = ["eu"]

[projects.us-only]
residency = ["us"]

[models.m]
strategy = "weighted"
max_attempts = 5
targets = [
  { provider = "us1", model = "a", context_window = 1000, weight = 5 },
  { provider = "us2", model = "b", context_window = 100000, weight = 1 },
  { provider = "eu1", model = "c", context_window = 5000, weight = 1 },
  { provider = "eu2", model = "d", context_window = 200000, weight = 2 },
  { provider = "nowhere", model = "e", context_window = 900000, weight = 9 },
]

[models.lat]
strategy = "latency"
targets = [
  { provider = "nowhere", model = "fast" },
  { provider = "us1", model = "mid" },
  { provider = "eu1", model = "slow" },
]
"""
)

MODEL_REGIONS = {
    "m": {"us", "eu"},
    "lat": {"us", "eu"},
    "eu1/direct": {"eu"},
    "nowhere/direct": set(),
    "us2/direct": {"us"},
}

FAULTS = st.sampled_from(
    [
        (True, 200, None, None),
        (False, 429, None, None),
        (False, 429, 3.0, None),
        (False, 500, None, None),
        (False, 503, 1.0, None),
        (False, 529, None, None),
        (False, None, None, "timeout"),
        (False, None, None, "first_byte_timeout"),
        (False, None, None, "connect"),
        (False, 400, None, "context_window"),
        (False, 400, None, None),
    ]
)
POLICIES = st.sampled_from(
    [
        ("eu-only", None, frozenset({"eu"})),
        ("us-only", None, frozenset({"us"})),
        (None, frozenset({"eu"}), frozenset({"eu"})),
        ("eu-only", frozenset({"eu", "us"}), frozenset({"eu"})),
        ("us-only", frozenset({"eu"}), frozenset()),
        (None, frozenset(), frozenset()),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    policy=POLICIES,
    model=st.sampled_from(["m", "lat", "eu1/direct", "nowhere/direct", "us2/direct"]),
    steps=st.lists(
        st.tuples(FAULTS, st.floats(0, 4), st.integers(0, 50_000), st.floats(0.01, 5.0)),
        max_size=40,
    ),
)
def test_residency_is_never_violated_under_any_fault_sequence(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    policy: tuple[str | None, frozenset[str] | None, frozenset[str]],
    model: str,
    steps: list[tuple[tuple[bool, int | None, float | None, str | None], float, int, float]],
) -> None:
    path = tmp_path_factory.mktemp("res") / "gateway.toml"
    path.write_text(RESIDENCY_CONFIG)
    clock = FakeClock()
    router = Router(path, clock=clock, rng=random.Random(seed), env={})
    project, regions, allowed = policy
    for (ok, status, retry_after, kind), dt, tokens, latency in steps:
        clock.advance(dt)
        req = request(model, project=project, residency=regions, est_input_tokens=tokens)
        try:
            cascade = router.plan(req)
        except ResidencyError:
            assert not (MODEL_REGIONS[model] & allowed)  # refused only when truly impossible
            continue
        except RoutingError:
            continue
        assert cascade and all(t.region in allowed for t in cascade), cascade
        # Walk the cascade the way the pipeline does, every attempt suffering the fault.
        current = cascade[0]
        tried = 0
        while True:
            tried += 1
            assert current.region in allowed
            router.outcome(
                current,
                ok=ok,
                status=status,
                latency_s=latency,
                retry_after_s=retry_after,
                error_kind=kind,
            )
            if ok or not router.should_fall_back(status, kind):
                break
            rest = router.fallbacks(cascade, current, error_kind=kind)
            assert all(t.region in allowed for t in rest)
            if not rest:
                break
            current = rest[0]
        assert tried <= len(cascade)
