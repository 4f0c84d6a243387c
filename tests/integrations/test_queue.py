"""The outbound queue on PostgreSQL (two processes, one delivery each), and the server's
worker sending a queued verdict by itself."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx

from flowloom.gateway.access.vault import ProviderKeyVault
from flowloom.integrations.delivery import HostClients
from flowloom.integrations.publish import Target
from flowloom.integrations.service import Integrations
from flowloom.integrations.store import IntegrationStore
from tests.integrations.conftest import LOOPBACK, MASTER, Opened, Recorded
from tests.integrations.standin import Call, GitHubStandIn, Reply
from tests.integrations.test_github import DECISIONS, HUMAN, REPO, SHA, verdict


def test_two_servers_on_postgresql_send_each_call_once(opened_pg: Opened) -> None:
    standin = GitHubStandIn(tokens=("ghs_pg",)).start()
    try:
        first = opened_pg.integrations
        first.configure(
            "alpha",
            "github",
            {"repo": REPO, "api_url": standin.url},
            {"token": "ghs_pg"},
            actor=HUMAN,
        )
        # A second server process over the same database.
        other = Integrations(
            IntegrationStore(opened_pg.engine, ProviderKeyVault(lambda: MASTER)),
            HostClients(opened_pg.http),
            Recorded(),
            outbound=LOOPBACK,
        )
        ids = first.publish("alpha", "github", verdict(False), Target(SHA, 9), DECISIONS)
        due = first.store.due(datetime.now(UTC))
        assert [i.id for i in due] == ids
        assert other.store.claim(due[0], datetime.now(UTC) + timedelta(minutes=5))
        assert not first.store.claim(due[0], datetime.now(UTC) + timedelta(minutes=5))
        run = first.deliver_due()
        assert run.delivered == []  # the lane is the other process's while it holds item 1
        later = datetime.now(UTC) + timedelta(minutes=6)  # that process died: the claim lapsed
        assert first.deliver_due(later).delivered == ids
        assert other.deliver_due(later).delivered == []
        assert len(standin.check_runs) == 1 and len(standin.comments) == 1
    finally:
        standin.stop()


class _Signalling(GitHubStandIn):
    """Sets `statused` when the commit status (the last call of a verdict) arrives."""

    def __init__(self) -> None:
        super().__init__(tokens=("ghs_w",))
        self.statused = threading.Event()

    def answer(self, call: Call) -> Reply:
        reply = super().answer(call)
        if "/statuses/" in call.path:
            self.statused.set()
        return reply


def test_the_worker_sends_a_queued_verdict_by_itself(opened: Opened) -> None:
    standin = _Signalling().start()
    http = httpx.Client(timeout=10)
    store = IntegrationStore(opened.engine, ProviderKeyVault(lambda: MASTER))
    service = Integrations(store, HostClients(http), Recorded(), worker=True, outbound=LOOPBACK)
    try:
        service.configure(
            "alpha",
            "github",
            {"repo": REPO, "api_url": standin.url},
            {"token": "ghs_w"},
            actor=HUMAN,
        )
        service.publish("alpha", "github", verdict(True), Target(SHA, 4), DECISIONS)
        assert standin.statused.wait(60), "the worker sent nothing"
    finally:
        service.close()
        http.close()
        standin.stop()
    assert {i.state for i in store.items("alpha")} == {"delivered"}
