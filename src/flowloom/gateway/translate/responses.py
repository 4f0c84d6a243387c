"""OpenAI Responses ⇄ Anthropic Messages: requests and whole (non-streamed) responses.

The Responses API keeps a conversation as a flat list of items: messages, `function_call`
items and `function_call_output` items. Anthropic nests calls in assistant messages and
results in user messages; the converters fold and unfold between the two. Server-side state
(`previous_response_id`, stored conversations) cannot cross to another provider and is
refused. Of the hosted tools, `web_search` becomes Anthropic's web search server tool (and
from there Gemini's Google Search); a `namespace` of function tools (Codex groups its
sub-agent tools so) is flattened into function tools named `{namespace}__{name}`, and the
calls the model makes come back as `function_call` items with their `namespace` again
(`namespaced_tools` gives the map the response side needs). Other hosted tools are refused.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flowloom.gateway.translate.common import (
    DEFAULT_MAX_TOKENS,
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
from flowloom.gateway.translate.extras import json_format
from flowloom.gateway.translate.openai_chat import finish_anthropic_request, image_block

__all__ = [
    "NAMESPACE_SEPARATOR",
    "Namespaced",
    "anthropic_to_responses_request",
    "anthropic_to_responses_response",
    "namespaced_tools",
    "responses_to_anthropic_request",
    "responses_to_anthropic_response",
    "responses_usage",
]

NAMESPACE_SEPARATOR = "__"
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
"""Anthropic's web search server tool: what a Responses `web_search` tool becomes."""
_WEB_SEARCH_TYPES = ("web_search", "web_search_preview", "web_search_2025_08_26")

Namespaced = Mapping[str, tuple[str, str]]
"""Flattened tool name → (namespace, name inside it)."""


