"""Stream translation, event by event: a decoder to Anthropic events, an encoder from them.

Every source stream is decoded into Anthropic stream events (plain dicts: message_start,
content_block_start/delta/stop, message_delta, message_stop, error) and every destination
stream is encoded from them. Each input event yields its output events at once; nothing
waits for the end of the stream, except where the destination format itself needs a whole
value (Gemini carries a function call's arguments as one object, so a tool call's argument
fragments are held until that call's block ends).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

from flowloom.gateway.providers.interface import Format
from flowloom.gateway.translate.common import (
    STOP_FROM_OPENAI,
    STOP_TO_GEMINI,
    STOP_TO_OPENAI,
    anthropic_usage,
    as_int,
    dumps,
    new_id,
)
from flowloom.gateway.translate.errors import (
    SHAPE_ERRORS,
    TranslationError,
    error_body,
    error_event,
    parse_error,
    status_of_kind,
)
from flowloom.gateway.translate.gemini import (
    function_call_part,
    gemini_usage,
    join_signature,
    stop_from_gemini,
    tool_args_json,
    usage_from_gemini,
)
from flowloom.gateway.translate.openai_chat import chat_id, openai_usage, usage_from_openai
from flowloom.gateway.translate.responses import (
    Namespaced,
    function_item,
    message_item,
    response_envelope,
    responses_usage,
    usage_from_responses,
    web_search_item,
)
from flowloom.gateway.wire.sse import SseEvent

__all__ = ["StreamTranslator"]

Event = dict[str, Any]


class _Decoder(Protocol):
    def feed(self, event: SseEvent) -> list[Event]: ...
    def close(self) -> list[Event]: ...


class _Encoder(Protocol):
    def feed(self, event: Event) -> list[SseEvent]: ...
    def close(self) -> list[SseEvent]: ...


def _json(data: str, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise TranslationError(
            f"a {what} stream event is not JSON; the upstream stream is broken"
        ) from None


def _error_event(body: Any, status: int = 500) -> Event:
    status, message, kind = parse_error(body, status)
    status = status_of_kind(kind, status)
    inner = error_body("anthropic", status, message, kind=kind)["error"]
    return {"type": "error", "error": inner}


# ---------------------------------------------------------------- decoders (→ Anthropic)


class _AnthropicDecoder:
    """Anthropic events are the hub's own: only parsed."""

    __slots__ = ()

    def feed(self, event: SseEvent) -> list[Event]:
        data = _json(event.data, "Anthropic")
        return [data] if isinstance(data, dict) and data.get("type") else []

    def close(self) -> list[Event]:
        return []


class _BlockState:
    """The Anthropic content blocks a decoder has opened: which one is open, what kind."""

    __slots__ = ("done", "finish", "open", "open_kind", "started", "tool_seen", "usage")

    def __init__(self, input_tokens: int = 0) -> None:
        self.started = False
        self.done = False
        self.open: int = -1  # index of the open block; the next new block is open + 1
        self.open_kind: str | None = None
        self.finish: str | None = None
        # Until the provider reports usage, message_start carries the gateway's input
        # estimate (a Chat or Responses stream reports usage only at its end); the final
        # message_delta carries the reported counts, which the Anthropic SDKs keep.
        self.usage: Event = anthropic_usage(input_tokens, 0)
        self.tool_seen = False

    def message_start(self, message_id: str, model: str) -> Event:
        self.started = True
        return {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": dict(self.usage),
            },
        }

    def close_block(self, out: list[Event]) -> None:
        if self.open_kind is not None:
            out.append({"type": "content_block_stop", "index": self.open})
            self.open_kind = None

    def text(self, kind: str, text: str, out: list[Event]) -> None:
        if self.open_kind != kind:
            self.close_block(out)
            self.open += 1
            self.open_kind = kind
            block: Event = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out.append({"type": "content_block_start", "index": self.open, "content_block": block})
        delta = (
            {"type": "text_delta", "text": text}
            if kind == "text"
            else {"type": "thinking_delta", "thinking": text}
        )
        out.append({"type": "content_block_delta", "index": self.open, "delta": delta})

    def tool_start(self, call_id: str, name: str, out: list[Event]) -> int:
        self.close_block(out)
        self.open += 1
        self.open_kind = "tool"
        self.tool_seen = True
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        out.append({"type": "content_block_start", "index": self.open, "content_block": block})
        return self.open

    def finish_events(self, out: list[Event], message_id: str, model: str) -> list[Event]:
        if self.done:
            return out
        if not self.started:
            out.append(self.message_start(message_id, model))
        self.close_block(out)
        stop = self.finish or "end_turn"
        if self.tool_seen and stop == "end_turn":
            stop = "tool_use"  # some compatible servers say "stop" after tool calls
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": self.usage,
            }
        )
        out.append({"type": "message_stop"})
        self.done = True
        return out


