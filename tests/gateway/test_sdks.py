"""Must hold: the official SDKs, pointed at the gateway, work unchanged and every call is recorded.

Real parts end to end: the anthropic, openai (also AzureOpenAI) and google-genai SDKs talk
HTTP to a gateway under uvicorn, which routes with the real Router (a TOML file), admits
with the real Access (a virtual key in SQLite) and records into a real SQLite ledger; the
upstream is the provider simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowloom.gateway.access import Access
from flowloom.gateway.app import Gateway, GatewaySettings
from flowloom.gateway.mock import MockServer
from flowloom.gateway.recorder import Recorder
from flowloom.gateway.routing import Router
from flowloom.gateway.settlement import Settlement
from tests.gateway.core.harness import LedgerSwitch, RunningGateway, start_gateway

SECRET_IN_PROMPT = "sk-ant-api03-" + "Zx9" * 30 + "AA"
PROMPT = f"Please use the tool to check the weather. My key is {SECRET_IN_PROMPT}"

CONFIG = """
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"
api_key_ref = "anthropic"

[providers.openai]
kind = "openai"
base_url = "{url}/v1"
api_key_ref = "openai"

[providers.azure]
kind = "azure"
base_url = "{url}"
api_version = "2024-10-21"
deployments = {{ "gpt-4o" = "gpt-4o-prod" }}

[providers.gemini]
kind = "gemini"
base_url = "{url}"

[models."claude-gw"]
targets = [{{ provider = "anthropic", model = "claude-gw" }}]

[models."gpt-4o"]
targets = [{{ provider = "openai", model = "gpt-4o" }}]

[models."team-gpt"]
targets = [{{ provider = "azure", model = "gpt-4o" }}]

