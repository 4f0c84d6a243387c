"""Database URLs are read one way by every component that opens a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings
from flowloom.store.sqlite import SQLiteStore
from flowloom.store.urls import sqlite_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("ledger.db", "ledger.db"),
        ("sqlite:///ledger.db", "ledger.db"),
        ("sqlite:////srv/ledger.db", "/srv/ledger.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("postgresql://root@127.0.0.1/test", None),
        ("postgres://root@127.0.0.1/test", None),
    ],
)
def test_sqlite_path(url: str, path: str | None) -> None:
    assert sqlite_path(url) == path


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="mysql"):
        sqlite_path("mysql://db/x")


def test_the_server_keeps_ledger_and_directory_in_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = ServerSettings(database="sqlite:///one.db", home=tmp_path / "home")
    server = build_server(settings)
    try:
        server.directory.create_project("alpha")
        ledger = server.ledger("alpha")
        index = ledger.record("agent.prompt", body=b"hello").index
    finally:
        server.close()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["one.db"]
    store = SQLiteStore(str(tmp_path / "one.db"))
    try:
        assert store.size(ledger.log) == index + 1  # the ledger is in it too
    finally:
        store.close()
