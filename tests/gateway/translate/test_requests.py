"""Request translation, direction by direction: messages, system prompts, tools, images."""

from __future__ import annotations

from typing import Any

import pytest

from flowloom.errors import InputError
from flowloom.gateway.translate import TranslationError, translate_request
from tests.gateway.translate.samples import WEATHER_TOOL_SCHEMA

PNG = "iVBORw0KGgo="

CONVERSATION: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 512,
    "system": "You are terse.",
    "temperature": 0.3,
    "stop_sequences": ["END"],
    "tools": [
        {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_TOOL_SCHEMA}
    ],
    "tool_choice": {"type": "auto"},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris? See:"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "call the tool", "signature": "abc"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
}


# ---------------------------------------------------------------- Anthropic → OpenAI


def test_anthropic_to_openai_conversation() -> None:
    out = translate_request(CONVERSATION, "anthropic", "openai", model="gpt-4o")
    assert out["model"] == "gpt-4o"
    assert out["max_completion_tokens"] == 512
    assert out["stop"] == ["END"]
    assert out["temperature"] == 0.3
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now",
                "parameters": WEATHER_TOOL_SCHEMA,
            },
        }
    ]
    assert out["tool_choice"] == "auto"
    assert out["messages"] == [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris? See:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert "stream" not in out


def test_anthropic_to_openai_stream_asks_for_usage() -> None:
    out = translate_request({**CONVERSATION, "stream": True}, "anthropic", "openai", model="m")
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_anthropic_tool_choice_to_openai(choice: dict[str, Any], expected: Any) -> None:
    out = translate_request(
        {**CONVERSATION, "tool_choice": choice}, "anthropic", "openai", model="m"
    )
    assert out["tool_choice"] == expected


def test_disable_parallel_tool_use_to_openai() -> None:
    body = {**CONVERSATION, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}
    assert translate_request(body, "anthropic", "openai", model="m")["parallel_tool_calls"] is False


def test_system_blocks_to_openai_keep_each_block() -> None:
    system = [
        {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "two"},
    ]
    out = translate_request({**CONVERSATION, "system": system}, "anthropic", "openai", model="m")
    assert out["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
    }


def test_tool_result_with_image_to_openai_follows_as_user_message() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "screenshot:"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        ],
    }
    body = {
        **CONVERSATION,
        "messages": [*CONVERSATION["messages"][:2], {"role": "user", "content": [result]}],
    }
    out = translate_request(body, "anthropic", "openai", model="m")
    assert out["messages"][-2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "screenshot:",
    }
    assert out["messages"][-1]["role"] == "user"
    assert out["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/a.png"},
    }


def test_anthropic_server_tool_is_refused_for_openai() -> None:
    body = {**CONVERSATION, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    with pytest.raises(TranslationError, match="web_search_20250305"):
        translate_request(body, "anthropic", "openai", model="m")


def test_translation_error_is_an_input_error() -> None:
    assert issubclass(TranslationError, InputError)
    assert TranslationError.status == 400


# ---------------------------------------------------------------- OpenAI → Anthropic


OPENAI_CONVERSATION: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/map.jpg", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "Thanks!"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA, "strict": True},
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "temperature": 1.5,
    "stop": "STOP",
    "user": "u-1",
}


def test_openai_to_anthropic_conversation() -> None:
    out = translate_request(OPENAI_CONVERSATION, "openai", "anthropic", model="claude-x")
    assert out["model"] == "claude-x"
    assert out["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use tools."},
    ]
    assert out["max_tokens"] == 4096
    assert out["temperature"] == 1.0
    assert out["stop_sequences"] == ["STOP"]
    assert out["tools"] == [{"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/map.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]


def test_openai_data_url_image_becomes_base64_block() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
                ],
            }
        ]
    }
    out = translate_request(body, "openai", "anthropic", model="c")
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ]


def test_openai_max_tokens_fields() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 77}
    assert translate_request(body, "openai", "anthropic", model="c")["max_tokens"] == 77
    body = {**body, "max_completion_tokens": 99}
    assert translate_request(body, "openai", "anthropic", model="c")["max_tokens"] == 99


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"n": 2}, "n > 1"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "custom"),
    ],
)
def test_openai_features_anthropic_cannot_carry_are_refused(
    extra: dict[str, Any], words: str
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(TranslationError, match=words):
        translate_request(body, "openai", "anthropic", model="c")


def test_openai_invalid_tool_arguments_are_refused() -> None:
    bad = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    body = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [bad]}]
    }
    with pytest.raises(TranslationError, match="not valid JSON"):
        translate_request(body, "openai", "anthropic", model="c")


