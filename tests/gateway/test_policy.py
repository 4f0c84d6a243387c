"""Must hold: fallback, residency, rate limits and budgets, tested with injected faults.

End to end over real parts: the official SDKs talk HTTP to a gateway under uvicorn that
routes with the real Router (a TOML file, a clock the test moves), admits with the real
Access (virtual keys in SQLite) and records into a real SQLite ledger; the upstream is the
provider simulator, told which calls to fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.gateway.access import Access
from flowloom.gateway.app import Gateway, GatewaySettings
from flowloom.gateway.mock import MockServer
from flowloom.gateway.recorder import ObserveHook, Recorder
from flowloom.gateway.routing import Router
from flowloom.gateway.settlement import Settlement
from tests.gateway.core.harness import LedgerSwitch, RunningGateway, start_gateway

CONFIG = """
[router]
max_attempts = 3

[providers.primary]
kind = "anthropic"
base_url = "{url}"
region = "us"
first_byte_timeout_s = 0.5

[providers.eu]
kind = "anthropic"
base_url = "{url}"
region = "eu"

[providers.backup]
kind = "openai"
base_url = "{url}/v1"
region = "us"

[models.claude]
targets = [
  {{ provider = "primary", model = "claude-primary", context_window = 200000 }},
  {{ provider = "eu", model = "claude-eu", context_window = 1000000 }},
  {{ provider = "backup", model = "gpt-backup" }},
]

[models."us-only"]
targets = [{{ provider = "primary", model = "claude-primary" }}]

[projects."eu-only"]
residency = ["eu"]
"""

# Dear enough that one short exchange spends more than the budget below.
PRICES = {
    "primary": {"claude-primary": {"input": 1000.0, "output": 1000.0}},
    "eu": {"claude-eu": {"input": 1000.0, "output": 1000.0}},
    "backup": {"gpt-backup": {"input": 1000.0, "output": 1000.0}},
}


class Clock:
    """The router's monotonic clock, moved by the test (retry-after, breakers)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    run: RunningGateway
    access: Access
    mock: MockServer
    clock: Clock

    def key(self, project: str = "acme", **limits: Any) -> str:
        return self.access.create_key(name="test", project=project, **limits)[1]

    def upstream(self) -> list[tuple[str, int]]:
        """(model, status) of every call the simulator received, in order."""
        return [(r["model"], r["status"]) for r in self.mock.requests() if r["model"]]

    def exchanges(self, project: str) -> list[dict[str, Any]]:
        return self.run.events(project)


def start(tmp_path: Path, mock: MockServer, observe: ObserveHook | None = None) -> World:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=mock.url))
    clock = Clock()
    ledgers = LedgerSwitch(tmp_path / "ledger.db", tmp_path / "home")
    access = Access(
        str(tmp_path / "access.db"), master_key_loader=ledgers.keys.master_key, prices=PRICES
    )
    recorder = Recorder(
        ledgers.get,
        default_project="gw",
        retry_interval_s=0.1,
        observe=observe,
        settle=Settlement(access),
    )
    gateway = Gateway(
        router=Router(config, clock=clock),
        access=access,
        recorder=recorder,
        settings=GatewaySettings(default_project="gw", reload_interval_s=0),
    )
    return World(start_gateway(gateway, ledgers), access, mock, clock)


@pytest.fixture
def world(tmp_path: Path, mock_provider: MockServer) -> Iterator[World]:
    world = start(tmp_path, mock_provider)
    try:
        yield world
    finally:
        world.run.stop()
        world.access.close()
        world.run.ledgers.close()


def anthropic_client(world: World, secret: str) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=world.run.url, api_key=secret, max_retries=0)


def ask(client: Any, model: str = "claude", **kwargs: Any) -> Any:
    return client.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], **kwargs
    )


