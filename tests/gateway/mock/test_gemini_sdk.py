"""The official google-genai SDK pointed straight at the simulator."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors, types

from flowloom.gateway.mock import MockServer

MODEL = "gemini-2.5-flash"


def client(mock: MockServer, **extra: object) -> genai.Client:
    options = types.HttpOptions(
        base_url=mock.url,
        retry_options=types.HttpRetryOptions(attempts=1),
        **extra,  # type: ignore[arg-type]
    )
    return genai.Client(api_key="gemini-key", http_options=options)


def test_generate_content(mock_provider: MockServer) -> None:
    c = client(mock_provider)
    response = c.models.generate_content(model=MODEL, contents="Hello")
    assert response.text is not None and "mock provider" in response.text
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count == 3  # "user" + "Hello"
    assert usage.total_token_count == 3 + (usage.candidates_token_count or 0)
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    row = mock_provider.last_request()
    assert row["path"].endswith(f"/models/{MODEL}:generateContent")  # /v1 or /v1beta
    assert row["headers"]["x-goog-api-key"] == "gemini-key" and row["model"] == MODEL


def test_stream_generate_content_sse(mock_provider: MockServer) -> None:
    c = client(mock_provider)
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="Hello"))
    assert len(chunks) > 1
    assert "mock provider" in "".join(c.text or "" for c in chunks)
    last = chunks[-1]
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert mock_provider.last_request()["query"] == "alt=sse"


def test_function_call(mock_provider: MockServer) -> None:
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_time",
                parameters=types.Schema(
                    type=types.Type.OBJECT,
                    properties={
                        "zone": types.Schema(type=types.Type.STRING, enum=["UTC", "CET"]),
                        "hours": types.Schema(type=types.Type.NUMBER),
                    },
                ),
            )
        ]
    )
    c = client(mock_provider)
    response = c.models.generate_content(
        model=MODEL,
        contents="What time is it? Use the tool.",
        config=types.GenerateContentConfig(
            tools=[tool],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    calls = response.function_calls or []
    assert calls and calls[0].name == "get_time" and calls[0].args == {"zone": "UTC", "hours": 1.5}


def test_count_tokens_and_models(mock_provider: MockServer) -> None:
    c = client(mock_provider)
    assert c.models.count_tokens(model=MODEL, contents="Hello").total_tokens == 3
    assert c.models.get(model=MODEL).display_name == "Gemini 2.5 Flash"


def test_stream_without_alt_sse_is_a_json_array(mock_provider: MockServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    data = httpx.post(
        mock_provider.url + f"/v1beta/models/{MODEL}:streamGenerateContent", json=body
    ).json()
    assert isinstance(data, list) and data[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(
    ("fault", "exc", "status"),
    [
        ("429", errors.ClientError, "RESOURCE_EXHAUSTED"),
        ("500", errors.ServerError, "INTERNAL"),
        ("503", errors.ServerError, "UNAVAILABLE"),
        ("context", errors.ClientError, "INVALID_ARGUMENT"),
    ],
)
def test_faults_surface_as_sdk_errors(
    mock_provider: MockServer, fault: str, exc: type[errors.APIError], status: str
) -> None:
    c = client(mock_provider, headers={"x-mock-fault": fault})
    with pytest.raises(exc) as info:
        c.models.generate_content(model=MODEL, contents="Hello")
    assert info.value.status == status
    if fault == "context":
        assert "exceeds the maximum number of tokens" in (info.value.message or "")
