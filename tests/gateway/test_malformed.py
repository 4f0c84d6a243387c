"""A malformed-input corpus per caller format and route: zero 500s, errors in the caller's shape.

Against the real gateway on loopback (uvicorn, the real Router from a TOML policy) in front
of the provider simulator. Each caller format (Anthropic Messages and count_tokens, OpenAI
Chat, Azure deployments, OpenAI Responses, Gemini generateContent and its SSE stream) sends
its corpus to four models, one per upstream format, so every pass-through and every
translated route sees it:

- every top-level field with each JSON type it must not have → exactly 400;
- malformed messages (items, roles, content, parts, tools of the wrong type) → exactly 400;
- nonsense deeper down → never 5xx (the provider may judge it: 200 or 4xx);
- a body nested 100,000 deep (arrays, objects, inside a field), not JSON, invalid UTF-8,
  a lone surrogate escape, NaN / Infinity, a top level that is not an object → 400;
- huge strings: a huge model name → 400; a huge prompt → no 5xx; over the size limit → 413.

Each answer of 4xx must be JSON in the caller's own error shape, so its SDK raises its
usual exception. The field types are the providers' documented ones, written down here
independently of the gateway's own table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.gateway.app import GatewaySettings
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

[providers.gemini]
kind = "gemini"
base_url = "{url}"

[models."to-anthropic"]
targets = [{{ provider = "anthropic", model = "claude-up" }}]

[models."to-openai"]
targets = [{{ provider = "openai", model = "gpt-up" }}]

[models."to-responses"]
targets = [{{ provider = "openai", model = "gpt-up", format = "responses" }}]

[models."to-gemini"]
targets = [{{ provider = "gemini", model = "gemini-up" }}]
"""
MODELS = ("to-anthropic", "to-openai", "to-responses", "to-gemini")
HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}

# JSON types: s string, i integer, n number, b boolean, o object, a array.
SAMPLES: dict[str, Any] = {
    "s": "x",
    "i": 7,
    "n": 2.5,
    "b": True,
    "o": {"a": 1},
    "a": [1],
}
ANTHROPIC_FIELDS = {
    "model": "s",
    "messages": "a",
    "max_tokens": "i",
    "system": "sa",
    "stop_sequences": "a",
    "stream": "b",
    "temperature": "in",
    "top_p": "in",
    "top_k": "i",
    "tools": "a",
    "tool_choice": "o",
    "metadata": "o",
    "thinking": "o",
    "service_tier": "s",
}
OPENAI_FIELDS = {
    "model": "s",
    "messages": "a",
    "max_tokens": "i",
    "max_completion_tokens": "i",
    "stream": "b",
    "stream_options": "o",
    "temperature": "in",
    "top_p": "in",
    "n": "i",
    "stop": "sa",
    "tools": "a",
    "tool_choice": "so",
    "parallel_tool_calls": "b",
    "response_format": "o",
    "seed": "i",
    "user": "s",
    "logprobs": "b",
    "top_logprobs": "i",
    "presence_penalty": "in",
    "frequency_penalty": "in",
    "logit_bias": "o",
    "metadata": "o",
    "modalities": "a",
    "reasoning_effort": "s",
    "store": "b",
}
RESPONSES_FIELDS = {
    "model": "s",
    "input": "sa",
    "instructions": "s",
    "max_output_tokens": "i",
    "stream": "b",
    "temperature": "in",
    "top_p": "in",
    "tools": "a",
    "tool_choice": "so",
    "parallel_tool_calls": "b",
    "previous_response_id": "s",
    "reasoning": "o",
    "text": "o",
    "metadata": "o",
    "store": "b",
    "user": "s",
    "include": "a",
    "truncation": "s",
}
GEMINI_FIELDS = {
    "contents": "a",
    "systemInstruction": "o",
    "tools": "a",
    "toolConfig": "o",
    "generationConfig": "o",
    "safetySettings": "a",
    "cachedContent": "s",
}

OPENAI_EMBEDDING_FIELDS = {
    "model": "s",
    "input": "sa",
    "encoding_format": "s",
    "dimensions": "i",
    "user": "s",
}
GEMINI_EMBED_FIELDS = {
    "model": "s",
    "content": "o",
    "taskType": "s",
    "title": "s",
    "outputDimensionality": "i",
}
GEMINI_COUNT_FIELDS = {"contents": "a", "generateContentRequest": "o"}