def _args_delta(index: int, fragment: str) -> Event:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": fragment},
    }


class _OpenAIDecoder:
    """Chat Completions chunks → Anthropic events."""

    __slots__ = ("_by_id", "_id", "_last", "_model", "_s", "_tools")

    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self._model = model
        self._id = ""
        self._s = _BlockState(input_tokens)
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index → Anthropic block index
        self._by_id: dict[str, int] = {}  # tool call id → Anthropic block index
        self._last: int | None = None

    def feed(self, event: SseEvent) -> list[Event]:
        s = self._s
        if s.done:
            return []
        if event.data == "[DONE]":
            return s.finish_events([], self._id or new_id("msg_"), self._model)
        chunk = _json(event.data, "Chat Completions")
        if not isinstance(chunk, dict):
            return []
        out: list[Event] = []
        if chunk.get("error"):
            s.done = True
            return [_error_event(chunk)]
        if not s.started:
            upstream_id = str(chunk.get("id") or new_id(""))
            self._id = upstream_id if upstream_id.startswith("msg_") else "msg_" + upstream_id
            out.append(s.message_start(self._id, self._model))
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                s.text("thinking", reasoning, out)
            content = delta.get("content")
            if content:
                s.text("text", content, out)
            refusal = delta.get("refusal")
            if refusal:
                s.text("text", refusal, out)
                s.finish = "refusal"
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                block = self._tool_block(call, function, out)
                arguments = function.get("arguments")
                if arguments:
                    out.append(_args_delta(block, arguments))
            finish = choice.get("finish_reason")
            if finish:
                if s.finish is None:
                    s.finish = STOP_FROM_OPENAI.get(finish, "end_turn")
                s.close_block(out)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            s.usage = usage_from_openai(usage)
        return out

    def _tool_block(
        self, call: Mapping[str, Any], function: Mapping[str, Any], out: list[Event]
    ) -> int:
        """The block a tool-call fragment belongs to, opening one for a new call.

        OpenAI names a call by `index` (its id only in the first fragment); some compatible
        servers leave out `index` or repeat the id in every fragment, so both are used.
        """
        index = call.get("index")
        call_id = call.get("id")
        block: int | None = None
        if call_id:
            block = self._by_id.get(call_id)
        elif isinstance(index, int):
            block = self._tools.get(index)
        else:
            block = self._last
        if block is None:
            block = self._s.tool_start(call_id or new_id("toolu_"), function.get("name") or "", out)
            if isinstance(index, int):
                self._tools[index] = block
            if call_id:
                self._by_id[call_id] = block
            self._last = block
        return block

    def close(self) -> list[Event]:
        return self._s.finish_events([], self._id or new_id("msg_"), self._model)


