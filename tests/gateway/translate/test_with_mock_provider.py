"""Translation against the provider simulator: a second, independent source of each format.

A caller's request (tools included) is translated to the provider's format, sent to the
simulator over loopback HTTP, and its answer — whole or streamed — translated back and
checked against the caller format's stream grammar.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from flowloom.gateway.mock import MockServer
from flowloom.gateway.providers.interface import Format
from flowloom.gateway.translate import StreamTranslator, translate_request, translate_response
from flowloom.gateway.wire.sse import SseEvent, SseSplitter, parse_event
from tests.gateway.translate.checks import CHECKS, summary
from tests.gateway.translate.samples import WEATHER_TOOL_SCHEMA

FORMATS: tuple[Format, ...] = ("anthropic", "openai", "gemini", "responses")
PROMPT = "Please use the tool to get the weather in Paris."

CALLER_REQUESTS: dict[str, dict[str, Any]] = {
    "anthropic": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [{"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}],
    },
    "openai": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": PROMPT},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA},
            }
        ],
    },
    "gemini": {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "parametersJsonSchema": WEATHER_TOOL_SCHEMA}
                ]
            }
        ],
        "generationConfig": {"maxOutputTokens": 200},
    },
    "responses": {
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": PROMPT,
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}],
    },
}
UPSTREAM_MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "gpt-4o",
    "gemini": "gemini-2.5-flash",
    "responses": "gpt-4.1",
}


def _url(base: str, provider: Format, stream: bool) -> str:
    if provider == "anthropic":
        return f"{base}/v1/messages"
    if provider == "openai":
        return f"{base}/v1/chat/completions"
    if provider == "responses":
        return f"{base}/v1/responses"
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base}/v1beta/models/{UPSTREAM_MODELS['gemini']}:{method}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", FORMATS)
@pytest.mark.parametrize("caller", FORMATS)
def test_round_trip_through_the_simulator(
    mock_provider: MockServer, caller: Format, provider: Format, stream: bool
) -> None:
    request = CALLER_REQUESTS[caller]
    if caller != "gemini":
        request = {**request, "stream": stream}
    if caller == "openai" and stream:
        request["stream_options"] = {"include_usage": True}
    upstream = translate_request(
        request, caller, provider, model=UPSTREAM_MODELS[provider], stream=stream
    )
    headers = {"x-api-key": "k", "authorization": "Bearer k", "x-goog-api-key": "k"}
    headers["anthropic-version"] = "2023-06-01"
    url = _url(mock_provider.url, provider, stream)
    with httpx.Client(timeout=10) as client:
        if not stream:
            reply = client.post(url, json=upstream, headers=headers)
            assert reply.status_code == 200, reply.text
            whole = translate_response(reply.json(), provider, caller, model="caller-model")
        else:
            translator = StreamTranslator(provider, caller, model="caller-model")
            out: list[SseEvent] = []
            splitter = SseSplitter()
            with client.stream("POST", url, json=upstream, headers=headers) as reply:
                assert reply.status_code == 200, reply.read()
                for chunk in reply.iter_bytes():
                    for raw in splitter.feed(chunk):
                        event = parse_event(raw)
                        if event is not None:
                            out.extend(translator.feed(event))
            out.extend(translator.close())
            whole = CHECKS[caller](out)
    got = summary(caller, whole)
    assert got.stop == "tool"
    assert [name for name, _ in got.calls] == ["get_weather"]
    assert isinstance(json.loads(got.calls[0][1]), dict)
    assert got.output > 0 and got.prompt > 0
