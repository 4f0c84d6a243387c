"""A translation error on one target falls back to the next, like any other target failure.

Issue 15: a Responses call with a hosted tool, routed to a model whose targets include one
that needs translation, failed at random (8 identical calls: 6×200, 2×400) depending on
which target the router put first. Here the first target always needs a translation that
fails (an Anthropic model cannot run OpenAI's hosted `code_interpreter`; `web_search`
translates, see translate/test_hosted_tools.py), the second speaks
Responses natively: every call must succeed, with the failed attempt in the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.gateway.mock import MockServer
from flowloom.gateway.routing import Router
from tests.gateway.core.harness import RunningGateway, make_gateway, start_gateway

POLICY = """
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"

[providers.openai]
kind = "openai"
base_url = "{url}/v1"

[models."codex-model"]
targets = [
  {{ provider = "anthropic", model = "claude-up" }},
  {{ provider = "openai", model = "gpt-up" }},
]

[models."claude-only"]
targets = [{{ provider = "anthropic", model = "claude-up" }}]
"""
HOSTED = {
    "input": "What is new in Paris today?",
    "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
    "max_output_tokens": 64,
}


@pytest.fixture
def gateway(tmp_path: Path, mock_provider: MockServer) -> Iterator[RunningGateway]:
    policy = tmp_path / "gateway.toml"
    policy.write_text(POLICY.format(url=mock_provider.url))
    gw, ledgers = make_gateway(tmp_path, router=Router(policy))
    run = start_gateway(gw, ledgers)
    try:
        yield run
    finally:
        run.stop()
        ledgers.close()


def responses(run: RunningGateway, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        run.url + "/v1/responses",
        json={"model": model, **HOSTED, **extra},
        headers={"authorization": "Bearer local"},
        timeout=30,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_translation_error_falls_back_to_the_next_target(
    gateway: RunningGateway, mock_provider: MockServer, stream: bool
) -> None:
    for _ in range(8):
        reply = responses(gateway, "codex-model", stream=stream)
        assert reply.status_code == 200, reply.text
        if stream:
            assert "event: response.completed" in reply.text
        else:
            assert reply.json()["object"] == "response"
    # Only the target that can serve it was asked; the Anthropic one never saw a request.
    assert [r["model"] for r in mock_provider.requests()] == ["gpt-up"] * 8
    events = gateway.events("gw")
    assert len(events) == 8
    for event in events:
        refs = event["refs"]
        assert refs["status"] == 200 and refs["provider"] == "openai"
        first, second = refs["fallback"]
        assert (first["provider"], first["status"], first["error_kind"]) == (
            "anthropic",
            400,
            "translation",
        )
        assert (second["provider"], second["status"]) == ("openai", 200)


def test_when_no_target_can_take_it_the_caller_gets_the_translation_error(
    gateway: RunningGateway, mock_provider: MockServer
) -> None:
    reply = responses(gateway, "claude-only")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "code_interpreter" in error["message"] and error["type"] == "invalid_request_error"
    assert mock_provider.requests() == []
    # A translation error says nothing about the provider's health: it stays planned.
    for _ in range(6):
        assert responses(gateway, "claude-only").status_code == 400
    ok = responses(gateway, "claude-only", tools=[])
    assert ok.status_code == 200, ok.text