class _GeminiDecoder:
    """Gemini streamGenerateContent (alt=sse) chunks → Anthropic events."""

    __slots__ = ("_count", "_id", "_model", "_s")

    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self._model = model
        self._id = ""
        self._s = _BlockState(input_tokens)
        self._count = 0

    def feed(self, event: SseEvent) -> list[Event]:
        s = self._s
        if s.done:
            return []
        chunk = _json(event.data, "Gemini")
        chunks = chunk if isinstance(chunk, list) else [chunk]
        out: list[Event] = []
        for item in chunks:
            if isinstance(item, dict):
                self._chunk(item, out)
        return out

    def _chunk(self, chunk: Mapping[str, Any], out: list[Event]) -> None:
        s = self._s
        if s.done:
            return
        if chunk.get("error"):
            s.done = True
            out.append(_error_event(chunk))
            return
        meta = chunk.get("usageMetadata") or chunk.get("usage_metadata")
        if isinstance(meta, Mapping):
            s.usage = usage_from_gemini(meta)
        if not s.started:
            response_id = str(chunk.get("responseId") or chunk.get("response_id") or new_id(""))
            self._id = response_id if response_id.startswith("msg_") else "msg_" + response_id
            out.append(s.message_start(self._id, self._model))
        candidates = chunk.get("candidates") or ()
        finish: Any = None
        if candidates:
            candidate = candidates[0]
            finish = candidate.get("finishReason") or candidate.get("finish_reason")
            for part in (candidate.get("content") or {}).get("parts") or ():
                self._part(part, out)
        else:
            feedback = chunk.get("promptFeedback") or chunk.get("prompt_feedback") or {}
            if feedback.get("blockReason") or feedback.get("block_reason"):
                finish = "SAFETY"
        if finish:
            s.finish = stop_from_gemini(finish, s.tool_seen)
            s.finish_events(out, self._id, self._model)

    def close(self) -> list[Event]:
        return self._s.finish_events([], self._id or new_id("msg_"), self._model)

    def _part(self, part: Mapping[str, Any], out: list[Event]) -> None:
        s = self._s
        text = part.get("text")
        if isinstance(text, str):
            if text:
                s.text("thinking" if part.get("thought") else "text", text, out)
            return
        call = part.get("functionCall") or part.get("function_call")
        if isinstance(call, Mapping):
            call_id = call.get("id")
            if not call_id:
                self._count += 1
                call_id = f"toolu_gemini_{self._count:04d}"
            block = s.tool_start(join_signature(str(call_id), part), call.get("name") or "", out)
            out.append(_args_delta(block, tool_args_json(call.get("args"))))
            s.close_block(out)
            return
        other = [k for k in part if k not in ("thoughtSignature", "thought_signature", "thought")]
        if other:
            raise TranslationError(
                f"the Gemini model answered with {other[0]!r}, which the caller's format lacks"
            )


class _ResponsesDecoder:
    """Responses API stream events → Anthropic events."""

    __slots__ = ("_id", "_items", "_model", "_s")

    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self._model = model
        self._id = ""
        self._s = _BlockState(input_tokens)
        self._items: dict[str, int] = {}  # function_call item id → Anthropic block index

    def feed(self, event: SseEvent) -> list[Event]:
        s = self._s
        if s.done:
            return []
        data = _json(event.data, "Responses")
        if not isinstance(data, dict):
            return []
        kind = data.get("type") or event.event
        out: list[Event] = []
        if kind == "error":
            s.done = True
            status = status_of_kind(data.get("code"), 500)
            message = data.get("message") or "the upstream stream failed"
            return [_error_event({"error": {"message": message, "type": data.get("code")}}, status)]
        response = data.get("response")
        if not s.started:
            rid = str(response.get("id") if isinstance(response, Mapping) else "") or new_id("")
            self._id = rid if rid.startswith("msg_") else "msg_" + rid
            out.append(s.message_start(self._id, self._model))
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            if data.get("delta"):
                s.text("text", data["delta"], out)
        elif kind == "response.reasoning_summary_text.delta":
            if data.get("delta"):
                s.text("thinking", data["delta"], out)
        elif kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                block = s.tool_start(
                    item.get("call_id") or new_id("call_"), item.get("name") or "", out
                )
                self._items[str(item.get("id"))] = block
                if item.get("arguments"):
                    out.append(_args_delta(block, item["arguments"]))
        elif kind == "response.function_call_arguments.delta":
            target = self._items.get(str(data.get("item_id")))
            if target is not None and data.get("delta"):
                out.append(_args_delta(target, data["delta"]))
        elif kind == "response.output_item.done":
            item = data.get("item") or {}
            if item.get("type") in ("function_call", "message", "reasoning"):
                s.close_block(out)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            if kind == "response.failed":
                s.done = True
                error = (response or {}).get("error") or {}
                return [*out, _error_event({"error": error})]
            if isinstance(response, Mapping):
                s.usage = usage_from_responses(response.get("usage"))
            if kind == "response.incomplete":
                details = (response or {}).get("incomplete_details") or {}
                reason = details.get("reason") if isinstance(details, Mapping) else None
                s.finish = "refusal" if reason == "content_filter" else "max_tokens"
            s.finish_events(out, self._id, self._model)
        return out

    def close(self) -> list[Event]:
        return self._s.finish_events([], self._id or new_id("msg_"), self._model)


# ---------------------------------------------------------------- encoders (Anthropic →)


