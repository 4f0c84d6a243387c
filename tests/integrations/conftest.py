"""Fixtures for the integration tests: a real store on SQLite, sealed by the real vault."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.schema import make_engine
from flowloom.gateway.access.vault import ProviderKeyVault
from flowloom.integrations.delivery import HostClients
from flowloom.integrations.service import Integrations
from flowloom.integrations.store import IntegrationStore
from flowloom.outbound import OutboundGuard
from tests.server.support import LOOPBACK_ALLOW

MASTER = bytes(range(32))
LOOPBACK = OutboundGuard(LOOPBACK_ALLOW)
"""The stand-ins listen on loopback: the guard must let the server reach them."""


class Recorded:
    """An audit callback that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, Mapping[str, Any]]] = []
        self.fail_next = False
        """Raise once, as a ledger that cannot be written would."""

    def __call__(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("the ledger cannot be written")
        self.events.append((kind, project, meta))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


class Opened:
    """Integrations over one database file; `reopen()` is a server restart."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.audit = Recorded()
        self.http = httpx.Client(timeout=10)
        self._open()

    def _open(self) -> None:
        self.engine = make_engine(str(self.path))
        store = IntegrationStore(self.engine, ProviderKeyVault(lambda: MASTER))
        self.integrations = Integrations(
            store, HostClients(self.http), self.audit, outbound=LOOPBACK
        )

    def reopen(self) -> None:
        self.close_db()
        self.http = httpx.Client(timeout=10)
        self._open()

    def close_db(self) -> None:
        self.integrations.close()
        self.engine.dispose()
        self.http.close()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened]:
    found = Opened(tmp_path / "server.db")
    yield found
    found.close_db()


@pytest.fixture
def opened_pg(pg_url: str) -> Iterator[Opened]:
    found = Opened(pg_url)
    yield found
    found.close_db()
