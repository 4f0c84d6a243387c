"""OpenAI Chat Completions ⇄ Anthropic Messages: requests and whole (non-streamed) responses.

Anthropic keeps tool calls and results as content blocks inside messages; Chat Completions
keeps calls in `tool_calls` and results as separate `role: "tool"` messages. The converters
move between the two layouts keeping order, ids and content, and refuse what one side
cannot carry instead of dropping it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.translate.common import (
    DEFAULT_MAX_TOKENS,
    STOP_FROM_OPENAI,
    STOP_TO_OPENAI,
    anthropic_usage,
    as_blocks,
    as_int,
    dumps,
    loads_object,
    new_id,
    parse_data_url,
    usage_numbers,
)
from flowloom.gateway.translate.errors import TranslationError
from flowloom.gateway.translate.extras import EXTRA_KEY, json_format, sampling_from

__all__ = [
    "anthropic_to_openai_request",
    "anthropic_to_openai_response",
    "openai_to_anthropic_request",
    "openai_to_anthropic_response",
]

# Sampling hints with no Anthropic equivalent: they tune, they carry no content, so they
# are left out (documented in docs/gateway-translation.md).
_SAMPLING_NAMES: Mapping[str, str] = MappingProxyType(
    {k: k for k in ("frequency_penalty", "presence_penalty", "seed")}
)
_OPENAI_REFUSED = ("audio", "prediction", "functions", "function_call", "web_search_options")


# ---------------------------------------------------------------- Anthropic → OpenAI


def _image_url_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        url = str(source.get("url") or "")
    else:
        raise TranslationError(
            f"an image with source type {kind!r} cannot be sent to an OpenAI model; "
            "send it as base64 or a URL"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        data = f"data:application/pdf;base64,{source.get('data')}"
        file: dict[str, Any] = {"file_data": data, "filename": block.get("title") or "document.pdf"}
        return {"type": "file", "file": file}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data") or ""}
    raise TranslationError(
        "only base64 PDF and plain-text documents can be sent to an OpenAI model; "
        f"this document's source is {source.get('type')!r}"
    )


def _user_part(block: Mapping[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return _image_url_part(block)
    if kind == "document":
        return _document_part(block)
    raise TranslationError(
        f"a {kind!r} content block cannot be sent to an OpenAI model; remove it or route "
        "this request to an Anthropic model"
    )


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part as a plain string (what every OpenAI-compatible server accepts)."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _tool_result_messages(
    block: Mapping[str, Any], out: list[dict[str, Any]], images: list[dict[str, Any]]
) -> None:
    content = block.get("content")
    if isinstance(content, str) or content is None:
        text = content or ""
    else:
        texts: list[str] = []
        for item in content:
            kind = item.get("type")
            if kind == "text":
                texts.append(item.get("text") or "")
            elif kind == "image":
                images.append(_image_url_part(item))
            else:
                raise TranslationError(
                    f"a tool result holding a {kind!r} block cannot be sent to an OpenAI model"
                )
        text = "\n".join(texts)
    out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})


def _openai_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[dict[str, Any]]
    system = body.get("system")
    if system:
        if isinstance(system, str):
            out.append({"role": "system", "content": system})
        else:
            texts = [{"type": "text", "text": b.get("text") or ""} for b in system]
            out.append({"role": "system", "content": _collapse(texts)})
    for message in body.get("messages") or ():
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        blocks = as_blocks(content)
        if role == "assistant":
            texts = []
            calls: list[dict[str, Any]] = []
            for block in blocks:
                kind = block.get("type")
                if kind == "text":
                    texts.append({"type": "text", "text": block.get("text") or ""})
                elif kind == "tool_use":
                    function = {"name": block.get("name"), "arguments": dumps(block.get("input"))}
                    calls.append({"id": block.get("id"), "type": "function", "function": function})
                elif kind in ("thinking", "redacted_thinking"):
                    continue  # signed reasoning only the Anthropic model that wrote it can read
                else:
                    raise TranslationError(
                        f"an assistant {kind!r} block cannot be sent to an OpenAI model"
                    )
            if not texts and not calls:
                continue  # only thinking: OpenAI refuses an assistant message with nothing
            msg: dict[str, Any] = {
                "role": "assistant",
                "content": _collapse(texts) if texts else None,
            }
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            continue
        parts: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        for block in blocks:
            if block.get("type") == "tool_result":
                _tool_result_messages(block, out, images)
            else:
                parts.append(_user_part(block))
        if images:
            note = {"type": "text", "text": "(images returned by the tool call above)"}
            out.append({"role": "user", "content": [note, *images]})
        if parts:
            out.append({"role": role, "content": _collapse(parts)})
    return out


def _openai_tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise TranslationError(
                f"the Anthropic server tool {kind!r} cannot be used with an OpenAI model; "
                "route this request to an Anthropic model"
            )
        function: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    return out


def chat_id(upstream: Any) -> str:
    """A Chat Completions id (`chatcmpl-…`) for a reply whose upstream id is `upstream`."""
    base = str(upstream or "")
    if not base:
        return new_id("chatcmpl-")
    return base if base.startswith("chatcmpl-") else "chatcmpl-" + base


def anthropic_to_openai_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages request as a Chat Completions request for `model`."""
    for key in ("container", "mcp_servers"):
        if body.get(key):
            raise TranslationError(
                f"{key!r} is an Anthropic-only feature; route this request to an Anthropic model"
            )
    out: dict[str, Any] = {"model": model, "messages": _openai_messages(body)}
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(src) is not None:
            out[dst] = body[src]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    tools = body.get("tools")
    if tools:
        out["tools"] = _openai_tools(tools)
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and tools:  # OpenAI refuses tool_choice without tools
        kind = choice.get("type")
        if kind == "auto":
            out["tool_choice"] = "auto"
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("user_id"):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def anthropic_to_openai_response(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages response as a `chat.completion` object."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            function = {"name": block.get("name"), "arguments": dumps(block.get("input") or {})}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    stop = body.get("stop_reason")
    return {
        "id": chat_id(body.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": STOP_TO_OPENAI.get(stop, "stop") if stop else "stop",
                "logprobs": None,
            }
        ],
        "usage": openai_usage(body.get("usage")),
    }


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage as Chat Completions usage (prompt tokens include cached ones)."""
    inp, out, cache_read, cache_write = usage_numbers(usage)
    prompt = inp + cache_read + cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


# ---------------------------------------------------------------- OpenAI → Anthropic


def image_block(url: str) -> dict[str, Any]:
    """An Anthropic image block for an image URL or a base64 data: URL."""
    data = parse_data_url(url)
    if data is not None:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": data[0], "data": data[1]},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("an image URL must be http(s) or a base64 data: URL")


def _file_block(file: Mapping[str, Any]) -> dict[str, Any]:
    data = parse_data_url(file.get("file_data") or "")
    if data is None or data[0] != "application/pdf":
        raise TranslationError(
            "only inline base64 PDF files (file_data) can be sent to an Anthropic model; "
            "file ids are not portable"
        )
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": data[0], "data": data[1]},
    }
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            blocks.append(image_block(url or ""))
        elif kind == "file":
            blocks.append(_file_block(part.get("file") or {}))
        elif kind == "refusal":
            blocks.append({"type": "text", "text": part.get("refusal") or ""})
        else:
            raise TranslationError(
                f"a {kind!r} content part cannot be sent to an Anthropic model; remove it"
            )
    return blocks


def _text_content(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text":
            raise TranslationError(f"a {part.get('type')!r} part cannot appear in this message")
        texts.append(part.get("text") or "")
    return "\n".join(texts)


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a message of `role`, merging into the previous one of the same role.

    Nothing is added for no blocks: Anthropic refuses a message with empty content.
    """
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        previous = out[-1]
        if isinstance(previous["content"], str):
            previous["content"] = as_blocks(previous["content"])
        previous["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _tool_result(call_id: Any, content: Any) -> dict[str, Any]:
    if isinstance(content, list):
        blocks = _content_blocks(content)
        result: Any = blocks
        if all(b["type"] == "text" for b in blocks):
            result = "\n".join(b["text"] for b in blocks)
    else:
        result = content or ""
    return {"type": "tool_result", "tool_use_id": call_id, "content": result}


def openai_to_anthropic_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A Chat Completions request as an Anthropic Messages request for `model`."""
    for key in _OPENAI_REFUSED:
        if body.get(key):
            raise TranslationError(
                f"{key!r} cannot be sent to an Anthropic model; remove it or route to OpenAI"
            )
    if as_int(body.get("n")) > 1:
        raise TranslationError("n > 1 cannot be sent to an Anthropic model; ask for one choice")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise TranslationError("logprobs are not available from an Anthropic model; remove them")
    extra: dict[str, Any] = {}
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        extra["format"] = json_format(
            "json_schema", spec.get("schema"), spec.get("name"), spec.get("strict")
        )
    elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        extra["format"] = json_format("json_object")
    elif isinstance(fmt, Mapping) and fmt.get("type") not in (None, "text"):
        raise TranslationError(f"response_format {fmt.get('type')!r} cannot be translated")
    sampling_from(body, extra, _SAMPLING_NAMES)
    modalities = body.get("modalities")
    if modalities and any(m != "text" for m in modalities):
        raise TranslationError("only text output is available from an Anthropic model")

    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _text_content(content)
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            if isinstance(content, str) and not (messages and messages[-1]["role"] == "user"):
                messages.append({"role": "user", "content": content})
            else:
                _append(messages, "user", _content_blocks(content))
        elif role == "assistant":
            blocks = _content_blocks(content)
            if message.get("refusal"):
                blocks.append({"type": "text", "text": message["refusal"]})
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                name = function.get("name")
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or new_id("toolu_"),
                        "name": name,
                        "input": loads_object(
                            function.get("arguments"), f"the arguments of tool call {name!r}"
                        ),
                    }
                )
            if message.get("function_call"):
                raise TranslationError(
                    "legacy function_call messages are not supported; use tool_calls"
                )
            _append(messages, "assistant", blocks)
        elif role == "tool":
            _append(messages, "user", [_tool_result(message.get("tool_call_id"), content)])
        else:
            raise TranslationError(
                f"a message with role {role!r} cannot be sent to an Anthropic model"
            )

    out: dict[str, Any] = {"model": model}
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 else system
    out["messages"] = messages
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(float(temperature), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        converted = []
        for tool in tools:
            if tool.get("type") != "function":
                raise TranslationError(
                    f"a {tool.get('type')!r} tool cannot be sent to an Anthropic model; "
                    "only function tools translate"
                )
            function = tool.get("function") or {}
            item: dict[str, Any] = {"name": function.get("name")}
            if function.get("description"):
                item["description"] = function["description"]
            item["input_schema"] = function.get("parameters") or {
                "type": "object",
                "properties": {},
            }
            converted.append(item)
        out["tools"] = converted
    choice = body.get("tool_choice")
    tool_choice: dict[str, Any] | None = None
    if choice == "auto":
        tool_choice = {"type": "auto"}
    elif choice == "required":
        tool_choice = {"type": "any"}
    elif choice == "none":
        tool_choice = {"type": "none"}
    elif isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        tool_choice = {"type": "tool", "name": name}
    user = body.get("user") or body.get("safety_identifier")
    return finish_anthropic_request(out, body, bool(tools), tool_choice, user, extra)


def finish_anthropic_request(
    out: dict[str, Any],
    body: Mapping[str, Any],
    has_tools: bool,
    tool_choice: dict[str, Any] | None,
    user: object,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The end both OpenAI formats' requests share as Anthropic Messages: parallel tool
    use, the end user's id, the stream flag and the fields passed through unknown."""
    if body.get("parallel_tool_calls") is False and has_tools:
        tool_choice = tool_choice or {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    if extra:
        out[EXTRA_KEY] = extra
    return out


def openai_to_anthropic_response(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A `chat.completion` object as an Anthropic Messages response."""
    choices = body.get("choices") or ()
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if p.get("type") == "text")
    if text:
        content.append({"type": "text", "text": text})
    if message.get("refusal"):
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        name = function.get("name")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": name,
                "input": loads_object(function.get("arguments"), f"tool call {name!r} arguments"),
            }
        )
    finish = choice.get("finish_reason")
    stop = STOP_FROM_OPENAI.get(finish, "end_turn") if finish else "end_turn"
    if message.get("refusal"):
        stop = "refusal"
    elif stop == "end_turn" and message.get("tool_calls"):
        stop = "tool_use"  # some compatible servers say "stop" after tool calls
    upstream_id = str(body.get("id") or new_id(""))
    return {
        "id": upstream_id if upstream_id.startswith("msg_") else "msg_" + upstream_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_from_openai(body.get("usage")),
    }


def usage_from_openai(usage: Any) -> dict[str, Any]:
    """Chat Completions usage as Anthropic usage (input excludes cached prompt tokens)."""
    if not isinstance(usage, Mapping):
        return anthropic_usage(0, 0)
    details = usage.get("prompt_tokens_details")
    cached = as_int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    prompt = as_int(usage.get("prompt_tokens"))
    return anthropic_usage(max(prompt - cached, 0), as_int(usage.get("completion_tokens")), cached)
