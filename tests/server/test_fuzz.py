"""The API fuzzed from its own OpenAPI description (schemathesis): no 5xx, ever.

Every operation gets generated requests, valid and invalid, as the instance owner, whose
key may do everything, so requests reach the handlers rather than stopping at
authorization. Responses must not be server errors and must match the documented
status codes, content types and schemas. Bounded: a few examples per operation and
mode, derandomized, no example database, so the run takes well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from flowloom.server.app import create_app
from tests.server.support import World, make_world

EXAMPLES = 6


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    world = make_world(str(tmp / "server.db"), tmp / "home")
    world.server.ledger("alpha").record("agent.prompt", body=b"fuzz me")
    _no_code_hosts(world)
    yield world
    world.close()


def _no_code_hosts(world: World) -> None:
    """Generated integration settings name any API URL: calls to code hosts go nowhere."""
    from flowloom.integrations.delivery import HostClients
    from flowloom.integrations.service import Integrations

    assert world.server.integrations is not None
    world.server.integrations.close()
    refuse = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    store = world.server.integrations.store
    world.server.integrations = Integrations(store, HostClients(refuse), world.server.audit)
    world.server.closers.append(refuse.close)


def test_api_fuzz(fuzz_world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_world.server))
    headers = fuzz_world.headers("instance_owner")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        raw = operation.definition.raw
        # Invalid input exists only where there is a body or a constrained query.
        negatable = "requestBody" in raw or any(
            p.get("in") == "query" for p in raw.get("parameters", [])
        )
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=checks)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing invalid can be generated for this operation in this mode
            except Exception as exc:
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert operations > 20
    assert not failures, "\n\n".join(failures)
