"""SIEM test fixtures: a ledger database with projects' logs and a Siem over it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowloom.auth.schema import make_engine
from flowloom.gateway.access.vault import ProviderKeyVault
from flowloom.ledger.log import Ledger
from flowloom.outbound import OutboundGuard
from flowloom.siem.book import SiemBook
from flowloom.siem.service import Siem
from flowloom.store.sqlite import SQLiteStore
from tests.server.support import LOOPBACK_ALLOW
from tests.siem.rsyslog import Rsyslog
from tests.support.ledgers import make_ledger

INSTANCE = "flowloom-instance"


@dataclass
class Env:
    """One ledger database (several logs), its SIEM book and a key for sealing."""

    folder: Path
    store: SQLiteStore
    master: bytes = field(default_factory=lambda: os.urandom(32))
    ledgers: dict[str, Ledger] = field(default_factory=dict)

    def ledger(self, project: str) -> Ledger:
        if project not in self.ledgers:
            self.ledgers[project] = make_ledger(self.store, self.folder / "home", log=project)
        return self.ledgers[project]

    def audit(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        self.ledger(project or INSTANCE).record(kind, meta=meta)

    def siem(self, **kwargs: Any) -> Siem:
        """A new Siem over the same database: what a restarted process builds."""
        engine = make_engine(str(self.folder / "ledger.db"))
        return Siem(
            SiemBook(engine),
            self.store,
            sealer=ProviderKeyVault(lambda: self.master),
            audit=self.audit,
            instance_project=INSTANCE,
            hostname="flowloom.test",
            version="0.1.0",
            **{"outbound": OutboundGuard(LOOPBACK_ALLOW), **kwargs},
        )


def security_events(ledger: Ledger, tag: str) -> list[str]:
    """Record a mix of kinds in `ledger`; returns the kinds a SIEM must receive, in order."""
    actor = {"type": "human", "id": "u-ada", "name": "Ada Lovelace"}
    plan: list[tuple[str, dict[str, Any], bool]] = [
        ("auth.login", {"user_id": "u-ada", "method": "password"}, True),
        ("agent.prompt", {}, False),
        ("auth.login_failed", {"email": "eve@example.org", "reason": "bad password"}, True),
        ("auth.role_granted", {"user_id": "u-bob", "role": "admin"}, True),
        ("decision.record", {}, False),
        ("override.grant", {"reason": f"hotfix {tag}"}, True),
        ("capture.error", {"error": "hook failed"}, True),
        ("key.rotated", {}, True),
        ("auth.signature_failed", {"reason": "wrong password at signing"}, True),
    ]
    wanted = []
    for kind, refs, selected in plan:
        ledger.record(kind, meta={"actor": actor, "subject": tag, "refs": refs})
        if selected:
            wanted.append(kind)
    return wanted


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("siem")
    store = SQLiteStore(folder / "ledger.db")
    env = Env(folder, store)
    try:
        yield env
    finally:
        for ledger in env.ledgers.values():
            ledger.writer.close()
        store.close()


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