class _AnthropicEncoder:
    __slots__ = ()

    def feed(self, event: Event) -> list[SseEvent]:
        return [SseEvent(event.get("type"), dumps(event))]

    def close(self) -> list[SseEvent]:
        return []


class _OpenAIEncoder:
    """Anthropic events → Chat Completions chunks, ending with a usage chunk and [DONE].

    The fixed head of every chunk (id, created, model) is serialised once per stream.
    """

    __slots__ = ("_done", "_head", "_include_usage", "_model", "_tools", "_usage")

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._head = ""
        self._tools: dict[int, int] = {}  # Anthropic block index → tool_calls index
        self._usage: Event = anthropic_usage(0, 0)
        self._done = False

    def _start(self, message_id: str) -> None:
        self._head = (
            '{"id":'
            + dumps(message_id)
            + ',"object":"chat.completion.chunk","created":'
            + str(int(time.time()))
            + ',"model":'
            + dumps(self._model)
            + ',"choices":'
        )

    def _chunk(self, delta: str, finish: str | None = None) -> SseEvent:
        if not self._head:
            self._start(new_id("chatcmpl-"))
        reason = "null" if finish is None else '"' + finish + '"'
        return SseEvent(
            None,
            self._head
            + '[{"index":0,"delta":'
            + delta
            + ',"logprobs":null,"finish_reason":'
            + reason
            + "}]}",
        )

    def feed(self, event: Event) -> list[SseEvent]:
        if self._done:
            return []
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return [self._chunk('{"content":' + dumps(delta.get("text") or "") + "}")]
            if dkind == "input_json_delta":
                position = self._tools.get(as_int(event.get("index")))
                if position is None or not delta.get("partial_json"):
                    return []
                return [
                    self._chunk(
                        '{"tool_calls":[{"index":'
                        + str(position)
                        + ',"function":{"arguments":'
                        + dumps(delta["partial_json"])
                        + "}}]}"
                    )
                ]
            if dkind == "thinking_delta":
                text = dumps(delta.get("thinking") or "")
                return [self._chunk('{"reasoning_content":' + text + "}")]
            return []
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            bkind = block.get("type")
            if bkind == "tool_use":
                position = len(self._tools)
                self._tools[as_int(event.get("index"))] = position
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                started = [self._chunk(dumps({"tool_calls": [call]}))]
                if block.get("input"):
                    arguments = {
                        "index": position,
                        "function": {"arguments": dumps(block["input"])},
                    }
                    started.append(self._chunk(dumps({"tool_calls": [arguments]})))
                return started
            if bkind == "text" and block.get("text"):
                return [self._chunk(dumps({"content": block["text"]}))]
            if bkind not in ("text", "thinking", "redacted_thinking", "tool_use"):
                raise TranslationError(
                    f"the model answered with a {bkind!r} block, which Chat Completions lacks"
                )
            return []
        if kind == "message_start":
            message = event.get("message") or {}
            self._start(chat_id(message.get("id")))
            self._usage = dict(message.get("usage") or self._usage)
            return [self._chunk('{"role":"assistant","content":""}')]
        if kind == "message_delta":
            self._merge_usage(event.get("usage"))
            stop = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk("{}", STOP_TO_OPENAI.get(stop, "stop") if stop else "stop")]
        if kind == "message_stop":
            self._done = True
            out: list[SseEvent] = []
            if self._include_usage:
                if not self._head:
                    self._start(new_id("chatcmpl-"))
                usage = dumps(openai_usage(self._usage))
                out.append(SseEvent(None, self._head + '[],"usage":' + usage + "}"))
            out.append(SseEvent(None, "[DONE]"))
            return out
        if kind == "error":
            self._done = True
            return [SseEvent(None, dumps(_caller_error("openai", event)))]
        return []

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            for key, value in usage.items():
                if isinstance(value, int) and (value or key == "output_tokens"):
                    self._usage[key] = value

    def close(self) -> list[SseEvent]:
        return []

    @property
    def usage(self) -> Event:
        """The usage the stream reported, in Anthropic's shape (kept even when not sent)."""
        return self._usage

    @property
    def include_usage(self) -> bool:
        return self._include_usage


