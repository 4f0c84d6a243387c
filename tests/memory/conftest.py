"""Fixtures: a ledger and its project memory over a real SQLite file or PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.ledger.log import Ledger
from flowloom.memory.service import Memory
from flowloom.store.interface import Store
from tests.support.ledgers import make_ledger


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db(request: pytest.FixtureRequest) -> Store:
    """The ledger's database: each test runs on SQLite and on PostgreSQL."""
    fixture = {"sqlite": "sqlite_store", "postgres": "pg_store"}[request.param]
    store: Store = request.getfixturevalue(fixture)
    return store


@pytest.fixture
def ledger(db: Store, tmp_path: Path) -> Ledger:
    return make_ledger(db, tmp_path / "keys")


@pytest.fixture
def memory(ledger: Ledger) -> Iterator[Memory]:
    mem = Memory(ledger)
    yield mem
    mem.close()
