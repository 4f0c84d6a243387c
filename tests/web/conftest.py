"""Fixtures for the web tests: a populated server over SQLite, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.support import World, live_server, make_world
from tests.web.support import Populated, populate


@pytest.fixture
def web_world(tmp_path: Path) -> Iterator[tuple[World, Populated]]:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    made = populate(world)
    yield world, made
    world.close()


@pytest.fixture
def web_url(web_world: tuple[World, Populated]) -> Iterator[str]:
    with live_server(web_world[0].server) as base:
        yield base
