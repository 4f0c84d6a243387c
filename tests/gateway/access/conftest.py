"""Fixtures for the gateway access tests: each database test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from tests.support.audit import AuditLog as AuditLog  # re-exported for the tests

MASTER_KEY = bytes(range(32))
START = datetime(2025, 1, 31, 23, 0, tzinfo=UTC).timestamp()

# models with round prices so budget arithmetic is plain: dollar-model costs $1 per
# input token and $2 per output token; tenth-model $0.10 per token
TEST_PRICES: Mapping[str, Any] = {
    "testco": {
        "dollar-model": {
            "input": 1_000_000.0,
            "output": 2_000_000.0,
            "cache_read": 100_000.0,
            "cache_write": 1_250_000.0,
        },
        "tenth-model": {"input": 100_000.0, "output": 100_000.0},
    }
}


@dataclass
class FakeClock:
    """POSIX seconds the test moves by hand."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def database(db_url: str) -> str:
    return db_url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog()


OpenAccess = Callable[..., Access]


@pytest.fixture
def open_access(database: str, clock: FakeClock, audit: AuditLog) -> Iterator[OpenAccess]:
    """Opens Access instances on the test database (each like one gateway process)."""
    opened: list[Access] = []

    def make(**overrides: Any) -> Access:
        settings = overrides.pop("settings", AccessSettings(background=False))
        access = Access(
            overrides.pop("database", database),
            master_key_loader=overrides.pop("master_key_loader", lambda: MASTER_KEY),
            clock=overrides.pop("clock", clock),
            audit=overrides.pop("audit", audit),
            prices=overrides.pop("prices", TEST_PRICES),
            settings=settings,
            **overrides,
        )
        opened.append(access)
        return access

    yield make
    for access in opened:
        access.close()


@pytest.fixture
def access(open_access: OpenAccess) -> Access:
    return open_access()
