"""Shared fixtures of the compliance tests: the month of March built once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compliance.world import World, build_world


@pytest.fixture(scope="session")
def compliance_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The realistic history of tests/compliance/world.py (read it; do not append to it)."""
    built = build_world(tmp_path_factory.mktemp("compliance-world"))
    yield built
    built.close()