def _caller_error(fmt: Format, event: Mapping[str, Any]) -> dict[str, Any]:
    inner = event.get("error") or {}
    kind = inner.get("type") if isinstance(inner, Mapping) else None
    message = inner.get("message") if isinstance(inner, Mapping) else None
    status = status_of_kind(kind if isinstance(kind, str) else None, 500)
    if status == 529 and fmt != "anthropic":
        status = 503
    return error_body(fmt, status, str(message or "the upstream stream failed"))


class _GeminiEncoder:
    """Anthropic events → Gemini alt=sse chunks (a tool call goes out whole at its block's end)."""

    __slots__ = ("_args", "_call", "_id", "_model", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = ""
        self._usage: Event = anthropic_usage(0, 0)
        self._call: Event | None = None
        self._args: list[str] = []

    def _chunk(
        self, parts: list[Event], finish: str | None = None, usage: bool = False
    ) -> SseEvent:
        candidate: Event = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        chunk: Event = {"candidates": [candidate]}
        if usage:
            chunk["usageMetadata"] = gemini_usage(self._usage)
        chunk["modelVersion"] = self._model
        chunk["responseId"] = self._id
        return SseEvent(None, dumps(chunk))

    def feed(self, event: Event) -> list[SseEvent]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return [self._chunk([{"text": delta.get("text") or ""}])]
            if dkind == "input_json_delta":
                self._args.append(delta.get("partial_json") or "")
                return []
            if dkind == "thinking_delta":
                return [self._chunk([{"text": delta.get("thinking") or "", "thought": True}])]
            return []
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            bkind = block.get("type")
            if bkind == "tool_use":
                self._call = {"id": block.get("id"), "name": block.get("name")}
                self._args = [dumps(block["input"])] if block.get("input") else []
                return []
            if bkind == "text" and block.get("text"):
                return [self._chunk([{"text": block["text"]}])]
            if bkind in ("server_tool_use", "web_search_tool_result"):
                return []  # a search (Google Search grounding): its findings are in the text
            if bkind not in ("text", "thinking", "redacted_thinking"):
                raise TranslationError(
                    f"the model answered with a {bkind!r} block, which Gemini cannot carry"
                )
            return []
        if kind == "content_block_stop":
            call = self._call
            if call is None:
                return []
            self._call = None
            text = "".join(self._args)
            self._args = []
            try:
                call["args"] = json.loads(text) if text else {}
            except ValueError:
                raise TranslationError(
                    f"the model's arguments for tool {call.get('name')!r} are not valid JSON"
                ) from None
            return [self._chunk([function_call_part(call["id"] or "", call["name"], call["args"])])]
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = str(message.get("id") or new_id(""))
            self._usage = dict(message.get("usage") or self._usage)
            return []
        if kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, Mapping):
                for key, value in usage.items():
                    if isinstance(value, int) and (value or key == "output_tokens"):
                        self._usage[key] = value
            stop = (event.get("delta") or {}).get("stop_reason")
            finish = STOP_TO_GEMINI.get(stop, "STOP") if stop else "STOP"
            return [self._chunk([{"text": ""}], finish, usage=True)]
        if kind == "error":
            return [SseEvent(None, dumps(_caller_error("gemini", event)))]
        return []

    def close(self) -> list[SseEvent]:
        return []