def test_fallback_crosses_providers_and_formats_on_overload(world: World) -> None:
    client = anthropic_client(world, world.key())
    world.mock.add_fault(529, model="claude-primary", times=1, retry_after=0)
    world.mock.add_fault(500, model="claude-eu", times=1)
    message = ask(client)
    # Served by the OpenAI-format backup, translated back into an Anthropic message.
    assert message.type == "message" and message.content[0].text
    assert world.upstream() == [("claude-primary", 529), ("claude-eu", 500), ("gpt-backup", 200)]
    event = world.exchanges("acme")[-1]
    refs = event["refs"]
    assert refs["provider"] == "backup" and refs["upstream_format"] == "openai"
    assert [a["provider"] for a in refs["fallback"]][:2] == ["primary", "eu"]
    assert [a["status"] for a in refs["fallback"]][:2] == [529, 500]
    # Where the data went: each provider's configured region (GDPR Art. 44-49 evidence).
    assert refs["region"] == "us"
    assert [a["region"] for a in refs["fallback"]] == ["us", "eu", "us"]

    # A stream falls back the same way, before its first byte reaches the caller.
    world.mock.reset()
    world.mock.add_fault(503, model="claude-primary", times=1, retry_after=0)
    with client.messages.stream(
        model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text
    assert world.upstream() == [("claude-primary", 503), ("claude-eu", 200)]
    assert world.exchanges("acme")[-1]["refs"]["provider"] == "eu"


def test_retry_after_keeps_a_provider_out_until_it_passes(world: World) -> None:
    client = anthropic_client(world, world.key())
    world.mock.add_fault(429, model="claude-primary", times=1, retry_after=30)
    ask(client)
    ask(client)
    # The second call did not knock on the resting provider's door.
    assert world.upstream() == [("claude-primary", 429), ("claude-eu", 200), ("claude-eu", 200)]
    world.clock.now += 31
    ask(client)
    assert world.upstream()[-1] == ("claude-primary", 200)


def test_timeouts_and_context_window_errors_fall_back(world: World) -> None:
    import anthropic

    client = anthropic_client(world, world.key())
    world.mock.add_fault("context", model="claude-primary", times=1)
    ask(client)
    # Only a target with a larger window is worth trying after a context-window error.
    assert world.upstream() == [("claude-primary", 400), ("claude-eu", 200)]

    world.mock.reset()
    world.mock.add_fault("context", model="claude-primary", times=1)
    world.mock.add_fault("context", model="claude-eu", times=1)
    with pytest.raises(anthropic.BadRequestError):
        ask(client)
    assert [m for m, _ in world.upstream()] == ["claude-primary", "claude-eu"]

    # No first token within the provider's first_byte_timeout_s (0.5 s): the next target.
    world.mock.reset()
    world.mock.add_fault("slow_first", model="claude-primary", times=1, ms=3000)
    message = ask(client)
    assert message.content[0].text
    assert world.upstream()[-1] == ("claude-eu", 200)
    fallback = world.exchanges("acme")[-1]["refs"]["fallback"]
    assert fallback[0]["provider"] == "primary"
    assert fallback[0]["error_kind"] in ("first_byte_timeout", "timeout")


def test_when_every_target_fails_the_caller_gets_the_last_failure(world: World) -> None:
    import anthropic

    client = anthropic_client(world, world.key())
    for model in ("claude-primary", "claude-eu", "gpt-backup"):
        world.mock.add_fault(500, model=model, times=1)
    with pytest.raises(anthropic.InternalServerError):
        ask(client)
    assert [s for _, s in world.upstream()] == [500, 500, 500]
    event = world.exchanges("acme")[-1]
    assert event["refs"]["status"] == 500 and len(event["refs"]["fallback"]) == 3


def test_residency_is_never_violated_not_even_by_a_fallback(world: World) -> None:
    import anthropic

    client = anthropic_client(world, world.key(project="eu-only"))
    ask(client)
    assert world.upstream() == [("claude-eu", 200)]

    # The EU target fails: the US targets would answer, but may not be asked.
    world.mock.reset()
    world.mock.add_fault(529, model="claude-eu", times=5, retry_after=0)
    with pytest.raises(anthropic.APIStatusError) as failed:
        ask(client)
    assert failed.value.status_code in (503, 529)
    assert {model for model, _ in world.upstream()} == {"claude-eu"}

    # A model served only outside the project's regions is refused outright.
    world.mock.reset()
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        ask(client, model="us-only")
    assert "region allowed for project 'eu-only'" in str(refused.value)
    assert world.upstream() == []


def test_requests_per_minute_limit_answers_429_in_the_callers_format(world: World) -> None:
    import openai

    secret = world.key(rpm=2)
    client = openai.OpenAI(base_url=world.run.url + "/v1", api_key=secret, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.body["message"]  # type: ignore[index]
    assert len(world.upstream()) == 2, "a refused call reached the provider"


def test_a_fallback_uses_no_more_of_the_callers_rate_limit(world: World) -> None:
    """rpm counts the caller's requests: one that falls back twice is still one."""
    client = anthropic_client(world, world.key(rpm=2))
    world.mock.add_fault(529, model="claude-primary", times=1, retry_after=0)
    world.mock.add_fault(500, model="claude-eu", times=1)
    assert ask(client).content[0].text  # served by the third target
    assert ask(client).content[0].text  # the second request of two is still allowed
    import anthropic

    with pytest.raises(anthropic.RateLimitError):
        ask(client)


def test_count_tokens_honours_the_keys_allow_list_and_rate_limit(world: World) -> None:
    import anthropic

    def count(secret: str, model: str = "claude") -> Any:
        return anthropic_client(world, secret).messages.count_tokens(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )

    with pytest.raises(anthropic.PermissionDeniedError):
        count(world.key(models=["other-*"]))
    # allowed only the OpenAI-format target: the Anthropic ones are not asked to count
    assert count(world.key(models=["gpt-*"])).input_tokens > 0
    assert world.upstream() == [], "a count went to a target the key may not use"
    limited = world.key(rpm=1)
    assert count(limited).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError):
        count(limited)


def test_tokens_per_minute_limit(world: World) -> None:
    secret = world.key(tpm=200)
    big = "word " * 2000  # about 2,500 tokens by the gateway's estimate

    def send() -> httpx.Response:
        return httpx.post(
            world.run.url + "/v1/messages",
            headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": big}],
            },
        )

    # A request larger than the whole limit is let through alone (else it never could be),
    # and fills the minute.
    assert send().status_code == 200
    response = send()
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert len(world.upstream()) == 1


