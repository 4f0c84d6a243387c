"""Every operation of docs/gateway.md's SDK set-ups, run as written, through the default
set-up: `flowloom gateway serve --open-access` (a real process, no policy, pass-through)
in front of the provider simulator, with the official anthropic, openai (also Azure)
and google-genai SDKs.

Besides the documented calls: Gemini's `:streamGenerateContent` without `alt=sse` is one
JSON array; a 404 comes in the format of the SDK that asked; translated Anthropic replies
carry `msg_…` ids and usage; and each exchange is recorded with the right counts (a
count_tokens call: input tokens = the count, no output).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.gateway.mock import MockServer
from tests.gateway.doc_snippets import at, doc_block
from tests.gateway.processes import exchanges_with_bodies as recorded_exchanges
from tests.gateway.processes import gateway_process

KEY = "local"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, _mock_provider_session: MockServer
) -> Iterator[tuple[str, Path, MockServer]]:
    """One gateway process for the module: (its URL, its database, the simulator)."""
    tmp = tmp_path_factory.mktemp("surfaces")
    mock = _mock_provider_session
    env = {
        "FLOWLOOM_OPENAI_BASE_URL": mock.url + "/v1",
        "FLOWLOOM_ANTHROPIC_BASE_URL": mock.url,
        "FLOWLOOM_GEMINI_BASE_URL": mock.url,
    }
    with gateway_process(tmp, env=env) as url:
        yield url, tmp / "gateway.db", mock


def run_doc(url: str, database: Path, sdk: str, calls: int) -> dict[str, Any]:
    """Execute the documented block of `sdk` against `url`, which makes `calls` model
    calls (GETs are not recorded), until all are recorded; its variables."""
    before = len(recorded_exchanges(database))
    names: dict[str, Any] = {"KEY": KEY}
    exec(compile(at(url, doc_block("python", f"# {sdk}\n")), f"docs:{sdk}", "exec"), names)
    settled(database, before + calls)
    return names


def settled(database: Path, count: int) -> None:
    """Wait (bounded) until `count` exchanges are recorded: the recorder writes after."""
    deadline = time.monotonic() + 180
    while len(recorded_exchanges(database)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} exchanges recorded"
        time.sleep(0.05)


def exchanges(database: Path, endpoint_part: str) -> list[dict[str, Any]]:
    return [e for e in recorded_exchanges(database) if endpoint_part in e["refs"]["endpoint"]]


def test_anthropic_sdk_as_documented(served: tuple[str, Path, MockServer]) -> None:
    url, database, _ = served
    ns = run_doc(url, database, "anthropic", 2)
    assert ns["reply"].id.startswith("msg_") and ns["reply"].content[0].text
    assert ns["count"].input_tokens > 0
    ids = [m.id for m in ns["models"]]
    assert "claude-sonnet-4-5-20250929" in ids  # the provider's own list, passed through
    assert ns["model"].id == "claude-sonnet-4-5-20250929"
    counted = exchanges(database, "/v1/messages/count_tokens")[-1]["refs"]
    assert counted["input_tokens"] == ns["count"].input_tokens
    assert counted["output_tokens"] == 0 and counted["operation"] == "count_tokens"
    assert "usage_estimated" not in counted  # forwarded to the provider, not estimated


def test_openai_sdk_as_documented(served: tuple[str, Path, MockServer]) -> None:
    url, database, mock = served
    ns = run_doc(url, database, "openai", 3)
    assert ns["chat"].choices[0].message.content and ns["response"].output_text
    vectors = [d.embedding for d in ns["embedding"].data]
    assert len(vectors) == 2 and len(vectors[0]) == 16 and vectors[0] != vectors[1]
    assert "gpt-4o" in [m.id for m in ns["models"]] and ns["model"].id == "gpt-4o"
    refs = exchanges(database, "/v1/embeddings")[-1]["refs"]
    assert refs["provider"] == "openai" and refs["status"] == 200
    assert refs["input_tokens"] == ns["embedding"].usage.prompt_tokens
    assert refs["output_tokens"] == 0
    assert mock.requests("/v1/embeddings")[-1]["body"]["model"] == "text-embedding-3-small"


def test_gemini_sdk_as_documented(served: tuple[str, Path, MockServer]) -> None:
    url, database, mock = served
    ns = run_doc(url, database, "google-genai", 4)
    assert ns["reply"].text and "".join(c.text or "" for c in ns["stream"])
    assert ns["count"].total_tokens > 0
    assert [len(e.values) for e in ns["embedding"].embeddings] == [16, 16]
    assert "models/gemini-2.5-flash" in [m.name for m in ns["models"]]
    assert ns["model"].name == "models/gemini-2.5-flash"
    counted = exchanges(database, ":countTokens")[-1]["refs"]
    assert counted["endpoint"].startswith("/v1/models/")  # the SDK's default version
    assert counted["input_tokens"] == ns["count"].total_tokens
    assert counted["output_tokens"] == 0
    embedded = exchanges(database, ":batchEmbedContents")[-1]["refs"]
    assert embedded["provider"] == "gemini" and embedded["usage_estimated"] is True
    assert mock.requests("/v1beta/models/gemini-embedding-001:batchEmbedContents")


def test_azure_as_documented(served: tuple[str, Path, MockServer]) -> None:
    url, database, _ = served
    ns = run_doc(url, database, "azure", 4)
    assert ns["chat"].choices[0].message.content and ns["v1_chat"].choices[0].message.content
    assert len(ns["embedding"].data[0].embedding) == 16
    assert ns["v1_response"].output_text
    endpoints = {e["refs"]["endpoint"] for e in recorded_exchanges(database)}
    assert {
        "/openai/deployments/gpt-4o/chat/completions",
        "/openai/deployments/text-embedding-3-small/embeddings",
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
    } <= endpoints


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "claude-sonnet-4-5-20250929"])
def test_gemini_stream_without_alt_sse_is_one_json_array(
    served: tuple[str, Path, MockServer], model: str
) -> None:
    url, database, _ = served
    before = len(recorded_exchanges(database))
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
    with httpx.stream(
        "POST",
        f"{url}/v1beta/models/{model}:streamGenerateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
        timeout=30,
    ) as reply:
        raw = b"".join(reply.iter_bytes())
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(
            "application/json"
        )
    chunks = json.loads(raw)
    assert isinstance(chunks, list) and chunks
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text
    settled(database, before + 1)
    event = exchanges(database, f"{model}:streamGenerateContent")[-1]
    assert event["refs"]["stream"] is True and event["refs"]["output_tokens"] > 0
    recorded = event["_body"]["response"]["candidates"][0]["content"]["parts"]
    assert "".join(p.get("text", "") for p in recorded) == text


@pytest.mark.parametrize(
    ("method", "path", "headers", "shape"),
    [
        ("GET", "/v1/models/no-such-model", {"x-goog-api-key": KEY}, "gemini"),
        ("GET", "/v1beta/models/gemini-9-nope", {}, "gemini"),
        ("POST", "/v1beta/models/gemini-2.5-flash:nosuchMethod", {}, "gemini"),
        ("POST", "/v1/models/gemini-2.5-flash:nosuchMethod", {}, "gemini"),
        ("GET", "/v1/models/claude-nope-1", {"anthropic-version": "2023-06-01"}, "anthropic"),
        ("GET", "/v1/models/gpt-nope-1", {}, "openai"),
    ],
)
def test_a_404_comes_in_the_format_of_the_sdk_that_asked(
    served: tuple[str, Path, MockServer],
    method: str,
    path: str,
    headers: dict[str, str],
    shape: str,
) -> None:
    url, _, _ = served
    reply = httpx.request(
        method, url + path, headers={"authorization": f"Bearer {KEY}", **headers}, timeout=30
    )
    assert reply.status_code == 404
    error = reply.json()
    if shape == "gemini":
        assert error["error"]["code"] == 404 and error["error"]["status"] == "NOT_FOUND"
    elif shape == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    else:
        assert error["error"]["message"] and "code" in error["error"]


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash"])
def test_translated_anthropic_replies_carry_msg_ids_and_usage(
    served: tuple[str, Path, MockServer], model: str
) -> None:
    import anthropic

    url, database, _ = served
    before = len(recorded_exchanges(database))
    client = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
    hello = [{"role": "user", "content": "Say hello."}]
    reply = client.messages.create(model=model, max_tokens=100, messages=hello)  # type: ignore[arg-type]
    assert reply.id.startswith("msg_") and reply.usage.input_tokens > 0
    with client.messages.stream(model=model, max_tokens=100, messages=hello) as stream:  # type: ignore[arg-type]
        started = None
        for event in stream:
            if event.type == "message_start":
                started = event.message
        final = stream.get_final_message()
    assert started is not None and started.id.startswith("msg_")
    assert started.usage.input_tokens > 0  # the provider's count, or the gateway's estimate
    assert final.usage.input_tokens == reply.usage.input_tokens  # the provider's, at the end
    assert final.usage.output_tokens > 0
    settled(database, before + 2)
    refs = exchanges(database, "/v1/messages")[-1]["refs"]
    assert refs["input_tokens"] == final.usage.input_tokens
    assert refs["output_tokens"] == final.usage.output_tokens


@pytest.mark.parametrize("model", ["claude-sonnet-4-5-20250929", "gemini-2.5-flash"])
def test_translated_chat_and_responses_replies_carry_their_own_ids(
    served: tuple[str, Path, MockServer], model: str
) -> None:
    import openai

    url, database, _ = served
    before = len(recorded_exchanges(database))
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    hello = [{"role": "user", "content": "Say hello."}]
    chat = client.chat.completions.create(model=model, messages=hello)  # type: ignore[arg-type]
    assert chat.id.startswith("chatcmpl-") and chat.usage is not None
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=hello,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.id.startswith("chatcmpl-") for c in chunks)
    streamed = chunks[-1].usage
    assert streamed is not None and streamed.prompt_tokens == chat.usage.prompt_tokens
    response = client.responses.create(model=model, input="Say hello.")
    assert response.id.startswith("resp_") and response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    settled(database, before + 3)
    reported = [
        (chat.usage.prompt_tokens, chat.usage.completion_tokens),
        (streamed.prompt_tokens, streamed.completion_tokens),
        (response.usage.input_tokens, response.usage.output_tokens),
    ]
    recorded = recorded_exchanges(database)[before:]
    assert [(e["refs"]["input_tokens"], e["refs"]["output_tokens"]) for e in recorded] == reported
    assert not any("usage_estimated" in e["refs"] for e in recorded)
