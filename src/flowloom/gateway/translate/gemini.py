"""Gemini generateContent ⇄ Anthropic Messages: requests and whole (non-streamed) responses.

Gemini keeps a conversation as `contents` of `parts` (text, inlineData, fileData,
functionCall, functionResponse) with roles user/model. A function response names its
function rather than pointing at a call id, so translating towards Gemini looks the name up
from the earlier tool_use; translating from Gemini matches responses to calls by id when
Gemini gave one, else by name in order, and makes deterministic ids otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowloom.gateway.translate.common import (
    DEFAULT_MAX_TOKENS,
    STOP_FROM_GEMINI,
    STOP_TO_GEMINI,
    anthropic_usage,
    as_blocks,
    as_int,
    dumps,
    guess_media_type,
    new_id,
    usage_numbers,
)
from flowloom.gateway.translate.errors import TranslationError
from flowloom.gateway.translate.extras import EXTRA_KEY, json_format, sampling_from

__all__ = [
    "anthropic_to_gemini_request",
    "anthropic_to_gemini_response",
    "gemini_to_anthropic_request",
    "gemini_to_anthropic_response",
    "gemini_usage",
    "usage_from_gemini",
]


_SIGNATURE_MARK = "__thought__"
_SAMPLING_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "frequencyPenalty": "frequency_penalty",
        "presencePenalty": "presence_penalty",
        "seed": "seed",
    }
)


def join_signature(call_id: str, part: Mapping[str, Any]) -> str:
    """A tool call id carrying the part's thoughtSignature, if it has one.

    Gemini 3 refuses a conversation whose function calls come back without the signature
    it attached to them. Callers in other formats echo tool call ids verbatim, so the
    signature rides inside the id and is taken out again on the way back to Gemini.
    """
    signature = _get(part, "thoughtSignature", "thought_signature")
    if isinstance(signature, str) and signature:
        return f"{call_id}{_SIGNATURE_MARK}{signature}"
    return call_id


def split_signature(call_id: str) -> tuple[str, str | None]:
    """(the call id Gemini knows, the thoughtSignature carried in it or None)."""
    base, mark, signature = call_id.partition(_SIGNATURE_MARK)
    return (base, signature) if mark else (call_id, None)


def function_call_part(call_id: str, name: Any, args: Any) -> dict[str, Any]:
    """A functionCall part, its thoughtSignature restored from the id if it carries one."""
    base, signature = split_signature(call_id)
    part: dict[str, Any] = {"functionCall": {"id": base, "name": name, "args": args or {}}}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its JSON (camelCase) name or its proto (snake_case) name; Gemini takes both."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


# ---------------------------------------------------------------- Anthropic → Gemini


def _media_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        return {"inlineData": {"mimeType": source.get("media_type"), "data": source.get("data")}}
    if kind == "url":
        url = source.get("url") or ""
        media = guess_media_type(url)
        if media is None:
            raise TranslationError(
                "a Gemini model needs the media type of a URL image; use a URL ending in "
                ".png/.jpg/.gif/.webp/.pdf or send the image as base64"
            )
        return {"fileData": {"mimeType": media, "fileUri": url}}
    if kind == "text" and block.get("type") == "document":
        return {"text": source.get("data") or ""}
    raise TranslationError(
        f"a {block.get('type')} with source type {kind!r} cannot be sent to a Gemini model; "
        "send it as base64 or a URL"
    )


def _function_response(
    block: Mapping[str, Any], names: Mapping[str, str], parts: list[dict[str, Any]]
) -> None:
    call_id = block.get("tool_use_id") or ""
    name = names.get(call_id)
    if name is None:
        raise TranslationError(
            f"tool_result {call_id!r} answers no earlier tool_use; a Gemini model needs the "
            "function name, so keep the assistant turn holding that tool_use"
        )
    content = block.get("content")
    media: list[dict[str, Any]] = []
    if isinstance(content, str) or content is None:
        text = content or ""
    else:
        texts: list[str] = []
        for item in content:
            if item.get("type") == "text":
                texts.append(item.get("text") or "")
            elif item.get("type") in ("image", "document"):
                media.append(_media_part(item))
            else:
                raise TranslationError(
                    f"a tool result holding a {item.get('type')!r} block cannot be sent to Gemini"
                )
        text = "\n".join(texts)
    key = "error" if block.get("is_error") else "output"
    response = {"id": split_signature(call_id)[0], "name": name, "response": {key: text}}
    parts.append({"functionResponse": response})
    parts.extend(media)  # images a tool returned follow its response in the same turn


def _gemini_contents(messages: Any) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in messages or ():
        role = "model" if message.get("role") == "assistant" else "user"
        parts: list[dict[str, Any]] = []
        content = message.get("content")
        if isinstance(content, str):
            parts.append({"text": content})
        else:
            for block in as_blocks(content):
                kind = block.get("type")
                if kind == "text":
                    parts.append({"text": block.get("text") or ""})
                elif kind in ("image", "document"):
                    parts.append(_media_part(block))
                elif kind == "tool_use":
                    call_id = block.get("id") or ""
                    names[call_id] = block.get("name") or ""
                    parts.append(function_call_part(call_id, block.get("name"), block.get("input")))
                elif kind == "tool_result":
                    _function_response(block, names, parts)
                elif kind in ("thinking", "redacted_thinking"):
                    continue  # signed reasoning only the Anthropic model that wrote it can read
                else:
                    raise TranslationError(
                        f"a {kind!r} content block cannot be sent to a Gemini model; remove it"
                    )
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def anthropic_to_gemini_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages request as a Gemini generateContent body (model: in the URL)."""
    for key in ("container", "mcp_servers"):
        if body.get(key):
            raise TranslationError(
                f"{key!r} is an Anthropic-only feature; route this request to an Anthropic model"
            )
    out: dict[str, Any] = {"contents": _gemini_contents(body.get("messages"))}
    system = body.get("system")
    if system:
        if isinstance(system, str):
            out["systemInstruction"] = {"parts": [{"text": system}]}
        else:
            out["systemInstruction"] = {"parts": [{"text": b.get("text") or ""} for b in system]}
    config: dict[str, Any] = {}
    if body.get("max_tokens") is not None:
        config["maxOutputTokens"] = body["max_tokens"]
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(src) is not None:
            config[dst] = body[src]
    if body.get("stop_sequences"):
        config["stopSequences"] = list(body["stop_sequences"])
    if config:
        out["generationConfig"] = config
    tools = body.get("tools")
    if tools:
        declarations = []
        search = False
        for tool in tools:
            if str(tool.get("type") or "").startswith("web_search_"):
                search = True  # Anthropic's web search: Gemini's Google Search grounding
                continue
            if tool.get("type") not in (None, "custom"):
                raise TranslationError(
                    f"the Anthropic server tool {tool.get('type')!r} cannot be used with a "
                    "Gemini model; route this request to an Anthropic model"
                )
            declaration: dict[str, Any] = {"name": tool.get("name")}
            if tool.get("description"):
                declaration["description"] = tool["description"]
            schema = tool.get("input_schema")
            if schema:
                declaration["parametersJsonSchema"] = schema
            declarations.append(declaration)
        gemini_tools: list[dict[str, Any]] = []
        if declarations:
            gemini_tools.append({"functionDeclarations": declarations})
        if search:
            gemini_tools.append({"googleSearch": {}})
        out["tools"] = gemini_tools
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and tools:
        kind = choice.get("type")
        calling: dict[str, Any] = {
            "mode": {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}.get(
                str(kind), "AUTO"
            )
        }
        if kind == "tool":
            calling["allowedFunctionNames"] = [choice.get("name")]
        out["toolConfig"] = {"functionCallingConfig": calling}
    return out


