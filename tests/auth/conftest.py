"""Fixtures for the directory tests: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher

from flowloom.auth.directory import Directory
from flowloom.auth.sessions import SessionPolicy
from flowloom.auth.throttle import ThrottlePolicy
from tests.support.audit import AuditLog as AuditLog  # re-exported for the tests


def fast_hasher() -> PasswordHasher:
    """argon2id with a tiny cost, so tests do not spend seconds hashing."""
    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 22, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog()


DirectoryFactory = Callable[..., Directory]


@pytest.fixture
def make_directory(db_url: str, clock: FakeClock, audit: AuditLog) -> Iterator[DirectoryFactory]:
    """Open Directories on the test database (several may share it)."""
    opened: list[Directory] = []

    def make(**overrides: Any) -> Directory:
        options: dict[str, Any] = {
            "audit": audit,
            "clock": clock,
            "password_hasher": fast_hasher(),
            "throttle": ThrottlePolicy(),
            "sessions": SessionPolicy(),
        }
        options.update(overrides)
        directory = Directory(options.pop("database", db_url), **options)
        opened.append(directory)
        return directory

    yield make
    for directory in opened:
        directory.close()


@pytest.fixture
def directory(make_directory: DirectoryFactory) -> Directory:
    return make_directory()


PASSWORD = "correct horse battery staple"