class _ResponsesEncoder:
    """Anthropic events → Responses API stream events (created … completed)."""

    __slots__ = (
        "_blocks",
        "_created",
        "_id",
        "_model",
        "_namespaced",
        "_output",
        "_seq",
        "_stop",
        "_usage",
    )

    def __init__(self, model: str, namespaced: Namespaced | None = None) -> None:
        self._model = model
        self._namespaced = namespaced
        self._id = ""
        self._created = 0
        self._seq = 0
        self._usage: Event = anthropic_usage(0, 0)
        self._output: list[Event] = []  # finished output items, for response.completed
        # Anthropic block index → [output_index, item, accumulated text/arguments parts]
        self._blocks: dict[int, list[Any]] = {}
        self._stop: str | None = None

    def _event(self, kind: str, body: Event) -> SseEvent:
        body["type"] = kind
        body["sequence_number"] = self._seq
        self._seq += 1
        return SseEvent(kind, dumps(body))

    def _response(self, status: str, usage: bool) -> Event:
        return response_envelope(
            self._id,
            self._model,
            self._created,
            status=status,
            output=list(self._output),
            usage=responses_usage(self._usage) if usage else None,
        )

    def feed(self, event: Event) -> list[SseEvent]:
        kind = event.get("type")
        if kind == "content_block_delta":
            entry = self._blocks.get(as_int(event.get("index")))
            if entry is None:
                return []
            position, item, pieces = entry
            delta = event.get("delta") or {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                text = delta.get("text") or ""
                pieces.append(text)
                return [
                    self._event(
                        "response.output_text.delta",
                        {
                            "item_id": item["id"],
                            "output_index": position,
                            "content_index": 0,
                            "delta": text,
                            "logprobs": [],
                        },
                    )
                ]
            if dkind == "input_json_delta":
                fragment = delta.get("partial_json") or ""
                pieces.append(fragment)
                return [
                    self._event(
                        "response.function_call_arguments.delta",
                        {"item_id": item["id"], "output_index": position, "delta": fragment},
                    )
                ]
            return []
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_stop":
            return self._block_stop(as_int(event.get("index")))
        if kind == "message_start":
            message = event.get("message") or {}
            base = str(message.get("id") or new_id(""))
            self._id = base if base.startswith("resp_") else "resp_" + base
            self._created = int(time.time())
            self._usage = dict(message.get("usage") or self._usage)
            return [
                self._event("response.created", {"response": self._response("in_progress", False)}),
                self._event(
                    "response.in_progress", {"response": self._response("in_progress", False)}
                ),
            ]
        if kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, Mapping):
                for key, value in usage.items():
                    if isinstance(value, int) and (value or key == "output_tokens"):
                        self._usage[key] = value
            self._stop = (event.get("delta") or {}).get("stop_reason")
            return []
        if kind == "message_stop":
            if self._stop in ("max_tokens", "model_context_window_exceeded"):
                return [
                    self._event(
                        "response.incomplete", {"response": self._response("incomplete", True)}
                    )
                ]
            return [
                self._event("response.completed", {"response": self._response("completed", True)})
            ]
        if kind == "error":
            inner = _caller_error("openai", event)["error"]
            return [
                self._event(
                    "error", {"code": inner["code"], "message": inner["message"], "param": None}
                )
            ]
        return []

    def _block_start(self, event: Event) -> list[SseEvent]:
        block = event.get("content_block") or {}
        bkind = block.get("type")
        index = as_int(event.get("index"))
        position = len(self._output) + len(self._blocks)
        if bkind == "text":
            item = message_item(f"msg_{self._id}_{index}", "", status="in_progress")
            self._blocks[index] = [position, item, [block.get("text") or ""]]
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            return [
                self._event("response.output_item.added", {"output_index": position, "item": item}),
                self._event(
                    "response.content_part.added",
                    {
                        "item_id": item["id"],
                        "output_index": position,
                        "content_index": 0,
                        "part": part,
                    },
                ),
            ]
        if bkind == "tool_use":
            call_id = str(block.get("id") or new_id("call_"))
            item = function_item(
                f"fc_{call_id}",
                call_id,
                block.get("name") or "",
                "",
                "in_progress",
                self._namespaced,
            )
            initial = dumps(block["input"]) if block.get("input") else ""
            self._blocks[index] = [position, item, [initial]]
            return [
                self._event("response.output_item.added", {"output_index": position, "item": item})
            ]
        if bkind == "server_tool_use" and block.get("name") == "web_search":
            item = web_search_item(block, "in_progress")
            self._blocks[index] = [
                position,
                item,
                [dumps(block["input"]) if block.get("input") else ""],
            ]
            return [
                self._event("response.output_item.added", {"output_index": position, "item": item})
            ]
        if bkind in ("thinking", "redacted_thinking", "web_search_tool_result"):
            return []  # the search's findings reach the caller in the text that follows
        raise TranslationError(
            f"the model answered with a {bkind!r} block, which the Responses API cannot carry here"
        )

    def _block_stop(self, index: int) -> list[SseEvent]:
        entry = self._blocks.pop(index, None)
        if entry is None:
            return []
        position, item, pieces = entry
        text = "".join(pieces)
        if item["type"] == "message":
            done = message_item(item["id"], text)
            part = done["content"][0]
            self._output.append(done)
            common = {"item_id": item["id"], "output_index": position, "content_index": 0}
            return [
                self._event("response.output_text.done", {**common, "text": text, "logprobs": []}),
                self._event("response.content_part.done", {**common, "part": part}),
                self._event("response.output_item.done", {"output_index": position, "item": done}),
            ]
        if item["type"] == "web_search_call":
            try:
                found = json.loads(text) if text else {}
            except ValueError:
                found = {}
            done = web_search_item({"id": item["id"][3:], "input": found})
            self._output.append(done)
            return [
                self._event("response.output_item.done", {"output_index": position, "item": done})
            ]
        done = function_item(item["id"], item["call_id"], item["name"], text)
        if "namespace" in item:
            done["namespace"] = item["namespace"]
        self._output.append(done)
        return [
            self._event(
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": position, "arguments": text},
            ),
            self._event("response.output_item.done", {"output_index": position, "item": done}),
        ]

    def close(self) -> list[SseEvent]:
        return []


