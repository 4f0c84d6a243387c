"""The official SDKs accept what the translator produces, streaming and not, tool use included.

A tiny loopback server plays a translating gateway in front of a canned provider: the path
says which format the "provider" speaks (/anthropic, /openai, /gemini, /responses), the
endpoint says which format the caller speaks. The caller's request is translated to the
provider's format (and kept for inspection), the provider's native answer (samples.py) is
translated back, and the real SDK client parses it with its own parser.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest
import uvicorn
from google import genai
from google.genai import types as gtypes

from flowloom.gateway.providers.interface import Format
from flowloom.gateway.translate import (
    StreamTranslator,
    TranslationError,
    error_body,
    translate_request,
    translate_response,
)
from flowloom.gateway.wire.sse import SseEvent, serialize
from tests.gateway.translate import samples
from tests.gateway.translate.samples import WEATHER_TOOL_SCHEMA

PROVIDERS = ("anthropic", "openai", "gemini", "responses")


@dataclass
class Gateway:
    """Raw ASGI app: translate the request, answer with the provider's canned reply."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.loads(b"".join(chunks) or b"{}")
        path: str = scope["path"]
        provider_name, _, rest = path.lstrip("/").partition("/")
        provider = cast(Format, provider_name)
        caller: Format
        stream = bool(body.get("stream"))
        if rest.endswith("/messages"):
            caller = "anthropic"
        elif rest.endswith("/chat/completions"):
            caller = "openai"
        elif rest.endswith("/responses"):
            caller = "responses"
        else:
            caller = "gemini"
            stream = rest.endswith(":streamGenerateContent")
        try:
            upstream = translate_request(body, caller, provider, model="up", stream=stream)
            hub = translate_request(body, caller, "anthropic", model="hub")
        except TranslationError as exc:
            payload = json.dumps(error_body(caller, 400, exc.message)).encode()
            await self._send(send, 400, "application/json", [payload])
            return
        self.seen.append({"caller": caller, "provider": provider, "upstream": upstream})
        last = hub["messages"][-1]["content"]
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        tools = bool(hub.get("tools")) and not answered
        model = body.get("model") or rest.rpartition("/")[2].partition(":")[0] or "caller-model"
        if not stream:
            native = samples.RESPONSES[provider](tools)
            out = translate_response(native, provider, caller, model=model)
            await self._send(send, 200, "application/json", [json.dumps(out).encode()])
            return
        translator = StreamTranslator(provider, caller, model=model)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        events = samples.STREAMS[provider](tools)
        if model == "fail-mid-stream":  # the provider fails after its first events
            error = error_body(provider, 529, "Overloaded")
            kind = "error" if provider in ("anthropic", "responses") else None
            if provider == "responses":
                error = {"type": "error", "code": "server_error", "message": "Overloaded"}
            keep = 1 if provider == "gemini" else 3  # before the provider's last event
            events = [*events[:keep], SseEvent(kind, json.dumps(error))]
        for event in events:
            for out_event in translator.feed(event):
                await send(
                    {"type": "http.response.body", "body": serialize(out_event), "more_body": True}
                )
        for out_event in translator.close():
            await send(
                {"type": "http.response.body", "body": serialize(out_event), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _send(send: Any, status: int, kind: str, parts: list[bytes]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"".join(parts)})


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[Gateway, str]]:
    app = Gateway()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline, "the loopback server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------- Anthropic SDK


ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_TOOL_SCHEMA}
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_anthropic_sdk(gateway: tuple[Gateway, str], provider: str, stream: bool) -> None:
    app, url = gateway
    client = anthropic.Anthropic(base_url=f"{url}/{provider}", api_key="k", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "Be brief.",
        "tools": ANTHROPIC_TOOLS,
    }
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            texts = list(s.text_stream)
            first = s.get_final_message()
        assert "".join(texts) == "Let me check."
    else:
        first = client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    assert first.content[0].type == "text" and first.content[0].text == "Let me check."
    call = first.content[1]
    assert (
        call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"}
    )
    assert first.usage.output_tokens == 17
    assert first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0) == 25
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
        },
    ]
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            second = s.get_final_message()
    else:
        second = client.messages.create(messages=messages, **kwargs)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text == "Hello there!"
    upstream = app.seen[-1]["upstream"]
    if provider == "openai":
        assert upstream["messages"][-1] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "sunny",
        }
    elif provider == "gemini":
        response = upstream["contents"][-1]["parts"][0]["functionResponse"]
        assert response["name"] == "get_weather" and response["response"] == {"output": "sunny"}


