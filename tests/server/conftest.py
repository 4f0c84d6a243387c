"""Fixtures for the server tests: a populated server over SQLite, or over PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.support import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    yield built
    built.close()


@pytest.fixture
def pg_world(pg_url: str, tmp_path: Path) -> Iterator[World]:
    built = make_world(pg_url, tmp_path / "home")
    yield built
    built.close()