GOOD_MESSAGES = [{"role": "user", "content": "hi"}]
GEMINI_HI = {"parts": [{"text": "hi"}]}
PATHS = {
    "anthropic": "/v1/messages",
    "count_tokens": "/v1/messages/count_tokens",
    "openai": "/v1/chat/completions",
    "azure": "/openai/deployments/{model}/chat/completions?api-version=2024-10-21",
    "azure_v1": "/openai/v1/chat/completions",
    "responses": "/v1/responses",
    "azure_responses": "/openai/responses?api-version=2025-04-01-preview",
    "embeddings": "/v1/embeddings",
    "azure_embeddings": "/openai/deployments/{model}/embeddings?api-version=2024-10-21",
    "gemini": "/v1beta/models/{model}:generateContent",
    "gemini_v1": "/v1/models/{model}:generateContent",
    "gemini_stream": "/v1beta/models/{model}:streamGenerateContent?alt=sse",
    "gemini_array": "/v1/models/{model}:streamGenerateContent",
    "gemini_count": "/v1beta/models/{model}:countTokens",
    "gemini_embed": "/v1/models/{model}:embedContent",
    "gemini_batch_embed": "/v1beta/models/{model}:batchEmbedContents",
}


@dataclass(frozen=True)
class Route:
    name: str
    shape: str  # whose error shape: anthropic, openai, gemini
    fields: dict[str, str]
    streams: bool  # whether "stream": true is a body field here
    messages: bool = True  # a message list (and tools) to malform
    serves: tuple[str, ...] = ()  # the models it answers 200 for (default: every one)

    def path(self, model: str) -> str:
        return PATHS[self.name].format(model=model)

    def base(self, model: str) -> dict[str, Any]:
        """A valid body for `model`."""
        if self.name in ("embeddings", "azure_embeddings"):
            body = {"input": ["hi", "there"]}
            return {"model": model, **body} if self.name == "embeddings" else body
        if self.name == "gemini_embed":
            return {"content": GEMINI_HI}
        if self.name == "gemini_batch_embed":
            return {"requests": [{"model": f"models/{model}", "content": GEMINI_HI}]}
        if self.name == "gemini_count":
            return {"contents": [{"role": "user", **GEMINI_HI}]}
        if self.name in ("anthropic", "count_tokens"):
            body: dict[str, Any] = {"model": model, "messages": list(GOOD_MESSAGES)}
            if self.name == "anthropic":
                body["max_tokens"] = 32
            return body
        if self.name in ("openai", "azure", "azure_v1"):
            body = {"messages": list(GOOD_MESSAGES), "max_tokens": 32}
            if self.name != "azure":
                body["model"] = model
            return body
        if self.name in ("responses", "azure_responses"):
            return {"model": model, "input": "hi", "max_output_tokens": 32}
        return {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"maxOutputTokens": 32},
        }

    def messages_field(self) -> str:
        if self.name in ("responses", "azure_responses"):
            return "input"
        return "contents" if self.shape == "gemini" else "messages"


ROUTES = (
    Route("anthropic", "anthropic", ANTHROPIC_FIELDS, True),
    Route("count_tokens", "anthropic", ANTHROPIC_FIELDS, False),
    Route("openai", "openai", OPENAI_FIELDS, True),
    Route("azure", "openai", {k: v for k, v in OPENAI_FIELDS.items() if k != "model"}, True),
    Route("azure_v1", "openai", OPENAI_FIELDS, True),
    Route("responses", "openai", RESPONSES_FIELDS, True),
    Route("azure_responses", "openai", RESPONSES_FIELDS, True),
    Route("embeddings", "openai", OPENAI_EMBEDDING_FIELDS, False, False, ("to-openai",)),
    Route(
        "azure_embeddings",
        "openai",
        {k: v for k, v in OPENAI_EMBEDDING_FIELDS.items() if k != "model"},
        False,
        False,
        ("to-openai",),
    ),
    Route("gemini", "gemini", GEMINI_FIELDS, False),
    Route("gemini_v1", "gemini", GEMINI_FIELDS, False),
    Route("gemini_stream", "gemini", GEMINI_FIELDS, False),
    Route("gemini_array", "gemini", GEMINI_FIELDS, False),
    Route("gemini_count", "gemini", GEMINI_COUNT_FIELDS, False, False),
    Route("gemini_embed", "gemini", GEMINI_EMBED_FIELDS, False, False, ("to-gemini",)),
    Route("gemini_batch_embed", "gemini", {"requests": "a"}, False, False, ("to-gemini",)),
)
GET_PATHS = (
    "/v1/models/{id}",
    "/models/{id}",
    "/openai/v1/models/{id}",
    "/v1beta/models/{id}",
)
ODD_IDS = (
    "m" * 60_000,  # near the longest URL a client sends
    "%00",
    "%FF%FE",
    "..%2F..%2Fetc%2Fpasswd",
    "models%2Fgemini-2.5-flash",
    "gemini-2.5-flash%3AgenerateContent",
    "%F0%9F%98%80",
    "claude-" + "9" * 400,
    "to-openai",
)