def test_openai_input_audio_is_refused() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
    with pytest.raises(TranslationError, match="input_audio"):
        translate_request(
            {"messages": [{"role": "user", "content": [part]}]}, "openai", "anthropic", model="c"
        )


# ---------------------------------------------------------------- Anthropic → Gemini


def test_anthropic_to_gemini_conversation() -> None:
    out = translate_request(CONVERSATION, "anthropic", "gemini", model="gemini-2.5-flash")
    assert "model" not in out and "stream" not in out
    assert out["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert out["generationConfig"] == {
        "maxOutputTokens": 512,
        "temperature": 0.3,
        "stopSequences": ["END"],
    }
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather now",
                    "parametersJsonSchema": WEATHER_TOOL_SCHEMA,
                }
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert out["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather in Paris? See:"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {
                        "id": "toolu_1",
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "toolu_1",
                        "name": "get_weather",
                        "response": {"output": "sunny, 21C"},
                    }
                },
                {"text": "And tomorrow?"},
            ],
        },
    ]


def test_anthropic_forced_tool_to_gemini() -> None:
    body = {**CONVERSATION, "tool_choice": {"type": "tool", "name": "get_weather"}}
    out = translate_request(body, "anthropic", "gemini", model="g")
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_error_tool_result_to_gemini() -> None:
    messages = [
        *CONVERSATION["messages"][:2],
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "boom",
                    "is_error": True,
                }
            ],
        },
    ]
    out = translate_request(
        {**CONVERSATION, "messages": messages}, "anthropic", "gemini", model="g"
    )
    assert out["contents"][-1]["parts"][0]["functionResponse"]["response"] == {"error": "boom"}


def test_url_image_to_gemini_needs_a_known_type() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x.test/photo.JPG?s=1"}}
    out = translate_request(
        {"messages": [{"role": "user", "content": [image]}]}, "anthropic", "gemini", model="g"
    )
    assert out["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/photo.JPG?s=1"}}
    ]
    image = {"type": "image", "source": {"type": "url", "url": "https://x.test/render"}}
    with pytest.raises(TranslationError, match="media type"):
        translate_request(
            {"messages": [{"role": "user", "content": [image]}]}, "anthropic", "gemini", model="g"
        )


def test_tool_result_without_its_call_is_refused_for_gemini() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_missing", "content": "x"}
    with pytest.raises(TranslationError, match="toolu_missing"):
        translate_request(
            {"messages": [{"role": "user", "content": [result]}]}, "anthropic", "gemini", model="g"
        )


# ---------------------------------------------------------------- Gemini → Anthropic


def test_gemini_to_anthropic_matches_calls_without_ids() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Be kind."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 3}}},
                ],
            },
        ],
        "generationConfig": {"maxOutputTokens": 100, "temperature": 2.0, "topK": 5},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING", "nullable": True}},
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    out = translate_request(body, "gemini", "anthropic", model="claude")
    assert out["system"] == "Be kind."
    assert out["max_tokens"] == 100 and out["temperature"] == 1.0 and out["top_k"] == 5
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": ["string", "null"]}},
                "required": ["city"],
            },
        }
    ]
    assert out["tool_choice"] == {"type": "any"}
    calls = out["messages"][1]["content"]
    results = out["messages"][2]["content"]
    assert [c["id"] for c in calls] == [r["tool_use_id"] for r in results]
    assert len({c["id"] for c in calls}) == 2
    assert results[0]["content"] == "sunny"
    assert results[1]["content"] == '{"temp":3}'


def test_gemini_ids_and_snake_case_parts() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": PNG}}]},
            {
                "role": "model",
                "parts": [{"function_call": {"id": "fc-9", "name": "f", "args": {}}}],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "function_response": {
                            "id": "fc-9",
                            "name": "f",
                            "response": {"error": "nope"},
                        }
                    }
                ],
            },
        ]
    }
    out = translate_request(body, "gemini", "anthropic", model="c")
    assert out["messages"][0]["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG,
    }
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "fc-9", "content": "nope", "is_error": True}
    ]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"tools": [{"codeExecution": {}}]}, "codeExecution"),
        ({"generationConfig": {"responseMimeType": "application/json"}}, "structured output"),
        ({"generationConfig": {"candidateCount": 3}}, "candidateCount"),
        ({"cachedContent": "cachedContents/1"}, "cachedContent"),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"fileData": {"fileUri": "gs://b/x.png", "mimeType": "image/png"}}
                        ],
                    }
                ]
            },
            "gs://",
        ),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"inlineData": {"mimeType": "audio/wav", "data": "AA"}}],
                    }
                ]
            },
            "audio/wav",
        ),
    ],
)
def test_gemini_features_anthropic_cannot_carry_are_refused(
    extra: dict[str, Any], words: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **extra}
    with pytest.raises(TranslationError, match=words):
        translate_request(body, "gemini", "anthropic", model="c")