# ---------------------------------------------------------------- the translator


def _decoder(src: Format, model: str, input_tokens: int) -> _Decoder:
    if src == "anthropic":
        return _AnthropicDecoder()
    if src == "openai":
        return _OpenAIDecoder(model, input_tokens)
    if src == "gemini":
        return _GeminiDecoder(model, input_tokens)
    return _ResponsesDecoder(model, input_tokens)


def _encoder(
    dst: Format, model: str, include_usage: bool, namespaced: Namespaced | None
) -> _Encoder:
    if dst == "anthropic":
        return _AnthropicEncoder()
    if dst == "openai":
        return _OpenAIEncoder(model, include_usage)
    if dst == "gemini":
        return _GeminiEncoder(model)
    return _ResponsesEncoder(model, namespaced)


class StreamTranslator:
    """Translates one stream from the provider's format (`src`) to the caller's (`dst`).

    `feed` takes each upstream event as it arrives and returns the caller's events for it
    right away; `close` at the end of the upstream stream returns whatever the caller's
    format still needs to end validly (a Gemini stream has no end marker of its own).
    `model` is the model name the caller sees. `include_usage` (Chat Completions callers)
    adds the final usage chunk; pass the caller's stream_options.include_usage.

    Neither method raises for content it cannot translate: a stream has already begun, so
    the caller gets an error event in its own format instead (HTTP status 502 inside it),
    `error` keeps the message for the record, and later input is ignored.
    """

    __slots__ = ("_decoder", "_dst", "_encoder", "_same", "error")

    def __init__(
        self,
        src: Format,
        dst: Format,
        *,
        model: str,
        include_usage: bool = True,
        input_tokens: int = 0,
        namespaced: Namespaced | None = None,
    ) -> None:
        self._same = src == dst
        self._dst: Format = dst
        self._decoder = _decoder(src, model, input_tokens)
        self._encoder = _encoder(dst, model, include_usage, namespaced)
        self.error: str | None = None

    def feed(self, event: SseEvent) -> list[SseEvent]:
        if self._same:
            return [event]
        if self.error is not None:
            return []
        try:
            events = self._decoder.feed(event)
            if not events:
                return []
            encoder = self._encoder
            if len(events) == 1:
                return encoder.feed(events[0])
            out: list[SseEvent] = []
            for item in events:
                out.extend(encoder.feed(item))
            return out
        except TranslationError as exc:
            return self._fail(exc)
        except SHAPE_ERRORS as exc:
            return self._fail(TranslationError(f"an event of an unexpected shape ({exc})"))

    def close(self) -> list[SseEvent]:
        if self._same or self.error is not None:
            return []
        try:
            out: list[SseEvent] = []
            for item in self._decoder.close():
                out.extend(self._encoder.feed(item))
            out.extend(self._encoder.close())
            return out
        except TranslationError as exc:
            return self._fail(exc)
        except SHAPE_ERRORS as exc:
            return self._fail(TranslationError(f"an event of an unexpected shape ({exc})"))

    @property
    def withheld_usage(self) -> Event | None:
        """Usage the caller did not ask to see (Chat Completions without include_usage).

        Anthropic's shape; None when the caller's stream carries its usage itself. The
        gateway records it so that accounting does not fall back to an estimate.
        """
        encoder = self._encoder
        if isinstance(encoder, _OpenAIEncoder) and not encoder.include_usage:
            return encoder.usage
        return None

    def _fail(self, exc: TranslationError) -> list[SseEvent]:
        self.error = exc.message
        return [error_event(self._dst, 502, exc.message)]
