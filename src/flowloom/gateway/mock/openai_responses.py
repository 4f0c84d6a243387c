"""OpenAI Responses wire format: /v1/responses as one object or typed SSE events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowloom.gateway.mock.base import Call, Ids, dumps, json_str
from flowloom.gateway.mock.content import Reply, chunk_words, count_tokens, split_json
from flowloom.gateway.mock.openai_chat import openai_error

__all__ = ["OpenAIResponsesWire"]


def _usage(call: Call, reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": call.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": call.input_tokens + reply.output_tokens,
    }


class OpenAIResponsesWire:
    name = "responses"
    content_type_stream = b"text/event-stream; charset=utf-8"
    default_context_window = 128_000

    def parse(self, body: Mapping[str, Any], model_hint: str | None) -> Call:
        tools: list[tuple[str, Mapping[str, Any]]] = []
        for tool in body.get("tools") or ():
            if (
                isinstance(tool, Mapping)
                and tool.get("type") == "function"
                and isinstance(tool.get("name"), str)
            ):
                params = tool.get("parameters")
                tools.append((tool["name"], params if isinstance(params, Mapping) else {}))
        max_tokens = body.get("max_output_tokens")
        raw_input = body.get("input")
        messages: Any = raw_input
        if isinstance(raw_input, str):
            messages = [{"role": "user", "content": raw_input}]
        elif isinstance(raw_input, list):  # message items and plain {"role","content"} items
            messages = [
                item
                for item in raw_input
                if isinstance(item, Mapping) and item.get("type", "message") == "message"
            ]
        return Call(
            model=str(body.get("model") or model_hint or ""),
            stream=body.get("stream") is True,
            input_tokens=count_tokens(body.get("instructions"), raw_input, body.get("tools")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            tools=tools,
            messages=messages,
            body=body,
        )

    def validate(self, body: Mapping[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str):
            return "Missing required parameter: 'model'."
        return None

    def _items(self, reply: Reply, ids: Ids, *, done: bool) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if reply.text and reply.tool is None:
            items.append(self._message(reply.text if done else None, ids, done=done))
        if reply.tool is not None:
            items.append(self._function_call(reply, ids, done=done))
        return items

    def _message(self, text: str | None, ids: Ids, *, done: bool) -> dict[str, Any]:
        content = [] if text is None else [self._part(text)]
        return {
            "id": ids.make("msg_mock", 16),
            "type": "message",
            "status": "completed" if done else "in_progress",
            "content": content,
            "role": "assistant",
        }

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _function_call(self, reply: Reply, ids: Ids, *, done: bool) -> dict[str, Any]:
        assert reply.tool is not None
        return {
            "id": ids.make("fc_mock", 16),
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "arguments": reply.tool.arguments_json if done else "",
            "call_id": ids.make("call_mock", 16),
            "name": reply.tool.name,
        }

    def _response(self, call: Call, reply: Reply, ids: Ids, *, done: bool) -> dict[str, Any]:
        body = call.body
        status = "completed"
        incomplete = None
        if reply.truncated:
            status = "incomplete"
            incomplete = {"reason": "max_output_tokens"}
        return {
            "id": ids.make("resp_mock", 16),
            "object": "response",
            "created_at": ids.created,
            "status": status if done else "in_progress",
            "background": False,
            "completed_at": ids.created if done else None,
            "error": None,
            "incomplete_details": incomplete if done else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": call.max_tokens,
            "model": call.model,
            "output": self._items(reply, ids, done=True) if done else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": list(body.get("tools") or []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": _usage(call, reply) if done else None,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    def complete(self, call: Call, reply: Reply, ids: Ids) -> bytes:
        return dumps(self._response(call, reply, ids, done=True)).encode()

    def stream(self, call: Call, reply: Reply, ids: Ids) -> list[bytes]:
        seq = 0
        events: list[bytes] = []

        def emit(kind: str, data: dict[str, Any]) -> None:
            nonlocal seq
            payload = {"type": kind, **data, "sequence_number": seq}
            seq += 1
            events.append(f"event: {kind}\ndata: {dumps(payload)}\n\n".encode())

        emit("response.created", {"response": self._response(call, reply, ids, done=False)})
        emit("response.in_progress", {"response": self._response(call, reply, ids, done=False)})
        index = 0
        if reply.text and reply.tool is None:
            item_id = ids.make("msg_mock", 16)
            emit(
                "response.output_item.added",
                {"output_index": index, "item": self._message(None, ids, done=False)},
            )
            emit(
                "response.content_part.added",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": self._part(""),
                },
            )
            head = (
                'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                f'"item_id":"{item_id}","output_index":{index},"content_index":0,"delta":'
            )
            for piece in chunk_words(reply.text):
                events.append(
                    f'{head}{json_str(piece)},"logprobs":[],"sequence_number":{seq}}}\n\n'.encode()
                )
                seq += 1
            emit(
                "response.output_text.done",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "text": reply.text,
                    "logprobs": [],
                },
            )
            emit(
                "response.content_part.done",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": self._part(reply.text),
                },
            )
            emit(
                "response.output_item.done",
                {"output_index": index, "item": self._message(reply.text, ids, done=True)},
            )
            index += 1
        if reply.tool is not None:
            item_id = ids.make("fc_mock", 16)
            emit(
                "response.output_item.added",
                {"output_index": index, "item": self._function_call(reply, ids, done=False)},
            )
            for piece in split_json(reply.tool.arguments_json):
                emit(
                    "response.function_call_arguments.delta",
                    {"item_id": item_id, "output_index": index, "delta": piece},
                )
            emit(
                "response.function_call_arguments.done",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "name": reply.tool.name,
                    "arguments": reply.tool.arguments_json,
                },
            )
            emit(
                "response.output_item.done",
                {"output_index": index, "item": self._function_call(reply, ids, done=True)},
            )
        final = self._response(call, reply, ids, done=True)
        kind = "response.incomplete" if reply.truncated else "response.completed"
        emit(kind, {"response": final})
        return events

    def error(self, status: int, message: str | None = None) -> bytes:
        return openai_error(status, message)

    def context_error(self, call: Call, limit: int) -> tuple[int, bytes]:
        message = (
            "Your input exceeds the context window of this model. "
            "Please adjust your input and try again."
        )
        return 400, openai_error(400, message, param="input", code="context_length_exceeded")