def test_gemini_stream_flag_comes_from_the_caller() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    out = translate_request(body, "gemini", "openai", model="gpt", stream=True)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    out = translate_request(
        {**OPENAI_CONVERSATION, "stream": True}, "openai", "gemini", model="g", stream=True
    )
    assert "stream" not in out


# ---------------------------------------------------------------- Responses → others


RESPONSES_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "instructions": "Be brief.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather?"},
                {"type": "input_image", "image_url": "https://x.test/a.png"},
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny."}],
        },
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER_TOOL_SCHEMA,
            "strict": True,
        }
    ],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "max_output_tokens": 300,
    "stream": True,
}


def test_responses_to_anthropic() -> None:
    out = translate_request(RESPONSES_REQUEST, "responses", "anthropic", model="claude")
    assert out["system"] == "Be brief."
    assert out["max_tokens"] == 300 and out["stream"] is True
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert [m["role"] for m in out["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}
    ]


def test_responses_to_chat_completions() -> None:
    out = translate_request(RESPONSES_REQUEST, "responses", "openai", model="gpt-4o")
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert out["messages"][2]["tool_calls"][0]["id"] == "call_1"
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_responses_string_input() -> None:
    out = translate_request({"model": "x", "input": "hello"}, "responses", "anthropic", model="c")
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "file_search"}]}, "file_search"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}},
            "structured output",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "item_reference"),
    ],
)
def test_responses_features_that_cannot_cross(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(TranslationError, match=words):
        translate_request(
            {"model": "x", "input": "hi", **extra}, "responses", "anthropic", model="c"
        )


def test_anthropic_to_responses_request() -> None:
    with pytest.raises(TranslationError, match="stop_sequences"):
        translate_request(CONVERSATION, "anthropic", "responses", model="gpt-4.1")
    body = {k: v for k, v in CONVERSATION.items() if k != "stop_sequences"}
    out = translate_request(body, "anthropic", "responses", model="gpt-4.1")
    assert out["instructions"] == "You are terse." and out["store"] is False
    kinds = [i.get("type", i.get("role")) for i in out["input"]]
    assert kinds == ["user", "assistant", "function_call", "function_call_output", "user"]
    assert out["input"][0]["content"][1] == {
        "type": "input_image",
        "image_url": f"data:image/png;base64,{PNG}",
        "detail": "auto",
    }
    assert out["tools"][0]["parameters"] == WEATHER_TOOL_SCHEMA


def test_same_format_only_replaces_the_model() -> None:
    out = translate_request(CONVERSATION, "anthropic", "anthropic", model="claude-other")
    assert out == {**CONVERSATION, "model": "claude-other"}


# ---------------------------------------------------------------- settings carried past the hub

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def test_structured_output_and_sampling_openai_to_gemini_and_responses() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
        },
        "frequency_penalty": 0.5,
        "seed": 7,
    }
    gemini = translate_request(body, "openai", "gemini", model="g")
    assert gemini["generationConfig"] == {
        "maxOutputTokens": 4096,
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
        "frequencyPenalty": 0.5,
        "seed": 7,
    }
    responses = translate_request(body, "openai", "responses", model="r")
    assert responses["text"] == {
        "format": {"type": "json_schema", "name": "reply", "schema": SCHEMA, "strict": True}
    }
    assert "_flowloom_extra" not in gemini and "_flowloom_extra" not in responses


def test_structured_output_gemini_and_responses_to_openai() -> None:
    gemini = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        },
    }
    out = translate_request(gemini, "gemini", "openai", model="o")
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    responses = {"model": "x", "input": "hi", "text": {"format": {"type": "json_object"}}}
    assert translate_request(responses, "responses", "openai", model="o")["response_format"] == {
        "type": "json_object"
    }


def test_the_hub_key_never_reaches_a_provider() -> None:
    body = {**CONVERSATION, "_flowloom_extra": {"format": {"type": "json_object"}}}
    for dst in ("openai", "gemini", "responses"):
        out = translate_request(
            {k: v for k, v in body.items() if k != "stop_sequences"}, "anthropic", dst, model="m"
        )
        assert "_flowloom_extra" not in out and "response_format" not in out
    plain = {"messages": [{"role": "user", "content": "hi"}], "seed": 3}
    assert "_flowloom_extra" not in translate_request(plain, "openai", "anthropic", model="c")
