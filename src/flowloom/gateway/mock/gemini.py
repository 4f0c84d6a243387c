"""Gemini wire format: generateContent, streamGenerateContent (alt=sse), countTokens, models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowloom.gateway.mock.base import Call, Ids, dumps
from flowloom.gateway.mock.content import Reply, chunk_words, count_tokens

__all__ = ["GeminiWire", "gemini_models"]

MODELS = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192),
)
_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}
_WORDS_PER_CHUNK = 4


def gemini_models(model_id: str | None = None) -> Any:
    rows = [
        {
            "name": f"models/{mid}",
            "version": "001",
            "displayName": name,
            "description": name,
            "inputTokenLimit": limit_in,
            "outputTokenLimit": limit_out,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
        }
        for mid, name, limit_in, limit_out in MODELS
    ]
    if model_id is not None:
        return next((r for r in rows if r["name"] == f"models/{model_id}"), None)
    return {"models": rows}


def _finish(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.truncated else "STOP"


class GeminiWire:
    name = "gemini"
    content_type_stream = b"text/event-stream"
    default_context_window = 1_048_576

    def parse(self, body: Mapping[str, Any], model_hint: str | None) -> Call:
        tools: list[tuple[str, Mapping[str, Any]]] = []
        for tool in body.get("tools") or ():
            if not isinstance(tool, Mapping):
                continue
            decls = tool.get("functionDeclarations", tool.get("function_declarations")) or ()
            for decl in decls:
                if isinstance(decl, Mapping) and isinstance(decl.get("name"), str):
                    schema = decl.get("parameters", decl.get("parametersJsonSchema"))
                    tools.append((decl["name"], schema if isinstance(schema, Mapping) else {}))
        config = body.get("generationConfig", body.get("generation_config"))
        max_tokens = config.get("maxOutputTokens") if isinstance(config, Mapping) else None
        system = body.get("systemInstruction", body.get("system_instruction"))
        return Call(
            model=model_hint or "",
            stream=False,
            input_tokens=count_tokens(system, body.get("contents"), body.get("tools")),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            tools=tools,
            messages=body.get("contents"),
            body=body,
        )

    def validate(self, body: Mapping[str, Any]) -> str | None:
        if not isinstance(body.get("contents"), list):
            return "* GenerateContentRequest.contents: contents is not specified"
        return None

    def _usage(self, call: Call, output: int | None) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": call.input_tokens}
        if output is not None:
            usage["candidatesTokenCount"] = output
        usage["totalTokenCount"] = call.input_tokens + (output or 0)
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": call.input_tokens}]
        return usage

    def _chunk(
        self,
        call: Call,
        ids: Ids,
        parts: list[dict[str, Any]],
        finish: str | None,
        output: int | None,
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(call, output),
            "modelVersion": call.model,
            "responseId": ids.make("mock", 22),
        }

    def _parts(self, reply: Reply) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if reply.tool is not None:
            parts.append({"functionCall": {"name": reply.tool.name, "args": reply.tool.arguments}})
        elif reply.text:
            parts.append({"text": reply.text})
        return parts

    def complete(self, call: Call, reply: Reply, ids: Ids) -> bytes:
        chunk = self._chunk(call, ids, self._parts(reply), _finish(reply), reply.output_tokens)
        return dumps(chunk).encode()

    def _stream_objects(self, call: Call, reply: Reply, ids: Ids) -> list[dict[str, Any]]:
        if reply.tool is not None:
            return [self._chunk(call, ids, self._parts(reply), _finish(reply), reply.output_tokens)]
        words = chunk_words(reply.text)
        groups = [
            "".join(words[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(words), _WORDS_PER_CHUNK)
        ] or [""]
        chunks = []
        for i, text in enumerate(groups):
            last = i == len(groups) - 1
            chunks.append(
                self._chunk(
                    call,
                    ids,
                    [{"text": text}],
                    _finish(reply) if last else None,
                    reply.output_tokens if last else None,
                )
            )
        return chunks

    def stream(self, call: Call, reply: Reply, ids: Ids) -> list[bytes]:
        return [
            b"data: " + dumps(chunk).encode() + b"\r\n\r\n"
            for chunk in self._stream_objects(call, reply, ids)
        ]

    def stream_json_array(self, call: Call, reply: Reply, ids: Ids) -> bytes:
        """streamGenerateContent without alt=sse: one JSON array of the chunks."""
        return dumps(self._stream_objects(call, reply, ids)).encode()

    def error(self, status: int, message: str | None = None) -> bytes:
        name, default = _STATUS.get(
            status,
            ("INTERNAL", "Internal error.") if status >= 500 else ("FAILED_PRECONDITION", ""),
        )
        error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
        if status == 429:
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
            ]
        return dumps({"error": error}).encode()

    def context_error(self, call: Call, limit: int) -> tuple[int, bytes]:
        tokens = max(call.input_tokens, limit + 1)
        message = (
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({limit})."
        )
        return 400, self.error(400, message)

    def count_tokens_body(self, body: Mapping[str, Any]) -> bytes:
        request = body.get("generateContentRequest")
        source = request if isinstance(request, Mapping) else body
        system = source.get("systemInstruction", source.get("system_instruction"))
        tokens = count_tokens(system, source.get("contents"), source.get("tools"))
        return dumps({"totalTokens": tokens}).encode()
