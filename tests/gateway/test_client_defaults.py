"""Real clients out of the box: default pass-through policy and clamped output limits.

- `flowloom gateway serve --open-access` with no gateway.toml (a real process): the
  official SDKs' usual model names — a dated Claude id, gpt-4o-mini, o4-mini over
  Responses, gemini-2.5-flash — reach their provider (the simulator, moved there with the
  FLOWLOOM_*_BASE_URL variables) under their own names; an unknown name is 404 in the
  caller's format.
- A client asking more output tokens than the target's `max_output` (Claude Code asks
  32,000) is served with max tokens clamped to `max_output`, in every caller format and
  across a translation, and the exchange records `max_tokens_clamped`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.gateway.mock import MockServer
from flowloom.gateway.routing import Router
from tests.gateway.core.harness import RunningGateway, make_gateway, start_gateway
from tests.gateway.processes import gateway_process

POLICY = """
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"

[providers.openai]
kind = "openai"
base_url = "{url}/v1"

[providers.gemini]
kind = "gemini"
base_url = "{url}"

[models."small-claude"]
targets = [{{ provider = "anthropic", model = "claude-up", max_output = 100 }}]

[models."small-gpt"]
targets = [{{ provider = "openai", model = "gpt-up", max_output = 100 }}]

[models."small-gemini"]
targets = [{{ provider = "gemini", model = "gemini-up", max_output = 100 }}]
"""
HI = [{"role": "user", "content": "hi"}]
ANTHROPIC_HEADERS = {"x-api-key": "local", "anthropic-version": "2023-06-01"}


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


def post(run: RunningGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(run.url + path, json=body, headers=ANTHROPIC_HEADERS, timeout=30)


CLAMPED = [
    # (caller path, body, upstream path, where the upstream body keeps its max tokens)
    (
        "/v1/messages",
        {"model": "small-claude", "max_tokens": 32000, "messages": HI},
        "/v1/messages",
        ("max_tokens",),
    ),
    (
        "/v1/messages",
        {"model": "small-gpt", "max_tokens": 32000, "messages": HI},
        "/v1/chat/completions",
        ("max_completion_tokens",),
    ),
    (
        "/v1/messages",
        {"model": "small-claude", "max_tokens": 32000, "messages": HI, "stream": True},
        "/v1/messages",
        ("max_tokens",),
    ),
    (
        "/v1/chat/completions",
        {"model": "small-gpt", "max_completion_tokens": 32000, "messages": HI},
        "/v1/chat/completions",
        ("max_completion_tokens",),
    ),
    (
        "/v1/chat/completions",
        {"model": "small-gpt", "max_tokens": 32000, "messages": HI},
        "/v1/chat/completions",
        ("max_tokens",),
    ),
    (
        "/v1/chat/completions",
        {"model": "small-claude", "max_tokens": 32000, "messages": HI},
        "/v1/messages",
        ("max_tokens",),
    ),
    (
        "/v1/responses",
        {"model": "small-gpt", "max_output_tokens": 32000, "input": "hi"},
        "/v1/responses",
        ("max_output_tokens",),
    ),
    (
        "/v1beta/models/small-gemini:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 32000}},
        "/v1beta/models/gemini-up:generateContent",
        ("generationConfig", "maxOutputTokens"),
    ),
    (
        "/v1beta/models/small-claude:generateContent",
        {
            "contents": [{"parts": [{"text": "hi"}]}],
            "generation_config": {"max_output_tokens": 32000},
        },
        "/v1/messages",
        ("max_tokens",),
    ),
]


@pytest.mark.parametrize(("path", "body", "upstream", "field"), CLAMPED)
def test_more_output_than_the_target_allows_is_clamped_and_noted(
    gateway: RunningGateway,
    mock_provider: MockServer,
    path: str,
    body: dict[str, Any],
    upstream: str,
    field: tuple[str, ...],
) -> None:
    reply = post(gateway, path, body)
    assert reply.status_code == 200, reply.text
    sent = mock_provider.last_request(upstream)["body"]
    value: Any = sent
    for key in field:
        value = value[key]
    assert value == 100
    assert ("model" in sent) == (not upstream.startswith("/v1beta"))
    refs = gateway.events("gw")[-1]["refs"]
    assert refs["max_tokens_clamped"] == {"requested": 32000, "sent": 100}


def test_within_the_limit_the_body_goes_as_sent(
    gateway: RunningGateway, mock_provider: MockServer
) -> None:
    raw = (
        b'{"max_tokens": 50, "model": "small-claude", "messages": [{"role":"user","content":"a"}]}'
    )
    reply = httpx.post(gateway.url + "/v1/messages", content=raw, headers=ANTHROPIC_HEADERS)
    assert reply.status_code == 200, reply.text
    assert mock_provider.last_request("/v1/messages")["body"]["max_tokens"] == 50
    assert "max_tokens_clamped" not in gateway.events("gw")[-1]["refs"]


# -- the default policy, in a real `flowloom gateway serve` ---------------------------------


@pytest.fixture
def default_gateway(tmp_path: Path, mock_provider: MockServer) -> Iterator[str]:
    """`flowloom gateway serve --open-access`, no --config, providers moved to the simulator."""
    moved = {
        "FLOWLOOM_ANTHROPIC_BASE_URL": mock_provider.url,
        "FLOWLOOM_OPENAI_BASE_URL": mock_provider.url + "/v1",
        "FLOWLOOM_GEMINI_BASE_URL": mock_provider.url,
    }
    with gateway_process(tmp_path, env=moved) as url:
        yield url


def test_without_a_policy_each_providers_model_names_pass_through(
    default_gateway: str, mock_provider: MockServer
) -> None:
    import anthropic
    import openai
    from google import genai
    from google.genai import types

    claude = anthropic.Anthropic(base_url=default_gateway, api_key="local", max_retries=0)
    message = claude.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=64, messages=HI)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    gpt = openai.OpenAI(base_url=default_gateway + "/v1", api_key="local", max_retries=0)
    chat = gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert chat.choices[0].message.content
    answer = gpt.responses.create(model="o4-mini", input="hi")
    assert answer.output_text
    gemini = genai.Client(api_key="local", http_options=types.HttpOptions(base_url=default_gateway))
    assert gemini.models.generate_content(model="gemini-2.5-flash", contents="hi").text
    seen = [(r["path"], r["model"]) for r in mock_provider.requests()]
    assert seen == [
        ("/v1/messages", "claude-sonnet-4-5-20250929"),
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/responses", "o4-mini"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash"),
    ]
    with pytest.raises(anthropic.NotFoundError, match="llama-3"):
        claude.messages.create(model="llama-3", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    body = json.loads(httpx.get(default_gateway + "/readyz").text)
    assert body["status"] == "ready"
