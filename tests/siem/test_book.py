"""The SIEM tables on SQLite and PostgreSQL: destinations, sealed secrets, cursors that
only move forward, and a forwarding pass over each database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowloom.auth.schema import make_engine
from flowloom.gateway.access.vault import ProviderKeyVault
from flowloom.outbound import OutboundGuard
from flowloom.services import open_store
from flowloom.siem.book import Destination, SiemBook
from flowloom.siem.service import Siem
from tests.server.support import LOOPBACK_ALLOW
from tests.siem.conftest import security_events
from tests.siem.standins import SplunkHec
from tests.support.ledgers import make_ledger


def test_cursors_only_move_forward_and_go_with_their_destination(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        book = SiemBook(engine)
        SiemBook(engine)  # a second process opening the same database: no new migration
        dest = Destination("alpha", "soc", "hec", "ocsf", "http://127.0.0.1:9", {"index": "x"})
        book.put(dest, b"sealed-1", keep_secret=False)
        book.put(dest, None, keep_secret=True)
        assert book.sealed("alpha", "soc") == b"sealed-1"
        assert [d.name for d in book.list("alpha")] == ["soc"] and book.list("beta") == []
        book.advance("alpha", "soc", "alpha", 10, 3)
        book.advance("alpha", "soc", "alpha", 4, 1)  # a late, stale writer: ignored
        book.failed("alpha", "soc", "alpha", "receiver down")
        [cursor] = book.cursors("alpha", "soc").values()
        assert (cursor.next_index, cursor.delivered, cursor.last_error) == (10, 3, "receiver down")
        book.advance("alpha", "soc", "alpha", 12, 2)
        [cursor] = book.cursors("alpha", "soc").values()
        assert (cursor.next_index, cursor.delivered, cursor.last_error) == (12, 5, None)
        assert book.delete("alpha", "soc") and book.cursors("alpha", "soc") == {}
        assert not book.delete("alpha", "soc")
    finally:
        engine.dispose()


def test_a_forwarding_pass_on_each_database(db_url: str, tmp_path: Path) -> None:
    hec = SplunkHec("t")
    hec.start()
    store = open_store(db_url)
    engine = make_engine(db_url)
    try:
        ledger = make_ledger(store, tmp_path / "home", log="alpha")
        wanted = security_events(ledger, "db")
        master = os.urandom(32)
        siem = Siem(
            SiemBook(engine),
            store,
            sealer=ProviderKeyVault(lambda: master),
            audit=lambda kind, project, meta: ledger.record(kind, meta=meta),
            instance_project="flowloom-instance",
            hostname="h",
            version="0.1.0",
            batch_size=2,
            outbound=OutboundGuard(LOOPBACK_ALLOW),
        )
        siem.configure("alpha", "soc", kind="hec", target=hec.url, secret="t")
        [result] = siem.forward("alpha")
        assert result.error is None
        got = [e["event"]["metadata"]["event_code"] for e in hec.events]
        assert got == [*wanted, "config.change"]
    finally:
        hec.stop()
        engine.dispose()
        store.close()


@pytest.mark.parametrize("bad", ["Soc", "", "a" * 70, "x/y"])
def test_bad_destination_names(bad: str, tmp_path: Path) -> None:
    from flowloom.errors import InputError

    store = open_store(str(tmp_path / "x.db"))
    engine = make_engine(str(tmp_path / "x.db"))
    try:
        siem = Siem(
            SiemBook(engine),
            store,
            sealer=ProviderKeyVault(lambda: b"k" * 32),
            audit=lambda kind, project, meta: None,
            instance_project="i",
            hostname="h",
            version="0",
            outbound=OutboundGuard(LOOPBACK_ALLOW),
        )
        with pytest.raises(InputError, match="not a destination name"):
            siem.configure("alpha", bad, kind="hec", target="http://h:1")
    finally:
        engine.dispose()
        store.close()
