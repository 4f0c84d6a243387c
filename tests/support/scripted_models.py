"""A scripted stand-in of the Anthropic Messages and OpenAI Responses APIs, on loopback.

The provider simulator (`flowloom.gateway.mock`) invents tool arguments from the tool's
schema; driving a real agent needs exact ones (this file, this patch, this command). Here
each API has a script: the tool calls the model makes, one per turn, then a closing text.
Which step a request is at is read from the conversation it carries (the number of tool
results in it), so retries and side requests (titles, token counts, quota probes) never
move the script on.

- Anthropic `POST /v1/messages` (streamed or not) and `/v1/messages/count_tokens`:
  requests with tools follow the script; requests without (Claude Code's title and
  summary calls) get the closing text.
- OpenAI `POST /v1/responses` (streamed, as Codex asks): a tool the request declares as
  `custom` (Codex's freeform `apply_patch`) is called with `custom_tool_call` and the
  raw input; a function tool with `function_call` and JSON arguments.

Every request is kept (`requests`) so a test can see what the agent sent.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ToolUse:
    """One tool call: the tool's name and its input (an object, or raw text for freeform
    tools such as Codex's apply_patch)."""

    name: str
    input: dict[str, Any] | str


@dataclass
class Script:
    """What the model does for one prompt: these tool calls in turn, then `reply`."""

    tools: list[ToolUse] = field(default_factory=list)
    reply: str = "Done."


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _anthropic_step(body: dict[str, Any]) -> int:
    """Tool results already in the conversation: how far the script has gone."""
    done = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            done += sum(
                1
                for part in content
                if isinstance(part, dict) and part.get("type") == "tool_result"
            )
    return done


def _responses_step(body: dict[str, Any]) -> int:
    outputs = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
    items = body.get("input")
    if not isinstance(items, list):
        return 0
    return sum(1 for item in items if isinstance(item, dict) and item.get("type") in outputs)


class ScriptedModels:
    """The server: `anthropic` and `responses` scripts, and every request received."""

    def __init__(self, anthropic: Script | None = None, responses: Script | None = None) -> None:
        self.anthropic = anthropic or Script()
        self.responses = responses or Script()
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.url = ""

    # -- Anthropic Messages ------------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> tuple[str, list[bytes] | bytes]:
        n = next(self._ids)
        model = str(body.get("model") or "claude-sonnet-4-5")
        tools = body.get("tools") or []
        step = _anthropic_step(body)
        use = self.anthropic.tools[step] if tools and step < len(self.anthropic.tools) else None
        content: list[dict[str, Any]]
        if use is not None:
            content = [
                {"type": "tool_use", "id": f"toolu_{n:020d}", "name": use.name, "input": use.input}
            ]
        else:
            content = [{"type": "text", "text": self.anthropic.reply}]
        stop = "tool_use" if use is not None else "end_turn"
        usage = {"input_tokens": 10, "output_tokens": 10}
        message = {
            "id": f"msg_{n:024d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return "application/json", json.dumps(message).encode()
        events = [
            _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {**message, "content": [], "stop_reason": None},
                },
            )
        ]
        for index, block in enumerate(content):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events.append(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            events.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            events.append(
                _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        events.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 10},
                },
            )
        )
        events.append(_sse("message_stop", {"type": "message_stop"}))
        return "text/event-stream", events

    # -- OpenAI Responses --------------------------------------------------------------

    def _responses(self, body: dict[str, Any]) -> tuple[str, list[bytes] | bytes]:
        n = next(self._ids)
        step = _responses_step(body)
        use = self.responses.tools[step] if step < len(self.responses.tools) else None
        declared = {
            t.get("name"): t.get("type") for t in body.get("tools") or [] if isinstance(t, dict)
        }
        item: dict[str, Any]
        if use is None:
            text = self.responses.reply
            item = {
                "type": "message",
                "id": f"msg_{n:024d}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        elif declared.get(use.name) == "custom":
            raw = use.input if isinstance(use.input, str) else json.dumps(use.input)
            item = {
                "type": "custom_tool_call",
                "id": f"ctc_{n:024d}",
                "status": "completed",
                "call_id": f"call_{n:024d}",
                "name": use.name,
                "input": raw,
            }
        else:
            arguments = use.input if isinstance(use.input, str) else json.dumps(use.input)
            item = {
                "type": "function_call",
                "id": f"fc_{n:024d}",
                "status": "completed",
                "call_id": f"call_{n:024d}",
                "name": use.name,
                "arguments": arguments,
            }
        response = {
            "id": f"resp_{n:024d}",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": body.get("model"),
            "output": [item],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 10,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 20,
            },
        }
        events = [
            _sse(
                "response.created",
                {
                    "type": "response.created",
                    "response": {**response, "status": "in_progress", "output": []},
                },
            ),
            _sse(
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": item},
            ),
        ]
        if item["type"] == "message":
            events.append(
                _sse(
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": self.responses.reply,
                    },
                )
            )
        events.append(
            _sse(
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            )
        )
        events.append(
            _sse("response.completed", {"type": "response.completed", "response": response})
        )
        return "text/event-stream", events

    # -- serving -------------------------------------------------------------------------

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, str, list[bytes] | bytes]:
        with self._lock:
            self.requests.append({"path": path, "body": body})
        if path.endswith("/messages/count_tokens"):
            return 200, "application/json", b'{"input_tokens": 10}'
        if path.endswith("/messages"):
            return (200, *self._messages(body))
        if path.endswith("/responses"):
            return (200, *self._responses(body))
        return 404, "application/json", b'{"error": {"message": "not scripted"}}'


def _handler(models: ScriptedModels) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            data = b'{"data": [], "object": "list"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("content-encoding") == "zstd":
                raise RuntimeError("zstd request bodies are not supported by the stand-in")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            status, kind, out = models.answer(self.path.split("?", 1)[0], body)
            self.send_response(status)
            self.send_header("content-type", kind)
            if isinstance(out, bytes):
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            for event in out:
                self.wfile.write(event)
                self.wfile.flush()
            self.close_connection = True

    return Handler


@contextmanager
def serve(models: ScriptedModels) -> Iterator[ScriptedModels]:
    """`models` listening on a free loopback port (`models.url`) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(models))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    models.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield models
    finally:
        server.shutdown()
        server.server_close()
