"""The delivery queue on SQLite and PostgreSQL: two dispatchers (as two server processes)
share it without sending a message twice or out of order; dead letters step aside;
the backoff doubles within its jitter band. Real ledgers, a real loopback receiver."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from flowloom.auth.schema import make_engine
from flowloom.ledger.log import Ledger
from flowloom.outbound import OutboundGuard
from flowloom.services import open_store
from flowloom.webhooks.dispatcher import Dispatcher, DispatchSettings
from flowloom.webhooks.message import new_secret
from flowloom.webhooks.records import Subscription
from flowloom.webhooks.store import WebhookStore
from tests.server.support import LOOPBACK_ALLOW
from tests.support.ledgers import make_ledger
from tests.webhooks.receiver import Receiver

LOOPBACK = OutboundGuard(LOOPBACK_ALLOW)
"""The receiver listens on loopback: the dispatcher's guard must let it through."""


class _Ledgers:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def get(self, project: str) -> Ledger:
        assert project == self.ledger.log
        return self.ledger


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def _subscribe(store: WebhookStore, url: str, secret: str) -> Subscription:
    sub = Subscription(
        id="wh_test",
        project="proj",
        url=url,
        kinds=("agent.*",),
        description="",
        include_bodies=False,
        enabled=True,
        cursor=0,
        created_by="usr_test",
        created_at="2026-12-01T00:00:00.000000Z",
        updated_at="2026-12-01T00:00:00.000000Z",
    )
    store.add(sub, secret.encode())  # the vault is another test's business
    return sub


def _dispatcher(
    engine: Engine,
    ledger: Ledger,
    secret: str,
    clock: _Clock,
    outbound: OutboundGuard = LOOPBACK,
    **settings: float,
) -> Dispatcher:
    return Dispatcher(
        WebhookStore(engine),
        _Ledgers(ledger),
        secret_of=lambda _: secret,
        source_of=lambda project: f"https://flowloom.test/api/v1/projects/{project}",
        settings=DispatchSettings(poll_s=0.05, **settings),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
        outbound=outbound,
    )


def test_two_dispatchers_share_the_queue_in_order_once(
    db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    store = open_store(db_url)
    engines = [make_engine(db_url), make_engine(db_url)]
    clock = _Clock()
    secret = new_secret()
    ledger = make_ledger(store, tmp_path / "home")
    dispatchers = [_dispatcher(e, ledger, secret, clock) for e in engines]
    try:
        _subscribe(WebhookStore(engines[0]), receiver.url, secret)
        wanted = [
            ledger.record("agent.prompt", body=b"p", meta={"session": "s"}).index for _ in range(12)
        ]
        ledger.record("session.start", meta={"session": "s"})  # a kind not subscribed
        rounds = 0
        while len(receiver.received) < 12 and rounds < 50:
            dispatchers[rounds % 2].run_once()
            rounds += 1
        got = [p["data"]["index"] for p in receiver.verified(secret)]
        assert got == wanted
    finally:
        for d in dispatchers:
            d.close()
        for e in engines:
            e.dispose()
        store.close()


def test_a_dead_letter_steps_aside_and_later_messages_follow(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = str(tmp_path / "server.db")
    store = open_store(url)
    engine = make_engine(url)
    clock = _Clock()
    secret = new_secret()
    ledger = make_ledger(store, tmp_path / "home")
    dispatcher = _dispatcher(engine, ledger, secret, clock, max_attempts=2, backoff_base_s=10)
    try:
        sub = _subscribe(WebhookStore(engine), receiver.url, secret)
        first, second = (
            ledger.record("agent.prompt", body=b"p", meta={"session": "s"}).index for _ in range(2)
        )
        receiver.status = 503
        assert dispatcher.run_once() == 1  # the head failed; the second waits behind it
        assert dispatcher.run_once() == 0  # not due before its backoff
        clock.now += 10.0
        assert dispatcher.run_once() == 2  # second failure: dead, then the next is tried
        receiver.status = 200
        clock.now += 10.0
        dispatcher.run_once()
        [message] = receiver.verified(secret)
        assert message["data"]["index"] == second
        found = {d.ledger_index: d for d in WebhookStore(engine).deliveries("proj", sub.id)}
        assert found[first].status == "dead" and found[first].attempts == 2
        assert found[second].status == "delivered"
    finally:
        dispatcher.close()
        engine.dispose()
        store.close()


def test_backoff_doubles_within_its_jitter_band() -> None:
    settings = DispatchSettings(backoff_base_s=2, backoff_max_s=60)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (20, 60)):
        delays = [settings.backoff(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_an_internal_receiver_is_refused_at_send_time_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A subscription already stored (saved before the setting changed, or a name that
    rebinds) to a loopback receiver: the default guard refuses each attempt, naming the
    setting; once the operator allows it, the same message is delivered."""
    url = str(tmp_path / "server.db")
    store = open_store(url)
    engine = make_engine(url)
    clock = _Clock()
    secret = new_secret()
    ledger = make_ledger(store, tmp_path / "home")
    strict = _dispatcher(engine, ledger, secret, clock, OutboundGuard(), backoff_base_s=1)
    allowed = _dispatcher(engine, ledger, secret, clock)
    try:
        sub = _subscribe(WebhookStore(engine), receiver.url, secret)
        index = ledger.record("agent.prompt", body=b"p", meta={"session": "s"}).index
        assert strict.run_once() == 1
        [delivery] = WebhookStore(engine).deliveries("proj", sub.id)
        [attempt] = WebhookStore(engine).attempts([delivery.id])[delivery.id]
        assert attempt.status_code is None and "outbound_allow" in (attempt.error or "")
        assert receiver.received == []
        clock.now += 10.0
        allowed.run_once()
        assert [p["data"]["index"] for p in receiver.verified(secret)] == [index]
    finally:
        strict.close()
        allowed.close()
        engine.dispose()
        store.close()
