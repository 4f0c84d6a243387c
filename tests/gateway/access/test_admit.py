"""Admission: model allow-lists, rpm/tpm sliding windows, budgets per period, spend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from flowloom.errors import PermissionDeniedError
from flowloom.gateway.access import (
    Access,
    Admission,
    BudgetExceededError,
    RateLimitedError,
    Usage,
)
from flowloom.gateway.access.service import AccessSettings
from tests.gateway.access.conftest import FakeClock, OpenAccess


def test_model_allow_list_globs(access: Access) -> None:
    key, _ = access.create_key(owner_user="alice", models=["claude-*", "gpt-4o"])
    access.admit(key, model="claude-sonnet-4-5", est_tokens=10)
    access.admit(key, model="gpt-4o", est_tokens=10)
    with pytest.raises(PermissionDeniedError) as info:
        access.admit(key, model="gpt-4o-mini", est_tokens=10)
    assert "gpt-4o-mini" in info.value.message
    open_key, _ = access.create_key(owner_user="bob")
    access.admit(open_key, model="anything-at-all", est_tokens=10)


def test_rpm_sliding_window_and_retry_after(access: Access, clock: FakeClock) -> None:
    key, _ = access.create_key(owner_user="alice", rpm=3)
    access.admit(key, model="m", est_tokens=1)  # t=0
    clock.advance(10)
    access.admit(key, model="m", est_tokens=1)  # t=10
    clock.advance(20)
    access.admit(key, model="m", est_tokens=1)  # t=30
    with pytest.raises(RateLimitedError) as info:
        access.admit(key, model="m", est_tokens=1)
    assert info.value.retry_after_s == pytest.approx(30.0)  # the t=0 request leaves at 60
    assert info.value.limit == "rpm" and info.value.http_status == 429
    clock.advance(29.5)
    with pytest.raises(RateLimitedError) as info:
        access.admit(key, model="m", est_tokens=1)
    assert info.value.retry_after_s == pytest.approx(0.5)
    clock.advance(0.5)
    access.admit(key, model="m", est_tokens=1)  # t=60: one slot is free again
    with pytest.raises(RateLimitedError) as info:
        access.admit(key, model="m", est_tokens=1)
    assert info.value.retry_after_s == pytest.approx(10.0)


def test_refused_requests_are_not_counted(access: Access, clock: FakeClock) -> None:
    key, _ = access.create_key(owner_user="alice", rpm=1)
    access.admit(key, model="m", est_tokens=1)
    for _ in range(5):
        with pytest.raises(RateLimitedError):
            access.admit(key, model="m", est_tokens=1)
    clock.advance(60)
    access.admit(key, model="m", est_tokens=1)


def test_tpm_counts_estimates_then_actual_usage(access: Access, clock: FakeClock) -> None:
    key, _ = access.create_key(owner_user="alice", tpm=1000)
    first = access.admit(key, model="m", est_tokens=400)
    clock.advance(5)
    second = access.admit(key, model="m", est_tokens=400)
    with pytest.raises(RateLimitedError) as info:
        access.admit(key, model="m", est_tokens=400)
    assert info.value.limit == "tpm"
    assert info.value.retry_after_s == pytest.approx(55.0)  # when the first 400 leave
    # the first request really used 100 tokens: 300 come back at once
    access.settle(first, provider="p", model="m", usage=Usage(60, 40))
    third = access.admit(key, model="m", est_tokens=400)
    # the second used 700: the window is now 100 + 700 + 400 = 1200 > 1000
    access.settle(second, provider="p", model="m", usage=Usage(500, 200))
    with pytest.raises(RateLimitedError) as info:
        access.admit(key, model="m", est_tokens=1)
    # 1200 + 1 - 1000 = 201 must leave: the first slot (100) at 60, then the second (1100)
    assert info.value.retry_after_s == pytest.approx(60.0)
    access.release(third)
    access.admit(key, model="m", est_tokens=1)


def test_a_request_larger_than_tpm_passes_only_on_an_empty_window(
    access: Access, clock: FakeClock
) -> None:
    key, _ = access.create_key(owner_user="alice", tpm=100)
    access.admit(key, model="m", est_tokens=5000)
    with pytest.raises(RateLimitedError):
        access.admit(key, model="m", est_tokens=1)
    clock.advance(60)
    access.admit(key, model="m", est_tokens=1)


def test_limits_are_per_key(access: Access) -> None:
    a, _ = access.create_key(owner_user="alice", rpm=1)
    b, _ = access.create_key(owner_user="bob", rpm=1)
    access.admit(a, model="m", est_tokens=1)
    access.admit(b, model="m", est_tokens=1)
    with pytest.raises(RateLimitedError):
        access.admit(a, model="m", est_tokens=1)


def _spend(access: Access, key_admit: Admission, dollars: int) -> None:
    access.settle(key_admit, provider="testco", model="dollar-model", usage=Usage(dollars, 0))


def test_budget_per_day_with_rollover(access: Access, clock: FakeClock) -> None:
    # START is 2025-01-31 23:00 UTC
    key, _ = access.create_key(owner_user="alice", budget_usd=3, period="day")
    _spend(access, access.admit(key, model="dollar-model", est_tokens=0), 2)
    _spend(access, access.admit(key, model="dollar-model", est_tokens=0), 2)
    with pytest.raises(BudgetExceededError) as info:
        access.admit(key, model="dollar-model", est_tokens=0)
    assert info.value.http_status == 429 and info.value.scope == "key"
    assert info.value.spent_usd == pytest.approx(4.0) and info.value.budget_usd == 3.0
    assert info.value.retry_after_s == pytest.approx(3600.0)  # until midnight UTC
    assert "daily budget" in info.value.message
    clock.advance(3600)  # 2025-02-01 00:00: a new day, a new budget
    _spend(access, access.admit(key, model="dollar-model", est_tokens=0), 3)
    with pytest.raises(BudgetExceededError):
        access.admit(key, model="dollar-model", est_tokens=0)
    by_day = {row.group: row.cost_usd for row in access.usage(by="day")}
    assert by_day == {"2025-01-31": pytest.approx(4.0), "2025-02-01": pytest.approx(3.0)}


def test_budget_per_month_survives_a_restart(open_access: OpenAccess, clock: FakeClock) -> None:
    first = open_access()
    key, secret = first.create_key(owner_user="alice", budget_usd=10, period="month")
    _spend(first, first.admit(key, model="dollar-model", est_tokens=0), 6)
    first.close()  # a clean shutdown writes the pending spend
    clock.advance(2 * 86_400)  # still January? no: 2025-02-02 — a new month
    second = open_access()
    vkey = second.authenticate(secret)
    _spend(second, second.admit(vkey, model="dollar-model", est_tokens=0), 6)
    _spend(second, second.admit(vkey, model="dollar-model", est_tokens=0), 3)
    second.close()
    third = open_access()  # restarted in the same month: sees $9 spent of $10
    vkey = third.authenticate(secret)
    _spend(third, third.admit(vkey, model="dollar-model", est_tokens=0), 1)
    with pytest.raises(BudgetExceededError) as info:
        third.admit(vkey, model="dollar-model", est_tokens=0)
    assert info.value.spent_usd == pytest.approx(10.0)
    assert "monthly budget" in info.value.message
    feb_end = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    assert info.value.retry_after_s == pytest.approx(feb_end - clock.now)


def test_other_processes_spend_is_seen_after_refresh(
    open_access: OpenAccess, clock: FakeClock
) -> None:
    here, there = open_access(), open_access()
    key, secret = here.create_key(owner_user="alice", budget_usd=5)
    here.admit(key, model="dollar-model", est_tokens=0)  # loads the (empty) spend
    far = there.authenticate(secret)
    _spend(there, there.admit(far, model="dollar-model", est_tokens=0), 5)
    there.flush()
    here.admit(key, model="dollar-model", est_tokens=0)  # not seen yet: within the bound
    here.refresh()
    with pytest.raises(BudgetExceededError):
        here.admit(key, model="dollar-model", est_tokens=0)


def test_project_budget_covers_all_its_keys(access: Access) -> None:
    access.set_project_budget("acme", 5, period="month")
    a, _ = access.create_key(owner_user="alice", project="acme")
    b, _ = access.create_key(owner_team="ops", project="acme")
    other, _ = access.create_key(owner_user="carol", project="elsewhere")
    _spend(access, access.admit(a, model="dollar-model", est_tokens=0), 3)
    _spend(access, access.admit(b, model="dollar-model", est_tokens=0), 2)
    with pytest.raises(BudgetExceededError) as info:
        access.admit(a, model="dollar-model", est_tokens=0)
    assert info.value.scope == "project" and "project acme" in info.value.message
    access.admit(other, model="dollar-model", est_tokens=0)
    access.set_project_budget("acme", None)
    access.admit(a, model="dollar-model", est_tokens=0)


def test_concurrent_admits_overspend_by_less_than_one_request(access: Access) -> None:
    """Each request reserves its estimate: 20 racing requests of $0.30 against $1.00."""
    key, _ = access.create_key(owner_user="alice", budget_usd=1.0)
    # tenth-model: $0.10 per token, so an estimate of 3 tokens reserves $0.30
    admitted: list[Admission] = []
    refused: list[BudgetExceededError] = []
    barrier = threading.Barrier(20)
    lock = threading.Lock()

    def racer() -> None:
        barrier.wait()
        try:
            adm = access.admit(key, model="tenth-model", est_tokens=3)
        except BudgetExceededError as exc:
            with lock:
                refused.append(exc)
            return
        with lock:
            admitted.append(adm)

    threads = [threading.Thread(target=racer) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 4 and len(refused) == 16  # 0 + .3 + .3 + .3 = .9 < 1.0
    for adm in admitted:
        access.settle(adm, provider="testco", model="tenth-model", usage=Usage(3, 0))
    spent = sum(row.cost_usd for row in access.usage(by="key"))
    assert spent == pytest.approx(1.2)
    assert spent - 1.0 < 0.3 + 1e-9  # the documented bound: under one request's cost


def test_spend_is_recorded_per_key_project_model_day(access: Access) -> None:
    a, _ = access.create_key(owner_user="alice", project="acme")
    b, _ = access.create_key(owner_user="bob")
    for key, model in ((a, "claude-sonnet-4-5"), (a, "gpt-4o"), (b, "gpt-4o"), (a, "gpt-4o")):
        adm = access.admit(key, model=model, est_tokens=10)
        provider = "anthropic" if model.startswith("claude") else "openai"
        access.settle(adm, provider=provider, model=model, usage=Usage(1000, 100, 0, 0))
    by_model = {r.group: (r.requests, r.input_tokens) for r in access.usage(by="model")}
    assert by_model == {"claude-sonnet-4-5": (1, 1000), "gpt-4o": (3, 3000)}
    by_key = {r.group: r.requests for r in access.usage(by="key")}
    assert by_key == {a.id: 3, b.id: 1}
    assert {r.group for r in access.usage(by="project")} == {"", "acme"}
    assert [r.requests for r in access.usage(by="model", project="acme")] == [1, 2]
    assert [r.requests for r in access.usage(by="model", key=b.prefix)] == [1]
    gpt = next(r for r in access.usage(by="model") if r.group == "gpt-4o")
    assert gpt.cost_usd == pytest.approx(3 * (1000 * 2.5 + 100 * 10.0) / 1e6)


def test_the_writer_thread_flushes_and_close_loses_nothing(
    open_access: OpenAccess, database: str
) -> None:
    settings = AccessSettings(flush_interval_s=0.05, refresh_interval_s=0.1)
    access = open_access(settings=settings)
    key, _ = access.create_key(owner_user="alice")
    for _ in range(50):
        adm = access.admit(key, model="gpt-4o", est_tokens=1)
        access.settle(adm, provider="openai", model="gpt-4o", usage=Usage(1, 1))
    access.close()
    reader = open_access()
    assert [r.requests for r in reader.usage(by="key")] == [50]
