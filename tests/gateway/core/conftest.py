"""Fixtures for the gateway core: a gateway in front of the shared provider simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.gateway.mock import MockServer
from flowloom.gateway.providers.interface import ProviderConfig
from tests.gateway.core.harness import RunningGateway, running


def mock_config(
    mock: MockServer, kind: str = "anthropic", name: str | None = None
) -> ProviderConfig:
    base = mock.url + "/v1" if kind in ("openai", "openai_compatible") else mock.url
    return ProviderConfig(
        name=name or kind,
        kind=kind,
        base_url=base,
        api_key_ref=None,  # type: ignore[arg-type]
        timeout_s=30,
        first_byte_timeout_s=10,
    )


@pytest.fixture
def anthropic_gw(tmp_path: Path, mock_provider: MockServer) -> Iterator[RunningGateway]:
    yield from running(tmp_path, provider=mock_config(mock_provider, "anthropic"))


@pytest.fixture
def openai_gw(tmp_path: Path, mock_provider: MockServer) -> Iterator[RunningGateway]:
    yield from running(tmp_path, provider=mock_config(mock_provider, "openai"))


@pytest.fixture
def gemini_gw(tmp_path: Path, mock_provider: MockServer) -> Iterator[RunningGateway]:
    yield from running(tmp_path, provider=mock_config(mock_provider, "gemini"))