def gemini_usage(usage: Any, *, include_total: bool = True) -> dict[str, Any]:
    """Anthropic usage as Gemini usageMetadata (the prompt count includes cached tokens)."""
    inp, out, cache_read, cache_write = usage_numbers(usage)
    prompt = inp + cache_read + cache_write
    meta: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": out}
    if include_total:
        meta["totalTokenCount"] = prompt + out
    if cache_read:
        meta["cachedContentTokenCount"] = cache_read
    return meta


def anthropic_to_gemini_response(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages response as a GenerateContentResponse."""
    parts: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            parts.append({"text": block.get("text") or ""})
        elif kind == "thinking":
            parts.append({"text": block.get("thinking") or "", "thought": True})
        elif kind == "tool_use":
            parts.append(
                function_call_part(block.get("id") or "", block.get("name"), block.get("input"))
            )
    stop = body.get("stop_reason")
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": STOP_TO_GEMINI.get(stop, "STOP") if stop else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": gemini_usage(body.get("usage")),
        "modelVersion": model,
        "responseId": body.get("id") or new_id(""),
    }


# ---------------------------------------------------------------- Gemini → Anthropic


def _schema_from_openapi(schema: Any) -> Any:
    """Gemini's OpenAPI-style schema (types in upper case) as JSON Schema (lower case)."""
    if isinstance(schema, list):
        return [_schema_from_openapi(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "nullable":
            continue  # folded into the type below
        elif key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            out[key] = {k: _schema_from_openapi(v) for k, v in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not", "additionalProperties"):
            out[key] = _schema_from_openapi(value)
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _anthropic_media(part: Mapping[str, Any]) -> dict[str, Any] | None:
    inline = _get(part, "inlineData", "inline_data")
    if isinstance(inline, Mapping):
        media = _get(inline, "mimeType", "mime_type") or ""
        source = {"type": "base64", "media_type": media, "data": inline.get("data") or ""}
        if media.startswith("image/"):
            return {"type": "image", "source": source}
        if media == "application/pdf":
            return {"type": "document", "source": source}
        raise TranslationError(
            f"inline {media or 'untyped'} data cannot be sent to an Anthropic model; "
            "only images and PDFs translate"
        )
    file = _get(part, "fileData", "file_data")
    if isinstance(file, Mapping):
        uri = _get(file, "fileUri", "file_uri") or ""
        media = _get(file, "mimeType", "mime_type") or guess_media_type(uri) or ""
        if not uri.startswith(("http://", "https://")):
            raise TranslationError(
                "a Gemini file reference (gs:// or Files API) cannot be sent to an Anthropic "
                "model; send the file inline or as an http(s) URL"
            )
        source = {"type": "url", "url": uri}
        if media.startswith("image/"):
            return {"type": "image", "source": source}
        if media == "application/pdf":
            return {"type": "document", "source": source}
        raise TranslationError(f"a {media or 'untyped'} file cannot be sent to an Anthropic model")
    return None


def _tool_result_content(response: Any) -> tuple[Any, bool]:
    """(content, is_error) of a functionResponse's `response` object."""
    if isinstance(response, Mapping) and len(response) == 1:
        for key in ("output", "error", "result", "content"):
            if key in response:
                value = response[key]
                return (value if isinstance(value, str) else dumps(value)), key == "error"
    return dumps(response if response is not None else {}), False


class _CallIds:
    """Ids for Gemini function calls, so each functionResponse finds its call."""

    __slots__ = ("_count", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}
        self._count = 0

    def call(self, name: str, given: Any) -> str:
        if isinstance(given, str) and given:
            call_id = given
        else:
            self._count += 1
            call_id = f"toolu_gemini_{self._count:04d}"
        self._pending.setdefault(name, []).append(call_id)
        return call_id

    def response(self, name: str, given: Any) -> str:
        waiting = self._pending.get(name)
        if isinstance(given, str) and given:
            if waiting and given in waiting:
                waiting.remove(given)
            return given
        if waiting:
            return waiting.pop(0)
        raise TranslationError(
            f"functionResponse {name!r} answers no earlier functionCall; keep the model turn "
            "holding that call"
        )


def _part_blocks(
    part: Mapping[str, Any], ids: _CallIds, out: list[dict[str, Any]], *, answer: bool = False
) -> None:
    """Anthropic blocks for one Gemini part; `answer`: a model's answer (keep signatures)."""
    text = part.get("text")
    if isinstance(text, str):
        if part.get("thought"):
            return  # the model's own reasoning, meaningful only to Gemini
        if text:
            out.append({"type": "text", "text": text})
        return
    call = _get(part, "functionCall", "function_call")
    if isinstance(call, Mapping):
        name = call.get("name") or ""
        args = call.get("args")
        out.append(
            {
                "type": "tool_use",
                "id": join_signature(ids.call(name, call.get("id")), part)
                if answer
                else ids.call(name, call.get("id")),
                "name": name,
                "input": dict(args) if isinstance(args, Mapping) else {},
            }
        )
        return
    result = _get(part, "functionResponse", "function_response")
    if isinstance(result, Mapping):
        name = result.get("name") or ""
        content, is_error = _tool_result_content(result.get("response"))
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": ids.response(name, result.get("id")),
            "content": content,
        }
        if is_error:
            block["is_error"] = True
        out.append(block)
        return
    media = _anthropic_media(part)
    if media is not None:
        out.append(media)
        return
    keys = ", ".join(sorted(k for k in part if k not in ("thoughtSignature", "thought_signature")))
    if keys:
        raise TranslationError(f"a Gemini part with {keys} cannot be sent to an Anthropic model")


def _ordered_user(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results first, as Anthropic requires them at the start of a user turn."""
    results = [b for b in blocks if b["type"] == "tool_result"]
    if not results or len(results) == len(blocks):
        return blocks
    return results + [b for b in blocks if b["type"] != "tool_result"]


def gemini_to_anthropic_request(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A Gemini generateContent body as an Anthropic Messages request for `model`."""
    if _get(body, "cachedContent", "cached_content"):
        raise TranslationError(
            "cachedContent refers to a Gemini-side cache; send the full contents instead"
        )
    ids = _CallIds()
    messages: list[dict[str, Any]] = []
    for content in body.get("contents") or ():
        role = "assistant" if content.get("role") == "model" else "user"
        blocks: list[dict[str, Any]] = []
        for part in content.get("parts") or ():
            _part_blocks(part, ids, blocks)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    for message in messages:
        if message["role"] == "user":
            message["content"] = _ordered_user(message["content"])
    out: dict[str, Any] = {"model": model}
    system = _get(body, "systemInstruction", "system_instruction")
    if isinstance(system, Mapping):
        texts = [p.get("text") or "" for p in system.get("parts") or () if p.get("text")]
        if texts:
            out["system"] = (
                texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
            )
    elif isinstance(system, str) and system:
        out["system"] = system
    out["messages"] = messages
    config = _get(body, "generationConfig", "generation_config") or {}
    if as_int(_get(config, "candidateCount", "candidate_count")) > 1:
        raise TranslationError("candidateCount > 1 cannot be sent to an Anthropic model")
    extra: dict[str, Any] = {}
    mime = _get(config, "responseMimeType", "response_mime_type")
    schema = _get(config, "responseJsonSchema", "response_json_schema")
    if schema is None:
        schema = _schema_from_openapi(_get(config, "responseSchema", "response_schema"))
    if mime == "application/json":
        extra["format"] = json_format("json_schema" if schema else "json_object", schema)
    elif mime not in (None, "text/plain") or schema:
        raise TranslationError(
            f"responseMimeType {mime!r} cannot be translated; only JSON output can be"
        )
    sampling_from(config, extra, _SAMPLING_NAMES)
    modalities = _get(config, "responseModalities", "response_modalities")
    if modalities and any(str(m).upper() != "TEXT" for m in modalities):
        raise TranslationError("only text output is available from an Anthropic model")
    max_tokens = _get(config, "maxOutputTokens", "max_output_tokens")
    out["max_tokens"] = max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
    temperature = config.get("temperature")
    if isinstance(temperature, int | float):
        out["temperature"] = min(float(temperature), 1.0)
    for src, snake, dst in (("topP", "top_p", "top_p"), ("topK", "top_k", "top_k")):
        value = _get(config, src, snake)
        if value is not None:
            out[dst] = value
    stops = _get(config, "stopSequences", "stop_sequences")
    if stops:
        out["stop_sequences"] = list(stops)
    tools: list[dict[str, Any]] = []
    for tool in body.get("tools") or ():
        declarations = _get(tool, "functionDeclarations", "function_declarations")
        searching = _get(tool, "googleSearch", "google_search") is not None
        if searching and not any(t.get("type") == "web_search_20250305" for t in tools):
            tools.append({"type": "web_search_20250305", "name": "web_search"})
        others = [
            k
            for k in tool
            if k
            not in (
                "functionDeclarations",
                "function_declarations",
                "googleSearch",
                "google_search",
            )
        ]
        if others:
            raise TranslationError(
                f"the Gemini tool {others[0]!r} cannot be used with an Anthropic model; only "
                "function declarations translate"
            )
        for declaration in declarations or ():
            item: dict[str, Any] = {"name": declaration.get("name")}
            if declaration.get("description"):
                item["description"] = declaration["description"]
            schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
            if schema is None:
                schema = _schema_from_openapi(declaration.get("parameters"))
            item["input_schema"] = schema or {"type": "object", "properties": {}}
            tools.append(item)
    if tools:
        out["tools"] = tools
    if extra:
        out[EXTRA_KEY] = extra
    tool_config = _get(body, "toolConfig", "tool_config")
    calling = (
        _get(tool_config, "functionCallingConfig", "function_calling_config")
        if isinstance(tool_config, Mapping)
        else None
    )
    if isinstance(calling, Mapping):
        mode = str(calling.get("mode") or "AUTO").upper()
        allowed = _get(calling, "allowedFunctionNames", "allowed_function_names") or []
        if mode in ("ANY", "VALIDATED") and len(allowed) == 1:
            out["tool_choice"] = {"type": "tool", "name": allowed[0]}
        elif mode == "ANY":
            out["tool_choice"] = {"type": "any"}
        elif mode == "NONE":
            out["tool_choice"] = {"type": "none"}
        elif tools:
            out["tool_choice"] = {"type": "auto"}
    return out


def usage_from_gemini(meta: Any) -> dict[str, Any]:
    """Gemini usageMetadata as Anthropic usage (thinking tokens count as output)."""
    if not isinstance(meta, Mapping):
        return anthropic_usage(0, 0)
    prompt = as_int(_get(meta, "promptTokenCount", "prompt_token_count"))
    cached = as_int(_get(meta, "cachedContentTokenCount", "cached_content_token_count"))
    output = as_int(_get(meta, "candidatesTokenCount", "candidates_token_count")) + as_int(
        _get(meta, "thoughtsTokenCount", "thoughts_token_count")
    )
    return anthropic_usage(max(prompt - cached, 0), output, cached)


def stop_from_gemini(finish: Any, has_tool_use: bool) -> str:
    """The Anthropic stop reason for a Gemini finishReason (a call made means tool_use)."""
    if has_tool_use and finish in (None, "STOP"):
        return "tool_use"
    return STOP_FROM_GEMINI.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def gemini_to_anthropic_response(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A GenerateContentResponse as an Anthropic Messages response."""
    candidates = body.get("candidates") or ()
    content: list[dict[str, Any]] = []
    finish: Any = None
    if candidates:
        candidate = candidates[0]
        finish = _get(candidate, "finishReason", "finish_reason")
        ids = _CallIds()
        parts = (candidate.get("content") or {}).get("parts") or ()
        for part in parts:
            text = part.get("text")
            if isinstance(text, str) and part.get("thought"):
                signature = _get(part, "thoughtSignature", "thought_signature") or ""
                content.append({"type": "thinking", "thinking": text, "signature": signature})
            elif isinstance(text, str) and content and content[-1]["type"] == "text":
                content[-1]["text"] += text  # Gemini may split one answer over several parts
            else:
                _part_blocks(part, ids, content, answer=True)
    else:
        feedback = _get(body, "promptFeedback", "prompt_feedback") or {}
        finish = "SAFETY" if _get(feedback, "blockReason", "block_reason") else None
    has_tool = any(b["type"] == "tool_use" for b in content)
    response_id = str(_get(body, "responseId", "response_id") or new_id(""))
    return {
        "id": response_id if response_id.startswith("msg_") else "msg_" + response_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_from_gemini(finish, has_tool),
        "stop_sequence": None,
        "usage": usage_from_gemini(_get(body, "usageMetadata", "usage_metadata")),
    }


def tool_args_json(args: Any) -> str:
    """A functionCall's args as the JSON text a streamed input_json_delta carries."""
    return dumps(args if isinstance(args, Mapping) else {})


def parse_args(text: str) -> Any:
    """Streamed tool arguments back into an object (Gemini sends whole calls)."""
    return json.loads(text) if text else {}