BAD_CHAT_MESSAGES: list[Any] = [
    [5],
    ["hi"],
    [None],
    [[{"role": "user", "content": "hi"}]],
    [{"role": 5, "content": "hi"}],
    [{"role": ["user"], "content": "hi"}],
    [{"role": "user", "content": 5}],
    [{"role": "user", "content": {"type": "text", "text": "hi"}}],
    [{"role": "user", "content": [5]}],
    [{"role": "user", "content": ["hi"]}],
    [{"role": "user", "content": [{"type": 5, "text": "hi"}]}],
]
BAD_GEMINI_CONTENTS: list[Any] = [
    [5],
    ["hi"],
    [None],
    [{"role": 5, "parts": [{"text": "hi"}]}],
    [{"role": "user", "parts": "hi"}],
    [{"role": "user", "parts": {"text": "hi"}}],
    [{"role": "user", "parts": [5]}],
    [{"role": "user", "parts": ["hi"]}],
]
BAD_RESPONSES_INPUT: list[Any] = [
    [5],
    ["hi"],
    [None],
    [{"type": 5, "role": "user", "content": "hi"}],
    [{"role": 5, "content": "hi"}],
    [{"role": "user", "content": 5}],
    [{"role": "user", "content": [5]}],
    [{"role": "user", "content": [{"type": 5, "text": "hi"}]}],
]
BAD_TOOLS: list[Any] = [[5], ["get_weather"], [None], [[{"name": "x"}]]]
# Well-typed at the top but odd further down: the provider decides (never a 5xx).
ODD_CHAT: list[Any] = [
    [{"role": "user", "content": [{"type": "text", "text": 5}]}],
    [{"role": "user", "content": [{"type": "text"}]}],
    [{"role": "user", "content": [{"type": "image", "source": "x"}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}],
    [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5, "content": 5}]}],
    [{"role": "assistant", "content": [{"type": "tool_use", "id": 5, "name": 5, "input": 5}]}],
    [{"role": "assistant", "content": None, "tool_calls": 5}],
    [{"role": "assistant", "content": None, "tool_calls": [5]}],
    [{"role": "assistant", "content": None, "tool_calls": [{"function": 5}]}],
    [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 5}}]}],
    [{"role": "tool", "tool_call_id": 5, "content": 5}],
    [{"role": "nobody", "content": "hi"}],
    [{"content": "hi"}],
    [{"role": "user"}],
    [],
]
ODD_GEMINI: list[Any] = [
    [{"role": "user", "parts": [{"text": 5}]}],
    [{"role": "user", "parts": [{"inlineData": 5}]}],
    [{"role": "user", "parts": [{"inlineData": {"mimeType": 5, "data": 5}}]}],
    [{"role": "model", "parts": [{"functionCall": 5}]}],
    [{"role": "model", "parts": [{"functionCall": {"name": 5, "args": 5}}]}],
    [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": 5}}]}],
    [{"role": "user", "parts": [{}]}],
    [{"role": "user"}],
    [],
]
ODD_RESPONSES: list[Any] = [
    [{"type": "function_call", "call_id": 5, "name": 5, "arguments": 5}],
    [{"type": "function_call_output", "call_id": 5, "output": 5}],
    [{"type": "no_such_item"}],
    [{"role": "user", "content": [{"type": "input_image", "image_url": 5}]}],
    [{"role": "user", "content": [{"type": "input_text"}]}],
    [],
]
ODD_TOOLS: dict[str, list[Any]] = {
    "anthropic": [[{"name": 5}], [{"name": "f", "input_schema": 5}], [{"type": "web_search"}]],
    "openai": [[{"type": "function", "function": 5}], [{"type": "function"}], [{"type": 5}]],
    "responses": [[{"type": "function", "name": 5}], [{"type": "web_search"}], [{"type": 5}]],
    "gemini": [[{"functionDeclarations": 5}], [{"functionDeclarations": [5]}], [{}]],
}


def deep(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def deep_object(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


@pytest.fixture
def gateway(tmp_path: Path, mock_provider: MockServer) -> Iterator[RunningGateway]:
    policy = tmp_path / "gateway.toml"
    policy.write_text(POLICY.format(url=mock_provider.url))
    gw, ledgers = make_gateway(
        tmp_path,
        router=Router(policy),
        settings=GatewaySettings(
            default_project="gw", reload_interval_s=0, max_request_bytes=4 * 1024 * 1024
        ),
    )
    run = start_gateway(gw, ledgers)
    try:
        yield run
    finally:
        run.stop()
        ledgers.close()


def check_shape(route: Route, reply: httpx.Response) -> None:
    """A 4xx answer is JSON in the caller's own error shape."""
    assert reply.headers["content-type"].startswith("application/json"), reply.text[:300]
    body = reply.json()
    if route.shape == "anthropic":
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str) and body["error"]["message"], body
    elif route.shape == "openai":
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        assert "type" in body["error"], body
    else:
        assert body["error"]["code"] == reply.status_code, body
        assert isinstance(body["error"]["status"], str) and body["error"]["message"], body


class Sender:
    def __init__(self, run: RunningGateway, route: Route) -> None:
        self.client = httpx.Client(base_url=run.url, headers=HEADERS, timeout=60)
        self.route = route
        self.failures: list[str] = []
        self.sent = 0

    def send(self, model: str, body: bytes, label: str, expect: set[int] | None) -> None:
        """POST `body`; `expect` is the set of allowed statuses (None: anything below 500)."""
        route = self.route
        reply = self.client.post(route.path(model), content=body)
        self.sent += 1
        status = reply.status_code
        ok = status < 500 if expect is None else status in expect
        if ok and status >= 400:
            try:
                check_shape(route, reply)
            except (AssertionError, KeyError, TypeError, ValueError) as exc:
                ok = False
                label += f" (error shape: {exc!r})"
        if not ok:
            self.failures.append(f"{route.name} {model} {label}: {status} {reply.text[:200]}")

    def send_json(self, model: str, body: Any, label: str, expect: set[int] | None) -> None:
        self.send(model, json.dumps(body).encode(), label, expect)

    def close(self) -> None:
        self.client.close()


def corpus(sender: Sender, model: str) -> None:
    route = sender.route
    base = route.base(model)
    bad = {400}
    # Every top-level field with every JSON type it must not have.
    for field, kinds in route.fields.items():
        for kind, value in SAMPLES.items():
            if kind in kinds or (kind == "i" and "n" in kinds):
                continue
            sender.send_json(model, {**base, field: value}, f"{field}={value!r}", bad)
        sender.send_json(model, {**base, field: None}, f"{field}=null", None)
    if route.streams:
        for field in ("messages", "input", "tools"):
            if field in route.fields:
                body = {**base, "stream": True, field: 5}
                sender.send_json(model, body, f"stream {field}=5", bad)
    if not route.messages:
        odd_bodies(sender, model)
        return
    # Malformed messages and tools.
    key = route.messages_field()
    if route.shape == "gemini":
        bad_lists, odd_lists, tools_kind = BAD_GEMINI_CONTENTS, ODD_GEMINI, "gemini"
    elif route.name == "responses":
        bad_lists, odd_lists, tools_kind = BAD_RESPONSES_INPUT, ODD_RESPONSES, "responses"
    else:
        bad_lists, odd_lists = BAD_CHAT_MESSAGES, ODD_CHAT
        tools_kind = "anthropic" if route.shape == "anthropic" else "openai"
    for value in bad_lists:
        sender.send_json(model, {**base, key: value}, f"{key}={value!r}", bad)
    for value in BAD_TOOLS:
        sender.send_json(model, {**base, "tools": value}, f"tools={value!r}", bad)
    for value in odd_lists:
        sender.send_json(model, {**base, key: value}, f"{key}={value!r}", None)
    for value in ODD_TOOLS[tools_kind]:
        sender.send_json(model, {**base, "tools": value}, f"tools={value!r}", None)
    odd_bodies(sender, model)
    # Huge strings.
    big = "word " * 600_000  # 3 MB: under the 4 MiB limit this gateway has
    if route.shape == "gemini":
        huge = {**base, "contents": [{"role": "user", "parts": [{"text": big}]}]}
    elif route.messages_field() == "input":
        huge = {**base, "input": big}
    else:
        huge = {**base, "messages": [{"role": "user", "content": big}]}
    sender.send_json(model, huge, "a 3 MB prompt", None)
    if model == MODELS[0]:  # refused before routing: once is enough
        over = {**base, key: [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
        sender.send_json(model, over, "over the size limit", {413})
        sender.send(model, b"{" + b" " * (5 * 1024 * 1024) + b"}", "5 MB of blanks", {413})


def odd_bodies(sender: Sender, model: str) -> None:
    """Bodies no route may take, whatever its fields: 400 (or 413), in the caller's shape."""
    route = sender.route
    base = route.base(model)
    bad = {400}
    # Not an object, not JSON, not UTF-8, not finite.
    for raw, label in (
        (b"", "empty body"),
        (b"[]", "an array"),
        (b'"hi"', "a string"),
        (b"5", "a number"),
        (b"null", "null"),
        (b"{", "truncated JSON"),
        (b'{"model": "x",}', "a trailing comma"),
        (json.dumps(base).encode()[:-1] + b', "x": "\xff\xfe"}', "invalid UTF-8"),
        (json.dumps(base).encode()[:-1] + b', "x": "\\ud800"}', "a lone surrogate escape"),
        (json.dumps(base).encode()[:-1] + b', "x": "\\udc00\\ud800"}', "reversed surrogates"),
        (json.dumps(base).encode()[:-1] + b', "temperature": NaN}', "NaN"),
        (json.dumps(base).encode()[:-1] + b', "temperature": -Infinity}', "-Infinity"),
        (json.dumps(base).encode()[:-1] + b', "temperature": 1e999}', "a float overflowing"),
        (json.dumps(base).encode()[:-1] + b', "n": 1' + b"0" * 5000 + b"}", "a 5,000-digit int"),
    ):
        sender.send(model, raw, label, bad)
    # Deep nesting, before anything parses it.
    for raw, label in (
        (deep(100_000), "100,000 nested arrays"),
        (deep(100_000, "{", "}"), "100,000 unbalanced braces"),
        (deep_object(100_000), "100,000 nested objects"),
        (
            json.dumps(base).encode()[:-1] + b', "metadata": ' + deep(100_000) + b"}",
            "100,000 nested arrays in a field",
        ),
        (
            json.dumps(base).encode()[:-1] + b', "metadata": ' + deep_object(1_000) + b"}",
            "1,000 nested objects in a field",
        ),
    ):
        sender.send(model, raw, label, bad)
    if "model" in route.fields:
        sender.send_json(model, {**base, "model": "m" * 1_000_000}, "a 1 MB model name", bad)
    if not route.messages:
        sender.send_json(model, {**base, "x": "word " * 600_000}, "3 MB beside the input", None)
        if model == MODELS[0]:
            sender.send(model, b"{" + b" " * (5 * 1024 * 1024) + b"}", "5 MB of blanks", {413})


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_malformed_bodies_get_400_in_the_callers_format(
    gateway: RunningGateway,
    mock_provider: MockServer,
    route: Route,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="flowloom.gateway")
    sender = Sender(gateway, route)
    try:
        for model in MODELS:
            corpus(sender, model)
        # The base bodies are fine (so each 400 above is about the malformation).
        for model in MODELS:
            if not route.serves or model in route.serves:
                sender.send_json(model, route.base(model), "the valid base body", {200})
            else:  # an embedding model of another API: a clear 400, not a translation
                sender.send_json(model, route.base(model), "another API's model", {400})
    finally:
        sender.close()
    assert not sender.failures, f"{len(sender.failures)} failures:\n" + "\n".join(
        sender.failures[:60]
    )
    # Nothing failed inside the gateway, and every call was recorded once, malformed or
    # not, as a real event (no recorder stub).
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("flowloom.gateway")]
    assert not errors, errors[:5]
    assert len(gateway.events("gw")) == sender.sent


def bearer_shape(path: str, odd: str) -> str:
    """Gemini's shape for its own paths (/v1beta, or a `:method` under /v1/models)."""
    gemini = "v1beta" in path or (path.startswith("/v1/models/") and "%3A" in odd)
    return "gemini" if gemini else "openai"


def test_odd_model_ids_on_every_models_path_never_fail(gateway: RunningGateway) -> None:
    """GET …/models/{id} with odd ids, as each SDK would send them: never a 5xx, and a
    4xx in the caller's shape (chosen by its header)."""
    failures = []
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        for path in GET_PATHS:
            for odd in ODD_IDS:
                for headers, shape in (
                    ({"anthropic-version": "2023-06-01"}, "anthropic"),
                    ({"x-goog-api-key": "k"}, "gemini"),
                    ({"authorization": "Bearer k"}, bearer_shape(path, odd)),
                ):
                    reply = client.get(path.format(id=odd), headers=headers)
                    if reply.status_code >= 500:
                        failures.append(f"{path} {odd[:40]} {headers}: {reply.status_code}")
                    elif reply.status_code >= 400:
                        route = Route("get", shape, {}, False)
                        try:
                            check_shape(route, reply)
                        except (AssertionError, KeyError, TypeError, ValueError) as exc:
                            failures.append(f"{path} {odd[:40]} {headers}: shape {exc!r}")
    assert not failures, failures[:20]