def namespaced_tools(body: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The flattened names of the functions inside the `namespace` tools of a Responses
    request, each with its (namespace, name): the response side restores them."""
    out: dict[str, tuple[str, str]] = {}
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping) or tool.get("type") != "namespace":
            continue
        space = tool.get("name")
        inner = tool.get("tools")
        for item in inner if isinstance(inner, list) else ():
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                out[f"{space}{NAMESPACE_SEPARATOR}{item['name']}"] = (str(space), item["name"])
    return out


def _function_tool(tool: Mapping[str, Any], name: Any, prefix: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if description or prefix:
        item["description"] = prefix + (description or "")
    item["input_schema"] = tool.get("parameters") or {"type": "object", "properties": {}}
    return item


def _hub_tools(tools: Any) -> list[dict[str, Any]]:
    """Responses tools as Anthropic tools: functions, namespaces flattened, web search."""
    out: list[dict[str, Any]] = []
    for tool in tools or ():
        kind = tool.get("type")
        if kind == "function":
            out.append(_function_tool(tool, tool.get("name")))
        elif kind == "namespace":
            space = tool.get("name")
            about = tool.get("description")
            prefix = f"({space}: {about}) " if about else ""
            for inner in tool.get("tools") or ():
                if inner.get("type") != "function":
                    raise TranslationError(
                        f"the {inner.get('type')!r} tool inside namespace {space!r} cannot "
                        "be used with this model; only function tools translate"
                    )
                name = f"{space}{NAMESPACE_SEPARATOR}{inner.get('name')}"
                out.append(_function_tool(inner, name, prefix))
        elif kind in _WEB_SEARCH_TYPES:
            if not any(t.get("type") == WEB_SEARCH_TOOL["type"] for t in out):
                out.append(dict(WEB_SEARCH_TOOL))
        else:
            raise TranslationError(
                f"the hosted tool {kind!r} cannot be used with this model; function, "
                "namespace and web_search tools translate"
            )
    return out


# ---------------------------------------------------------------- Responses → Anthropic


def _input_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            blocks.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "input_image":
            if not part.get("image_url"):
                raise TranslationError(
                    "an input_image must carry image_url (a URL or data: URL); file ids are "
                    "not portable to another provider"
                )
            blocks.append(image_block(part["image_url"]))
        elif kind == "input_file":
            data = part.get("file_data") or ""
            block = image_block(data) if data.startswith("data:image/") else None
            if block is None:
                parsed = parse_data_url(data)
                if parsed is None or parsed[0] != "application/pdf":
                    raise TranslationError(
                        "only inline base64 PDF files can be sent to this model; file ids "
                        "and URLs are not portable"
                    )
                block = {
                    "type": "document",
                    "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]},
                }
            blocks.append(block)
        else:
            raise TranslationError(f"a {kind!r} content part cannot be sent to this model")
    return blocks


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def responses_to_anthropic_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A Responses API request as an Anthropic Messages request for `model`."""
    for key in ("previous_response_id", "conversation", "prompt"):
        if body.get(key):
            raise TranslationError(
                f"{key!r} refers to state stored at OpenAI; send the whole conversation as "
                "input to reach another provider"
            )
    extra: dict[str, Any] = {}
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object"):
        extra["format"] = json_format(
            fmt["type"], fmt.get("schema"), fmt.get("name"), fmt.get("strict")
        )
    elif isinstance(fmt, Mapping) and fmt.get("type") not in (None, "text"):
        raise TranslationError(f"text.format {fmt.get('type')!r} cannot be translated")
    system: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        system.append({"type": "text", "text": body["instructions"]})
    messages: list[dict[str, Any]] = []
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items or ():
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            blocks = _input_blocks(item.get("content"))
            if role in ("system", "developer"):
                system.extend(b for b in blocks if b["type"] == "text")
            elif role in ("user", "assistant"):
                _append(messages, role, blocks)
            else:
                raise TranslationError(f"a message with role {role!r} cannot be translated")
        elif kind == "function_call":
            name = item.get("name")
            if item.get("namespace"):
                name = f"{item['namespace']}{NAMESPACE_SEPARATOR}{name}"
            block = {
                "type": "tool_use",
                "id": item.get("call_id") or new_id("call_"),
                "name": name,
                "input": loads_object(item.get("arguments"), f"function call {name!r} arguments"),
            }
            _append(messages, "assistant", [block])
        elif kind == "function_call_output":
            output = item.get("output")
            content: Any = output if isinstance(output, str) else _input_blocks(output)
            result = {"type": "tool_result", "tool_use_id": item.get("call_id"), "content": content}
            _append(messages, "user", [result])
        elif kind in ("reasoning", "web_search_call"):
            # Encrypted reasoning only the OpenAI model that wrote it can read; a hosted
            # search already answered (its findings are in the messages that follow).
            continue
        else:
            raise TranslationError(
                f"a {kind!r} input item cannot be sent to this model; only messages and "
                "function calls translate"
            )
    out: dict[str, Any] = {"model": model}
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 else system
    out["messages"] = messages
    max_tokens = body.get("max_output_tokens")
    out["max_tokens"] = max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(float(temperature), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    tools = _hub_tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    tool_choice: dict[str, Any] | None = None
    if choice in ("auto", "none"):
        tool_choice = {"type": choice}
    elif choice == "required":
        tool_choice = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        tool_choice = {"type": "tool", "name": choice.get("name")}
    user = body.get("safety_identifier") or body.get("user")
    return finish_anthropic_request(out, body, bool(tools), tool_choice, user, extra)


def responses_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage as Responses usage (input tokens include cached ones)."""
    inp, out, cache_read, cache_write = usage_numbers(usage)
    prompt = inp + cache_read + cache_write
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cache_read},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + out,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """An assistant `message` output item holding one output_text part."""
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def function_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: str = "completed",
    namespaced: Namespaced | None = None,
) -> dict[str, Any]:
    """A `function_call` output item (a flattened namespace function named as such)."""
    item = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    found = namespaced.get(name) if namespaced else None
    if found is not None:
        item["namespace"], item["name"] = found
    return item


def web_search_item(block: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    """A `web_search_call` output item for an Anthropic web search `server_tool_use`."""
    query = (block.get("input") or {}).get("query")
    action: dict[str, Any] = {"type": "search"}
    if isinstance(query, str):
        action["query"] = query
    return {
        "type": "web_search_call",
        "id": "ws_" + str(block.get("id") or new_id("")),
        "status": status,
        "action": action,
    }


def response_envelope(
    response_id: str,
    model: str,
    created: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A `response` object around `output` (shared by whole responses and stream events)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }


def anthropic_to_responses_response(
    body: Mapping[str, Any], *, model: str, namespaced: Namespaced | None = None
) -> dict[str, Any]:
    """An Anthropic Messages response as a Responses API `response` object."""
    output: list[dict[str, Any]] = []
    base = str(body.get("id") or new_id(""))
    texts: list[str] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            if texts:
                output.append(message_item(f"msg_{base}_{len(output)}", "".join(texts)))
                texts = []
            call_id = block.get("id") or ""
            arguments = dumps(block.get("input") or {})
            output.append(
                function_item(
                    f"fc_{call_id}",
                    call_id,
                    block.get("name") or "",
                    arguments,
                    namespaced=namespaced,
                )
            )
        elif kind == "server_tool_use" and block.get("name") == "web_search":
            if texts:
                output.append(message_item(f"msg_{base}_{len(output)}", "".join(texts)))
                texts = []
            output.append(web_search_item(block))
    if texts:
        output.append(message_item(f"msg_{base}_{len(output)}", "".join(texts)))
    stop = body.get("stop_reason")
    status = (
        "incomplete" if stop in ("max_tokens", "model_context_window_exceeded") else "completed"
    )
    response_id = base if base.startswith("resp_") else "resp_" + base
    return response_envelope(
        response_id,
        model,
        int(time.time()),
        status=status,
        output=output,
        usage=responses_usage(body.get("usage")),
    )


# ---------------------------------------------------------------- Anthropic → Responses


def _response_parts(blocks: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    text_type = "output_text" if role == "assistant" else "input_text"
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": text_type, "text": block.get("text") or ""})
        elif kind == "image" and role == "user":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            elif source.get("type") == "url":
                url = source.get("url") or ""
            else:
                raise TranslationError(f"an image source {source.get('type')!r} cannot be sent")
            parts.append({"type": "input_image", "image_url": url, "detail": "auto"})
        elif kind == "document" and role == "user":
            source = block.get("source") or {}
            if source.get("type") != "base64":
                raise TranslationError("only base64 documents can be sent to an OpenAI model")
            data = f"data:{source.get('media_type')};base64,{source.get('data')}"
            parts.append(
                {
                    "type": "input_file",
                    "file_data": data,
                    "filename": block.get("title") or "file.pdf",
                }
            )
        else:
            raise TranslationError(f"a {role} {kind!r} block cannot be sent to an OpenAI model")
    return parts


def anthropic_to_responses_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages request as a Responses API request (stateless: store false)."""
    items: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        pending: list[dict[str, Any]] = []
        for block in as_blocks(message.get("content")):
            kind = block.get("type")
            if kind in ("thinking", "redacted_thinking"):
                continue
            if kind not in ("tool_use", "tool_result"):
                pending.append(block)
                continue
            if pending:
                items.append({"role": role, "content": _response_parts(pending, role)})
                pending = []
            if kind == "tool_use":
                items.append(
                    {
                        "type": "function_call",
                        "call_id": block.get("id"),
                        "name": block.get("name"),
                        "arguments": dumps(block.get("input") or {}),
                    }
                )
            else:
                content = block.get("content")
                output: Any = (
                    _response_parts(content, "user") if isinstance(content, list) else content or ""
                )
                items.append(
                    {
                        "type": "function_call_output",
                        "call_id": block.get("tool_use_id"),
                        "output": output,
                    }
                )
        if pending:
            items.append({"role": role, "content": _response_parts(pending, role)})
    out: dict[str, Any] = {"model": model, "input": items, "store": False}
    system = body.get("system")
    if system:
        out["instructions"] = (
            system if isinstance(system, str) else "\n".join(b.get("text") or "" for b in system)
        )
    if body.get("max_tokens") is not None:
        out["max_output_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        raise TranslationError("stop_sequences cannot be sent to an OpenAI Responses model")
    tools = []
    for tool in body.get("tools") or ():
        if tool.get("type") not in (None, "custom"):
            raise TranslationError(f"the Anthropic server tool {tool.get('type')!r} cannot be sent")
        item: dict[str, Any] = {"type": "function", "name": tool.get("name")}
        if tool.get("description"):
            item["description"] = tool["description"]
        item["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        item["strict"] = False
        tools.append(item)
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and tools:
        kind = choice.get("type")
        if kind in ("auto", "none"):
            out["tool_choice"] = kind
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "tool":
            out["tool_choice"] = {"type": "function", "name": choice.get("name")}
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    if body.get("stream"):
        out["stream"] = True
    return out


def usage_from_responses(usage: Any) -> dict[str, Any]:
    """Responses usage as Anthropic usage (input excludes cached tokens)."""
    if not isinstance(usage, Mapping):
        return anthropic_usage(0, 0)
    details = usage.get("input_tokens_details")
    cached = as_int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    prompt = as_int(usage.get("input_tokens"))
    return anthropic_usage(max(prompt - cached, 0), as_int(usage.get("output_tokens")), cached)


def responses_to_anthropic_response(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A Responses API `response` object as an Anthropic Messages response."""
    content: list[dict[str, Any]] = []
    for item in body.get("output") or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text" and part.get("text"):
                    content.append({"type": "text", "text": part["text"]})
                elif part.get("type") == "refusal":
                    content.append({"type": "text", "text": part.get("refusal") or ""})
        elif kind == "function_call":
            name = item.get("name")
            content.append(
                {
                    "type": "tool_use",
                    "id": item.get("call_id") or new_id("toolu_"),
                    "name": name,
                    "input": loads_object(
                        item.get("arguments"), f"function call {name!r} arguments"
                    ),
                }
            )
        elif kind == "reasoning":
            summary = "".join(s.get("text") or "" for s in item.get("summary") or ())
            if summary:
                content.append({"type": "thinking", "thinking": summary, "signature": ""})
    has_tool = any(b["type"] == "tool_use" for b in content)
    incomplete = body.get("incomplete_details")
    if body.get("status") == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, Mapping) else None
        stop = "refusal" if reason == "content_filter" else "max_tokens"
    else:
        stop = "tool_use" if has_tool else "end_turn"
    response_id = str(body.get("id") or new_id(""))
    return {
        "id": response_id if response_id.startswith("msg_") else "msg_" + response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_from_responses(body.get("usage")),
    }
