"""The official openai SDK (chat, responses, Azure) pointed straight at the simulator."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from flowloom.gateway.mock import MockServer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 6},
                    "limit": {"type": "integer", "minimum": 5},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                    "exact": {"type": "boolean"},
                },
                "required": ["query"],
            },
        },
    }
]
ARGS = {"query": "mockxx", "limit": 5, "tags": ["a"], "exact": True}


def client(mock: MockServer, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=mock.url + "/v1", max_retries=0, **kw)  # type: ignore[arg-type]


def azure(mock: MockServer) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        api_key="azure-key", azure_endpoint=mock.url, api_version="2024-10-21", max_retries=0
    )


def test_chat_non_streaming(mock_provider: MockServer) -> None:
    done = client(mock_provider).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert done.object == "chat.completion" and done.model == "gpt-4o-mini"
    choice = done.choices[0]
    assert choice.finish_reason == "stop" and "mock provider" in (choice.message.content or "")
    assert done.usage is not None
    assert done.usage.prompt_tokens == 3  # "user" + "Hello": 9 chars
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_chat_stream_with_usage_chunk(mock_provider: MockServer) -> None:
    chunks = list(
        client(mock_provider).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "mock provider" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk(mock_provider: MockServer) -> None:
    chunks = list(
        client(mock_provider).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)


def test_wire_stream_ends_with_done(mock_provider: MockServer) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    text = httpx.post(mock_provider.url + "/v1/chat/completions", json=body).text
    assert text.endswith("data: [DONE]\n\n")
    assert all(b.startswith("data: ") for b in text.split("\n\n") if b)


def test_chat_tool_call(mock_provider: MockServer) -> None:
    done = client(mock_provider).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Please use the tool lookup"}],
        tools=TOOLS,  # type: ignore[arg-type]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == ARGS


def test_chat_tool_call_streaming_accumulates(mock_provider: MockServer) -> None:
    with client(mock_provider).chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "use the tool"}],
        tools=TOOLS,  # type: ignore[arg-type]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == ARGS
    assert final.choices[0].finish_reason == "tool_calls"


def test_models_list(mock_provider: MockServer) -> None:
    ids = [m.id for m in client(mock_provider).models.list()]
    assert "gpt-4o" in ids
    assert client(mock_provider).models.retrieve("gpt-4o").owned_by == "system"


def test_responses_non_streaming(mock_provider: MockServer) -> None:
    resp = client(mock_provider).responses.create(
        model="gpt-4.1", input="Hello", instructions="Be nice"
    )
    assert resp.status == "completed" and "mock provider" in resp.output_text
    assert resp.usage is not None and resp.usage.input_tokens == 3  # "Hello" + "Be nice"


def test_responses_stream_events(mock_provider: MockServer) -> None:
    with client(mock_provider).responses.stream(model="gpt-4.1", input="Hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert kinds[-1] == "response.completed"
    assert "mock provider" in final.output_text


def test_responses_function_call_stream(mock_provider: MockServer) -> None:
    tools = [{"type": "function", "name": "lookup", **TOOLS[0]["function"], "strict": False}]  # type: ignore[dict-item]
    with client(mock_provider).responses.stream(
        model="gpt-4.1",
        input=[{"role": "user", "content": "use the tool"}],
        tools=tools,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    item = final.output[0]
    assert item.type == "function_call" and item.name == "lookup"
    assert json.loads(item.arguments) == ARGS


def test_azure_chat_and_stream(mock_provider: MockServer) -> None:
    c = azure(mock_provider)
    done = c.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "Hi"}]
    )
    assert done.model == "my-deployment" and "mock provider" in (
        done.choices[0].message.content or ""
    )
    chunks = list(
        c.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert chunks[0].choices == []  # Azure's prompt-filter chunk
    assert "mock provider" in "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
    row = mock_provider.last_request()
    assert row["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert row["query"] == "api-version=2024-10-21"
    assert row["headers"]["api-key"] == "azure-key" and row["format"] == "azure"


def test_azure_without_api_version_is_404(mock_provider: MockServer) -> None:
    response = httpx.post(
        mock_provider.url + "/openai/deployments/d/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 404 and "error" in response.json()


@pytest.mark.parametrize(
    ("fault", "exc"),
    [
        ("429", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("529", openai.InternalServerError),
        ("401", openai.AuthenticationError),
        ("404", openai.NotFoundError),
    ],
)
def test_faults_surface_as_sdk_exceptions(
    mock_provider: MockServer, fault: str, exc: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exc) as info:
        client(mock_provider).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": fault},
        )
    assert info.value.status_code == int(fault)
    assert set(info.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


def test_rate_limit_retry_after_and_code(mock_provider: MockServer) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client(mock_provider).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": "429;retry_after=3"},
        )
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.code == "rate_limit_exceeded"


def test_responses_fault(mock_provider: MockServer) -> None:
    with pytest.raises(openai.InternalServerError):
        client(mock_provider).responses.create(
            model="gpt-4.1", input="Hi", extra_headers={"x-mock-fault": "500"}
        )


def test_context_length_exceeded(mock_provider: MockServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(mock_provider).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-mock-fault": "context"},
        )
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as info2:
        client(mock_provider).responses.create(
            model="gpt-4.1", input="Hi", extra_headers={"x-mock-fault": "context"}
        )
    assert info2.value.code == "context_length_exceeded"


def test_mid_stream_disconnect(mock_provider: MockServer) -> None:
    got: list[str] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in client(mock_provider).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            extra_headers={"x-mock-fault": "disconnect;after=2"},
        ):
            got.append(chunk.choices[0].delta.content or "")
    assert len(got) == 2