def test_anthropic_sdk_gets_translation_error_as_400(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    client = anthropic.Anthropic(base_url=f"{url}/openai", api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="web_search"):
        client.messages.create(
            model="c",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )


# ---------------------------------------------------------------- OpenAI Chat Completions SDK


OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": WEATHER_TOOL_SCHEMA,
        },
    }
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_chat_sdk(gateway: tuple[Gateway, str], provider: str, stream: bool) -> None:
    app, url = gateway
    client = openai.OpenAI(base_url=f"{url}/{provider}/v1", api_key="k", max_retries=0)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    if stream:
        with client.chat.completions.stream(
            model="gpt-x",
            messages=messages,
            tools=OPENAI_TOOLS,
            stream_options={"include_usage": True},
        ) as s:
            deltas = [e.delta for e in s if e.type == "content.delta"]
            first = s.get_final_completion()
        assert "".join(deltas) == "Let me check."
    else:
        first = client.chat.completions.create(model="gpt-x", messages=messages, tools=OPENAI_TOOLS)  # type: ignore[assignment]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (25, 17)
    messages += [
        {
            "role": "assistant",
            "content": choice.message.content,
            "tool_calls": [c.model_dump() for c in calls],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
    ]
    if stream:
        with client.chat.completions.stream(
            model="gpt-x", messages=messages, tools=OPENAI_TOOLS
        ) as s:
            second = s.get_final_completion()
    else:
        second = client.chat.completions.create(
            model="gpt-x", messages=messages, tools=OPENAI_TOOLS
        )  # type: ignore[assignment]
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Hello there!"
    if provider == "anthropic":
        upstream = app.seen[-1]["upstream"]
        assert upstream["messages"][-1]["content"] == [
            {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"}
        ]


def test_openai_sdk_gets_translation_error_as_400(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    client = openai.OpenAI(base_url=f"{url}/anthropic/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        client.chat.completions.create(model="c", n=2, messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- OpenAI Responses SDK


RESPONSES_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather now",
        "parameters": WEATHER_TOOL_SCHEMA,
        "strict": False,
    }
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_responses_sdk(gateway: tuple[Gateway, str], provider: str, stream: bool) -> None:
    _, url = gateway
    client = openai.OpenAI(base_url=f"{url}/{provider}/v1", api_key="k", max_retries=0)
    items: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: dict[str, Any] = {
        "model": "gpt-x",
        "instructions": "Be brief.",
        "tools": RESPONSES_TOOLS,
    }
    if stream:
        with client.responses.stream(input=items, **kwargs) as s:
            deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
            first = s.get_final_response()
        assert "".join(deltas) == "Let me check."
    else:
        first = client.responses.create(input=items, **kwargs)
    assert first.output_text == "Let me check."
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert first.usage is not None and first.usage.output_tokens == 17
    items += [
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": "get_weather",
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
    ]
    if stream:
        with client.responses.stream(input=items, **kwargs) as s:
            second = s.get_final_response()
    else:
        second = client.responses.create(input=items, **kwargs)
    assert second.output_text == "Hello there!"
    assert second.status == "completed"


# ---------------------------------------------------------------- Google Gen AI SDK


def _gemini_config() -> gtypes.GenerateContentConfig:
    declaration = gtypes.FunctionDeclaration(
        name="get_weather",
        description="Weather now",
        parameters=gtypes.Schema(
            type=gtypes.Type.OBJECT,
            properties={"city": gtypes.Schema(type=gtypes.Type.STRING, description="City name")},
            required=["city"],
        ),
    )
    return gtypes.GenerateContentConfig(
        system_instruction="Be brief.",
        tools=[gtypes.Tool(function_declarations=[declaration])],
        max_output_tokens=100,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_google_genai_sdk(gateway: tuple[Gateway, str], provider: str, stream: bool) -> None:
    app, url = gateway
    client = genai.Client(
        api_key="k", http_options=gtypes.HttpOptions(base_url=f"{url}/{provider}")
    )
    config = _gemini_config()
    contents: list[Any] = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="Weather in Paris?")])
    ]
    if stream:
        chunks = list(
            client.models.generate_content_stream(
                model="gemini-x", contents=contents, config=config
            )
        )
        text = "".join(c.text or "" for c in chunks)
        calls = [fc for c in chunks for fc in c.function_calls or ()]
        usage = chunks[-1].usage_metadata
        finish = chunks[-1].candidates[0].finish_reason if chunks[-1].candidates else None
    else:
        response = client.models.generate_content(
            model="gemini-x", contents=contents, config=config
        )
        text = response.text or ""
        calls = response.function_calls or []
        usage = response.usage_metadata
        finish = response.candidates[0].finish_reason if response.candidates else None
    assert text == "Let me check."
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    assert finish == gtypes.FinishReason.STOP
    assert usage is not None and usage.prompt_token_count == 25
    contents += [
        gtypes.Content(
            role="model", parts=[gtypes.Part(text=text), gtypes.Part(function_call=calls[0])]
        ),
        gtypes.Content(
            role="user",
            parts=[
                gtypes.Part(
                    function_response=gtypes.FunctionResponse(
                        id=calls[0].id, name="get_weather", response={"output": "sunny"}
                    )
                )
            ],
        ),
    ]
    if stream:
        second = "".join(
            c.text or ""
            for c in client.models.generate_content_stream(
                model="gemini-x", contents=contents, config=config
            )
        )
    else:
        second = (
            client.models.generate_content(model="gemini-x", contents=contents, config=config).text
            or ""
        )
    assert second == "Hello there!"
    upstream = app.seen[-1]["upstream"]
    if provider == "anthropic":
        result = upstream["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["content"] == "sunny"
        assert upstream["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    if provider == "openai":
        assert upstream["messages"][-1]["role"] == "tool"


@pytest.mark.parametrize("provider", ["anthropic", "openai", "gemini", "responses"])
def test_sdks_raise_on_a_translated_mid_stream_error(
    gateway: tuple[Gateway, str], provider: str
) -> None:
    _, url = gateway
    claude = anthropic.Anthropic(base_url=f"{url}/{provider}", api_key="k", max_retries=0)
    with (
        pytest.raises(anthropic.APIError, match="Overloaded"),
        claude.messages.stream(
            model="fail-mid-stream", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as s,
    ):
        s.get_final_message()
    gpt = openai.OpenAI(base_url=f"{url}/{provider}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(
            gpt.chat.completions.create(
                model="fail-mid-stream", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    events = list(gpt.responses.create(model="fail-mid-stream", input="hi", stream=True))
    assert events[-1].type == "error" and events[-1].message == "Overloaded"
    # google-genai does not raise on an error inside an SSE stream (it parses the chunk as an
    # answer without candidates), so for Gemini callers the error chunk itself is checked.
    with httpx.stream(
        "POST",
        f"{url}/{provider}/v1beta/models/fail-mid-stream:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ) as reply:
        last = [line for line in reply.iter_lines() if line.startswith("data: ")][-1]
    error = json.loads(last[6:])["error"]
    assert error["message"] == "Overloaded" and error["code"] in (500, 503, 529)