[models."gemini-2.5-flash"]
targets = [{{ provider = "gemini", model = "gemini-2.5-flash" }}]
"""

WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_ANTHROPIC["input_schema"],
    },
}


@dataclass
class Setup:
    run: RunningGateway
    secret: str
    key_id: str
    mock: MockServer

    def exchanges(self) -> list[dict[str, Any]]:
        return self.run.events("sdk-project")


@pytest.fixture
def setup(tmp_path: Path, mock_provider: MockServer) -> Iterator[Setup]:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=mock_provider.url))
    ledgers = LedgerSwitch(tmp_path / "ledger.db", tmp_path / "home")
    access = Access(str(tmp_path / "access.db"), master_key_loader=ledgers.keys.master_key)
    access.set_provider_key("anthropic", "sk-ant-upstream-" + "q" * 40)
    access.set_provider_key("openai", "sk-upstream-" + "r" * 40)
    vkey, secret = access.create_key(name="sdk", project="sdk-project")
    recorder = Recorder(
        ledgers.get, default_project="gw", retry_interval_s=0.1, settle=Settlement(access)
    )
    gateway = Gateway(
        router=Router(config),
        access=access,
        recorder=recorder,
        settings=GatewaySettings(default_project="gw", reload_interval_s=0),
    )
    run = start_gateway(gateway, ledgers)
    try:
        yield Setup(run, secret, vkey.id, mock_provider)
    finally:
        run.stop()
        access.close()
        ledgers.close()


def check_recorded(
    setup: Setup, *, count: int, provider: str, stream: bool, redacted: bool = True
) -> dict[str, Any]:
    events = setup.exchanges()
    assert len(events) == count
    event = events[-1]
    refs = event["refs"]
    assert refs["provider"] == provider
    assert refs["status"] == 200
    assert refs["stream"] is stream
    assert refs["virtual_key"] == setup.key_id
    assert refs["input_tokens"] > 0 and refs["output_tokens"] > 0
    assert refs["latency_ms"] > 0
    text = json.dumps(event)
    assert SECRET_IN_PROMPT not in text, "a secret reached the ledger"
    assert setup.secret not in text, "the virtual key reached the ledger"
    if redacted:
        assert "[REDACTED:" in json.dumps(event["_body"]["request"])
    return event


def test_anthropic_sdk(setup: Setup) -> None:
    import anthropic

    client = anthropic.Anthropic(
        base_url=setup.run.url,
        api_key=setup.secret,
        max_retries=0,
        default_headers={"X-Claude-Code-Session-Id": "session-42"},
    )
    message = client.messages.create(
        model="claude-gw",
        max_tokens=200,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    )
    assert message.stop_reason == "tool_use"
    tool = next(b for b in message.content if b.type == "tool_use")
    assert tool.name == "get_weather" and "city" in tool.input  # type: ignore[operator]
    event = check_recorded(setup, count=1, provider="anthropic", stream=False)
    assert event["session"] == "session-42"
    upstream = setup.mock.last_request("/v1/messages")
    assert upstream["headers"]["x-api-key"].startswith("sk-ant-upstream-")

    with client.messages.stream(
        model="claude-gw",
        max_tokens=200,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    streamed_tool = next(b for b in final.content if b.type == "tool_use")
    assert streamed_tool.input == tool.input
    event = check_recorded(setup, count=2, provider="anthropic", stream=True)
    recorded = event["_body"]["response"]
    assert recorded["stop_reason"] == "tool_use"
    assert any(b.get("type") == "tool_use" for b in recorded["content"])
    assert event["refs"]["ttft_ms"] > 0

    plain = client.messages.create(
        model="claude-gw", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.content[0].type == "text" and plain.content[0].text


def test_openai_sdk(setup: Setup) -> None:
    import openai

    client = openai.OpenAI(base_url=setup.run.url + "/v1", api_key=setup.secret, max_retries=0)
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        tools=[WEATHER_OPENAI],  # type: ignore[list-item]
    )
    call = completion.choices[0].message.tool_calls
    assert call and call[0].function.name == "get_weather"  # type: ignore[union-attr]
    check_recorded(setup, count=1, provider="openai", stream=False)
    assert setup.mock.last_request("/v1/chat/completions")["headers"]["authorization"] == (
        "Bearer sk-upstream-" + "r" * 40
    )

    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        tools=[WEATHER_OPENAI],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    arguments = ""
    name = ""
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name += delta.function.name or ""  # type: ignore[union-attr]
                arguments += delta.function.arguments or ""  # type: ignore[union-attr]
    assert name == "get_weather" and "city" in json.loads(arguments)
    event = check_recorded(setup, count=2, provider="openai", stream=True)
    calls = event["_body"]["response"]["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"

    response = client.responses.create(model="gpt-4o", input="Say hello.")
    assert response.output_text
    with client.responses.stream(model="gpt-4o", input="Say hello.") as events:
        final = events.get_final_response()
    assert final.output_text == response.output_text
    check_recorded(setup, count=4, provider="openai", stream=True, redacted=False)


def test_azure_openai_sdk(setup: Setup) -> None:
    import openai

    client = openai.AzureOpenAI(
        azure_endpoint=setup.run.url,
        api_key=setup.secret,
        api_version="2024-10-21",
        max_retries=0,
    )
    completion = client.chat.completions.create(
        model="team-gpt", messages=[{"role": "user", "content": "Say hello."}]
    )
    assert completion.choices[0].message.content
    check_recorded(setup, count=1, provider="azure", stream=False, redacted=False)
    upstream = setup.mock.requests()[-1]
    assert upstream["path"] == "/openai/deployments/gpt-4o-prod/chat/completions"

    stream = client.chat.completions.create(
        model="team-gpt",
        messages=[{"role": "user", "content": PROMPT}],
        tools=[WEATHER_OPENAI],  # type: ignore[list-item]
        stream=True,
    )
    names = [
        d.function.name
        for chunk in stream
        for c in chunk.choices
        for d in c.delta.tool_calls or []
        if d.function and d.function.name
    ]
    assert names == ["get_weather"]
    event = setup.exchanges()[-1]
    assert event["refs"]["provider"] == "azure" and event["refs"]["stream"] is True


def test_gemini_sdk(setup: Setup) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=setup.secret, http_options=types.HttpOptions(base_url=setup.run.url)
    )
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="The weather in a city.",
                parameters_json_schema=WEATHER_ANTHROPIC["input_schema"],
            )
        ]
    )
    config = types.GenerateContentConfig(tools=[tool])
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT, config=config
    )
    assert response.function_calls and response.function_calls[0].name == "get_weather"
    check_recorded(setup, count=1, provider="gemini", stream=False)

    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Say hello.", config=None
        )
    )
    text = "".join(c.text or "" for c in chunks)
    assert text
    event = setup.exchanges()[-1]
    assert event["refs"]["stream"] is True and event["refs"]["provider"] == "gemini"
    parts = event["_body"]["response"]["candidates"][0]["content"]["parts"]
    assert "".join(p.get("text", "") for p in parts) == text
