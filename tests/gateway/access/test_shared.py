"""Limits and budgets shared by several Access instances over one database (as gateway
processes are): leases on the shared counters never grant a unit twice."""

from __future__ import annotations

import threading

import pytest

from flowloom.gateway.access import Access, BudgetExceededError, RateLimitedError, Usage
from flowloom.gateway.access.service import AccessSettings
from tests.gateway.access.conftest import FakeClock, OpenAccess


def _admitted(access: Access, key_secret: str, tries: int, tokens: int = 1) -> int:
    vkey = access.authenticate(key_secret)
    count = 0
    for _ in range(tries):
        try:
            access.admit(vkey, model="m", est_tokens=tokens)
        except RateLimitedError:
            continue
        count += 1
    return count


def test_two_processes_share_one_rpm(open_access: OpenAccess, clock: FakeClock) -> None:
    here, there = open_access(), open_access()
    key, secret = here.create_key(owner_user="alice", rpm=10)
    assert _admitted(here, secret, 6) == 6
    assert _admitted(there, secret, 6) == 4  # not 6: the other process used 6 of 10
    with pytest.raises(RateLimitedError) as info:
        here.admit(key, model="m", est_tokens=1)
    assert info.value.limit == "rpm" and 0 < info.value.retry_after_s <= 60
    clock.advance(60)
    assert _admitted(there, secret, 12) == 10


def test_leased_blocks_come_back_so_no_unit_is_lost(
    open_access: OpenAccess, clock: FakeClock
) -> None:
    """With a lease of 25 of 100, a process holding unused units gives them back at
    the end of its second; the other then gets the whole limit, and never more."""
    settings = AccessSettings(background=False, lease_fraction=0.25)
    here, there = open_access(settings=settings), open_access(settings=settings)
    _, secret = here.create_key(owner_user="alice", rpm=100)
    assert _admitted(here, secret, 1) == 1  # leases 25, uses 1
    assert _admitted(there, secret, 200) == 75  # 24 are held by `here`
    clock.advance(1.0)  # here's lease expires with its second
    here.flush()
    assert _admitted(there, secret, 200) == 24
    assert _admitted(here, secret, 10) == 0


def test_racing_processes_never_exceed_the_limit(open_access: OpenAccess) -> None:
    settings = AccessSettings(background=False, lease_fraction=0.1)
    processes = [open_access(settings=settings) for _ in range(3)]
    _, secret = processes[0].create_key(owner_user="alice", rpm=50, tpm=5_000)
    counts: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def hammer(access: Access) -> None:
        barrier.wait()
        got = _admitted(access, secret, 40, tokens=30)
        with lock:
            counts.append(got)

    threads = [threading.Thread(target=hammer, args=(p,)) for p in processes for _ in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 50  # 240 tried; the limit exactly, nothing lost to leases


def test_tpm_corrections_reach_the_other_process(open_access: OpenAccess) -> None:
    here, there = open_access(), open_access()
    key, secret = here.create_key(owner_user="alice", tpm=1000)
    first = here.admit(key, model="m", est_tokens=100)
    here.settle(first, provider="p", model="m", usage=Usage(600, 300))  # 800 more than said
    here.flush()  # the correction is counted at the next flush (within a second)
    far = there.authenticate(secret)
    with pytest.raises(RateLimitedError) as info:
        there.admit(far, model="m", est_tokens=200)
    assert info.value.limit == "tpm"
    there.admit(far, model="m", est_tokens=100)


def test_a_budget_is_shared_without_waiting_for_a_refresh(open_access: OpenAccess) -> None:
    here, there = open_access(), open_access()
    key, secret = here.create_key(owner_user="alice", budget_usd=5)
    far = there.authenticate(secret)
    # dollar-model: $1 per input token; each request estimates (and reserves) $1
    spent = 0
    for access, vkey in ((here, key), (there, far)) * 3:
        try:
            admission = access.admit(vkey, model="dollar-model", est_tokens=1)
        except BudgetExceededError:
            continue
        access.settle(admission, provider="testco", model="dollar-model", usage=Usage(1, 0))
        spent += 1
    assert spent == 5
    for access, vkey in ((here, key), (there, far)):
        with pytest.raises(BudgetExceededError) as info:
            access.admit(vkey, model="dollar-model", est_tokens=1)
        assert info.value.spent_usd == pytest.approx(5.0)


def test_a_refused_admission_gives_its_shared_units_back(
    open_access: OpenAccess, clock: FakeClock
) -> None:
    access = open_access()
    key, _ = access.create_key(owner_user="alice", rpm=3, budget_usd=0)
    for _ in range(5):  # rpm is taken first, then the budget refuses: rpm is given back
        with pytest.raises(BudgetExceededError):
            access.admit(key, model="dollar-model", est_tokens=1)
    clock.advance(1.0)  # the lease of this second holds the unit until its end
    access.flush()
    unbudgeted = open_access().set_budget(key.id, None)
    other = open_access()
    for _ in range(3):
        other.admit(unbudgeted, model="m", est_tokens=1)
    with pytest.raises(RateLimitedError):
        other.admit(unbudgeted, model="m", est_tokens=1)


def test_a_process_stopping_gives_its_leases_back(open_access: OpenAccess) -> None:
    settings = AccessSettings(background=False, lease_fraction=0.25)
    here, there = open_access(settings=settings), open_access(settings=settings)
    key, secret = here.create_key(owner_user="alice", rpm=100, budget_usd=100)
    here.admit(key, model="m", est_tokens=1)  # leases 25 requests and $25
    here.close()
    assert _admitted(there, secret, 200) == 99