def test_a_spent_budget_refuses_further_calls(world: World) -> None:
    import anthropic

    secret = world.key(budget_usd=0.001, period="day")
    client = anthropic_client(world, secret)
    ask(client)  # costs about $0.03 at the test's prices: over the budget once settled
    world.run.flush()
    event = world.exchanges("acme")[-1]
    assert event["refs"]["cost_usd"] > 0.001
    with pytest.raises(anthropic.RateLimitError) as refused:
        ask(client)
    assert "budget" in str(refused.value).lower()
    assert len(world.upstream()) == 1


def test_chat_stream_without_include_usage_gets_no_usage_chunk_but_is_accounted(
    world: World,
) -> None:
    import openai

    client = openai.OpenAI(base_url=world.run.url + "/v1", api_key=world.key(), max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    # Routed to an Anthropic-format target; the caller did not ask for a usage chunk.
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    refs = world.exchanges("acme")[-1]["refs"]
    assert refs["provider"] == "primary"
    assert refs["input_tokens"] > 0 and refs["output_tokens"] > 0
    assert "usage_estimated" not in refs

    with_usage = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens > 0


def test_opentelemetry_spans_and_metrics(tmp_path: Path, mock_provider: MockServer) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowloom.gateway.otel import Telemetry

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[reader]))
    world = start(tmp_path, mock_provider, observe=telemetry.observe)
    try:
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        client = anthropic_client(world, world.key())
        ask(client, extra_headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        world.run.flush()
    finally:
        world.run.stop()
        world.access.close()
        world.run.ledgers.close()
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "chat claude"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "claude"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    data = reader.get_metrics_data()
    assert data is not None
    names = {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= names


def test_routing_reloads_are_recorded_as_config_changes(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    import asyncio
    import os
    import time

    from flowloom.gateway.wiring import build
    from flowloom.services import open_store

    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=mock_provider.url))
    database = tmp_path / "ledger.db"
    gateway = build(
        database=str(database),
        config_path=config,
        record="fail_closed",
        spool_path=None,
        project="gw",
        home=tmp_path / "home",
        settings=GatewaySettings(default_project="gw", reload_interval_s=0),
        provider=None,
        access_database="none",
        telemetry=False,
    )
    try:
        config.write_text("[providers.broken\n")
        stat = config.stat()
        os.utime(config, (stat.st_atime + 5, stat.st_mtime + 5))
        time.sleep(1.1)  # the router looks at the file at most once a second
        assert gateway.router.reload_if_changed() is False
    finally:
        asyncio.run(gateway.shutdown())
    store = open_store(str(database))
    try:
        changes = []
        for index in range(store.size("gw")):
            entry = store.entry("gw", index)
            assert entry is not None
            envelope = json.loads(entry.envelope)
            if envelope["kind"] == "config.change":
                changes.append(envelope)
    finally:
        store.close()
    assert [c["refs"]["ok"] for c in changes] == [True, False]
    assert changes[0]["refs"]["setting"] == "gateway.routing"
    assert changes[0]["refs"]["models"] == 2
    assert "gateway.toml" in changes[1]["refs"]["error"]
