"""Fixtures for every gateway test: the provider simulator on a free loopback port.

`mock_provider` yields a `MockServer` (flowloom.gateway.mock.server) whose state is fresh
for each test: `.url` is the base URL (point a provider's base_url or an SDK at it),
`.requests(path)` / `.last_request(path)` show exactly what arrived (headers, parsed body,
model, fault, status), `.add_fault(529, model="claude-*", times=1)`,
`.set_faults("429:0.5", seed=1)`, `.set_region("eu")`, `.set_latency(ms)`,
`.set_context_window(n)` and `.reset()`. One server runs per test session (cheap);
`mock_provider_factory` starts extra ones (e.g. two regions) that stop after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from flowloom.gateway.mock import MockConfig, MockServer, start_in_thread


@pytest.fixture(scope="session")
def _mock_provider_session() -> Iterator[MockServer]:
    server = start_in_thread(MockConfig())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mock_provider(_mock_provider_session: MockServer) -> Iterator[MockServer]:
    """The shared simulator, reset (no faults, empty request log) before and after the test."""
    _mock_provider_session.reset()
    yield _mock_provider_session
    _mock_provider_session.reset()


@pytest.fixture
def mock_provider_factory() -> Iterator[Callable[..., MockServer]]:
    """Start more simulators: factory(region="eu", faults="529:1", latency_ms=5, ...)."""
    started: list[MockServer] = []

    def start(**config: object) -> MockServer:
        server = start_in_thread(MockConfig(**config))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
