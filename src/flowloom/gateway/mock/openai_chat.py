"""OpenAI Chat Completions wire format (also Azure OpenAI's deployment routes), models, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowloom.gateway.mock.base import Call, Ids, dumps, json_str
from flowloom.gateway.mock.content import Reply, chunk_words, count_tokens, split_json

__all__ = ["OpenAIChatWire", "openai_error", "openai_models"]

MODELS = (
    ("gpt-4o", "system", 1715367049),
    ("gpt-4o-mini", "system", 1721172741),
    ("gpt-4.1", "system", 1744316542),
    ("gpt-4.1-mini", "system", 1744318173),
    ("gpt-5", "system", 1754425777),
    ("o3", "system", 1744225308),
)
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def openai_error(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> bytes:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    kind, default_code, default_message = _ERRORS.get(
        status,
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500
        else ("invalid_request_error", None, "Invalid request."),
    )
    return dumps(
        {
            "error": {
                "message": message or default_message,
                "type": kind,
                "param": param,
                "code": code if code is not None else default_code,
            }
        }
    ).encode()


def openai_models(model_id: str | None = None) -> Any:
    rows = [
        {"id": mid, "object": "model", "created": created, "owned_by": owner}
        for mid, owner, created in MODELS
    ]
    if model_id is not None:
        return next((r for r in rows if r["id"] == model_id), None)
    return {"object": "list", "data": rows}


def _usage(call: Call, reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": call.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish(reply: Reply) -> str:
    if reply.truncated:
        return "length"
    return "tool_calls" if reply.tool is not None else "stop"


class OpenAIChatWire:
    name = "openai"
    content_type_stream = b"text/event-stream; charset=utf-8"
    default_context_window = 128_000

    def __init__(self, *, azure: bool = False) -> None:
        self.azure = azure

    def parse(self, body: Mapping[str, Any], model_hint: str | None) -> Call:
        tools: list[tuple[str, Mapping[str, Any]]] = []
        for tool in body.get("tools") or ():
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                params = fn.get("parameters")
                tools.append((fn["name"], params if isinstance(params, Mapping) else {}))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        return Call(
            model=str(model_hint if self.azure and model_hint else body.get("model") or ""),
            stream=body.get("stream") is True,
            input_tokens=count_tokens(body.get("messages"), body.get("tools")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            tools=tools,
            messages=body.get("messages"),
            body=body,
            include_usage=include_usage,
        )

    def validate(self, body: Mapping[str, Any]) -> str | None:
        if not self.azure and not isinstance(body.get("model"), str):
            return "you must provide a model parameter"
        if not isinstance(body.get("messages"), list):
            return "Missing required parameter: 'messages'."
        return None

    def _base(self, call: Call, ids: Ids, obj: str) -> dict[str, Any]:
        return {
            "id": ids.make("chatcmpl-mock", 16),
            "object": obj,
            "created": ids.created,
            "model": call.model,
            "system_fingerprint": "fp_mock",
        }

    def complete(self, call: Call, reply: Reply, ids: Ids) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if reply.tool is None else None,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool is not None:
            message["tool_calls"] = [
                {
                    "id": ids.make("call_mock", 16),
                    "type": "function",
                    "function": {"name": reply.tool.name, "arguments": reply.tool.arguments_json},
                }
            ]
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": _finish(reply),
        }
        body = self._base(call, ids, "chat.completion")
        body["choices"] = [choice]
        body["usage"] = _usage(call, reply)
        body["service_tier"] = "default"
        if self.azure:
            choice["content_filter_results"] = _FILTERS
            body["prompt_filter_results"] = [
                {"prompt_index": 0, "content_filter_results": _FILTERS}
            ]
        return dumps(body).encode()

    def _chunk(
        self, base: dict[str, Any], delta: dict[str, Any], finish: str | None, usage: bool
    ) -> bytes:
        chunk = dict(base)
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
        }
        if self.azure and delta:
            choice["content_filter_results"] = {}
        chunk["choices"] = [choice]
        if usage:
            chunk["usage"] = None
        return b"data: " + dumps(chunk).encode() + b"\n\n"

    def stream(self, call: Call, reply: Reply, ids: Ids) -> list[bytes]:
        base = self._base(call, ids, "chat.completion.chunk")
        usage = call.include_usage
        events: list[bytes] = []
        if self.azure:  # Azure opens with the prompt filter results and no choices
            first = {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTERS}],
            }
            events.append(b"data: " + dumps(first).encode() + b"\n\n")
        if reply.tool is None:
            events.append(
                self._chunk(
                    base, {"role": "assistant", "content": "", "refusal": None}, None, usage
                )
            )
            # the content chunks differ only in the delta: one template, filled per piece
            marker = "\x00piece\x00"
            template = self._chunk(base, {"content": marker}, None, usage)
            head, _, tail = template.partition(json_str(marker).encode())
            for piece in chunk_words(reply.text):
                events.append(head + json_str(piece).encode() + tail)
        else:
            events.append(
                self._chunk(
                    base,
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": ids.make("call_mock", 16),
                                "type": "function",
                                "function": {"name": reply.tool.name, "arguments": ""},
                            }
                        ],
                        "refusal": None,
                    },
                    None,
                    usage,
                )
            )
            for piece in split_json(reply.tool.arguments_json):
                events.append(
                    self._chunk(
                        base,
                        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                        None,
                        usage,
                    )
                )
        events.append(self._chunk(base, {}, _finish(reply), usage))
        if usage:
            final = dict(base)
            final["choices"] = []
            final["usage"] = _usage(call, reply)
            events.append(b"data: " + dumps(final).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self, status: int, message: str | None = None) -> bytes:
        return openai_error(status, message)

    def context_error(self, call: Call, limit: int) -> tuple[int, bytes]:
        tokens = max(call.input_tokens, limit + 1)
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages."
        )
        return 400, openai_error(400, message, param="messages", code="context_length_exceeded")
