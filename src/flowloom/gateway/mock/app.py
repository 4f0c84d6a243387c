"""The simulator as a raw ASGI app: routes each provider's endpoints and plays faults.

Deliberately no framework: it is the upstream in the gateway benchmarks, so a request
costs one JSON parse, one small JSON encode (or a list of pre-encoded SSE events) and a
bounded request-log append. Control endpoints under /_mock/ let tests read what the
gateway forwarded, change faults and reset state.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from flowloom.gateway.mock.anthropic import AnthropicWire, anthropic_models
from flowloom.gateway.mock.base import Call, Ids, dumps
from flowloom.gateway.mock.content import plan_reply, wants_tool
from flowloom.gateway.mock.embeddings import gemini_batch_embed, gemini_embed, openai_embeddings
from flowloom.gateway.mock.faults import FaultPlan, Faults, parse_fault_spec
from flowloom.gateway.mock.gemini import GeminiWire, gemini_models
from flowloom.gateway.mock.openai_chat import OpenAIChatWire, openai_error, openai_models
from flowloom.gateway.mock.openai_responses import OpenAIResponsesWire

__all__ = ["MockConfig", "MockDisconnect", "MockProvider"]

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Wire = AnthropicWire | OpenAIChatWire | OpenAIResponsesWire | GeminiWire

_JSON = b"application/json"
_GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/", "/v1alpha/models/")


class MockDisconnect(Exception):
    """Raised inside a stream to make the server drop the connection (the disconnect fault)."""


class _ClientGone(Exception):
    pass


@dataclass(frozen=True)
class MockConfig:
    """Startup settings; `faults` uses the grammar of flowloom.gateway.mock.faults."""

    faults: str | None = None
    seed: int = 0
    latency_ms: float = 0.0
    region: str | None = None
    context_window: int | None = None  # None: each provider's usual window
    log_size: int = 1000
    max_logged_body: int = 256 * 1024
    hang_s: float = 300.0


@dataclass
class _Settings:
    latency_ms: float
    region: str | None
    context_window: int | None


class MockProvider:
    """ASGI app speaking Anthropic, OpenAI (chat + responses), Azure OpenAI and Gemini."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self.faults = FaultPlan(parse_fault_spec(self.config.faults), seed=self.config.seed)
        self.settings = _Settings(
            self.config.latency_ms, self.config.region, self.config.context_window
        )
        self._log: deque[dict[str, Any]] = deque(maxlen=max(1, self.config.log_size))
        self._log_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._anthropic = AnthropicWire()
        self._openai = OpenAIChatWire()
        self._azure = OpenAIChatWire(azure=True)
        self._responses = OpenAIResponsesWire()
        self._gemini = GeminiWire()

    # ---- state used by tests (thread-safe) ----

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of the request log, oldest first (optionally only one path)."""
        with self._log_lock:
            rows = list(self._log)
        if path is not None:
            rows = [r for r in rows if r["path"] == path]
        return rows

    def reset(self) -> None:
        """Forget logged requests and go back to the startup faults and settings."""
        with self._log_lock:
            self._log.clear()
        self.faults.set(parse_fault_spec(self.config.faults), seed=self.config.seed)
        self.settings.latency_ms = self.config.latency_ms
        self.settings.region = self.config.region
        self.settings.context_window = self.config.context_window

    # ---- ASGI ----

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except _ClientGone:
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith("/_mock/"):
            await self._control(method, path, scope, body, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        seq = next(self._seq)
        entry: dict[str, Any] = {
            "seq": seq,
            "ts": time.time(),
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": None,
            "format": None,
            "model": None,
            "stream": None,
            "fault": None,
            "status": None,
        }
        with self._log_lock:
            self._log.append(entry)
        if method == "POST":
            wire, model_hint, mode = self._route_post(path, query)
            if wire is not None:
                entry["format"] = "azure" if wire is self._azure else wire.name
                await self._generate(
                    wire, mode, model_hint, seq, headers, body, entry, receive, send
                )
                return
        elif method == "GET":
            found = self._route_get(path, query, headers)
            if found is not None:
                status, payload = found
                entry["status"] = status
                await _send_json(send, status, payload, self._base_headers(headers, seq))
                return
        status = 404
        entry["status"] = status
        error = (
            self._anthropic.error(404, f"Not found: {method} {path}")
            if "anthropic-version" in headers
            else openai_error(404, f"Unknown request URL: {method} {path}.", code="unknown_url")
        )
        await _send_json(send, status, error, self._base_headers(headers, seq))

    def _route_post(self, path: str, query: str) -> tuple[Wire | None, str | None, str]:
        """(wire, model from the URL, mode) — mode: "", "count", "sse", "array", "azure?"."""
        if path in ("/v1/messages", "/messages"):
            return self._anthropic, None, ""
        if path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
            return self._anthropic, None, "count"
        if path in ("/v1/chat/completions", "/chat/completions", "/openai/v1/chat/completions"):
            return self._openai, None, ""
        if path in ("/v1/responses", "/responses", "/openai/v1/responses", "/openai/responses"):
            return self._responses, None, ""
        if path in ("/v1/embeddings", "/embeddings", "/openai/v1/embeddings"):
            return self._openai, None, "embed"
        if path.startswith("/openai/deployments/"):
            rest = path[len("/openai/deployments/") :]
            deployment, _, tail = rest.partition("/")
            if tail == "chat/completions":
                return self._azure, deployment, "azure"
            if tail == "responses":
                return self._responses, deployment, "azure"
            if tail == "embeddings":
                return self._azure, deployment, "azure-embed"
            return None, None, ""
        for prefix in _GEMINI_PREFIXES:
            if path.startswith(prefix):
                model, _, method = path[len(prefix) :].rpartition(":")
                if method == "generateContent":
                    return self._gemini, model, ""
                if method == "streamGenerateContent":
                    params = dict(parse_qsl(query))
                    return self._gemini, model, "sse" if params.get("alt") == "sse" else "array"
                if method == "countTokens":
                    return self._gemini, model, "count"
                if method == "embedContent":
                    return self._gemini, model, "embed"
                if method == "batchEmbedContents":
                    return self._gemini, model, "batch-embed"
        return None, None, ""

    def _route_get(
        self, path: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes] | None:
        if "x-goog-api-key" in headers or "key=" in query or path.startswith("/v1beta/"):
            return self._gemini_get(path)
        anthropic = "anthropic-version" in headers
        if path in ("/v1/models", "/models"):
            return 200, dumps(anthropic_models() if anthropic else openai_models()).encode()
        if path.startswith(("/v1/models/", "/models/")) and ":" not in path:
            model_id = path.rsplit("/", 1)[1]
            row = anthropic_models(model_id) if anthropic else openai_models(model_id)
            if row is None:
                if anthropic:
                    return 404, self._anthropic.error(404, f"model: {model_id}")
                return 404, openai_error(
                    404, f"The model '{model_id}' does not exist", code="model_not_found"
                )
            return 200, dumps(row).encode()
        return None

    def _gemini_get(self, path: str) -> tuple[int, bytes] | None:
        for prefix in ("/v1beta/models", "/v1/models", "/v1alpha/models"):
            if path == prefix:
                return 200, dumps(gemini_models()).encode()
            if path.startswith(prefix + "/"):
                model_id = path[len(prefix) + 1 :]
                row = gemini_models(model_id)
                if row is None:
                    return 404, self._gemini.error(404, f"models/{model_id} is not found.")
                return 200, dumps(row).encode()
        return None

    def _base_headers(self, headers: Mapping[str, str], seq: int) -> list[tuple[bytes, bytes]]:
        out = [
            (b"request-id", f"req_mock{seq:016x}".encode()),
            (b"x-request-id", f"req_mock{seq:016x}".encode()),
        ]
        region = headers.get("x-mock-region") or self.settings.region
        if region:
            out.append((b"x-mock-region", region.encode("latin-1")))
        return out

    async def _generate(
        self,
        wire: Wire,
        mode: str,
        model_hint: str | None,
        seq: int,
        headers: Mapping[str, str],
        raw: bytes,
        entry: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        base_headers = self._base_headers(headers, seq)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if len(raw) <= self.config.max_logged_body:
            entry["body"] = body
        else:
            entry["body_truncated"] = len(raw)
        if not isinstance(body, dict):
            entry["status"] = 400
            message = "There was an error parsing the body: expected a JSON object."
            await _send_json(send, 400, wire.error(400, message), base_headers)
            return
        if mode.startswith("azure") and "api-version" not in dict(parse_qsl(entry["query"])):
            entry["status"] = 404
            message = "Resource not found (the api-version query parameter is missing)."
            await _send_json(send, 404, openai_error(404, message, code="404"), base_headers)
            return
        if mode in ("embed", "batch-embed", "azure-embed"):
            await self._embed(wire, mode, model_hint, body, entry, headers, base_headers, send)
            return
        if mode == "count":
            entry["status"] = 200
            entry["model"] = model_hint or body.get("model")
            assert isinstance(wire, AnthropicWire | GeminiWire)
            await _send_json(send, 200, wire.count_tokens_body(body), base_headers)
            return
        call: Call | None = None
        try:
            problem = wire.validate(body)
            if problem is None:
                call = wire.parse(body, model_hint)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # A real provider answers 400 to a field of the wrong shape, never 500.
            problem = f"Invalid request: a field has an unexpected type ({exc})"
        if call is None:
            entry["status"] = 400
            await _send_json(send, 400, wire.error(400, problem or "Invalid request"), base_headers)
            return
        if mode in ("sse", "array"):
            call.stream = True
        entry["model"] = call.model
        entry["stream"] = call.stream
        faults = self.faults.choose(call.model, headers.get("x-mock-fault"))
        entry["fault"] = faults.label()
        delay_ms = self.settings.latency_ms + faults.first_delay_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if faults.hang:
            entry["status"] = 0
            await _wait_for_disconnect(receive, self.config.hang_s)
            return
        if faults.status is not None:
            await self._send_fault(wire, faults, entry, base_headers, send)
            return
        limit = self.settings.context_window or wire.default_context_window
        if faults.context or call.input_tokens > limit:
            status, error = wire.context_error(call, limit)
            entry["status"] = status
            await _send_json(send, status, error, base_headers)
            return
        try:
            tool = wants_tool(call.tools, call.messages, headers.get("x-mock-tool"))
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            entry["status"] = 400
            message = f"Invalid request: a message has an unexpected shape ({exc})"
            await _send_json(send, 400, wire.error(400, message), base_headers)
            return
        reply = plan_reply(
            tool=tool,
            max_tokens=call.max_tokens,
            text_header=headers.get("x-mock-text"),
            output_tokens_header=headers.get("x-mock-output-tokens"),
        )
        ids = Ids(seq=seq, created=int(time.time()))
        entry["status"] = 200
        if not call.stream:
            await _send_json(send, 200, wire.complete(call, reply, ids), base_headers)
            return
        if mode == "array":
            assert isinstance(wire, GeminiWire)
            await _send_json(send, 200, wire.stream_json_array(call, reply, ids), base_headers)
            return
        await self._stream(wire, call, wire.stream(call, reply, ids), faults, base_headers, send)

    async def _embed(
        self,
        wire: Wire,
        mode: str,
        model_hint: str | None,
        body: Mapping[str, Any],
        entry: dict[str, Any],
        headers: Mapping[str, str],
        base_headers: list[tuple[bytes, bytes]],
        send: Send,
    ) -> None:
        """Embeddings: faults and latency apply as to any call; no stream, no context."""
        model = model_hint if mode != "embed" or wire is self._gemini else None
        entry["model"] = model or body.get("model")
        entry["stream"] = False
        faults = self.faults.choose(str(entry["model"]), headers.get("x-mock-fault"))
        entry["fault"] = faults.label()
        delay_ms = self.settings.latency_ms + faults.first_delay_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        if faults.status is not None:
            await self._send_fault(wire, faults, entry, base_headers, send)
            return
        if wire is self._gemini:
            status, result = (gemini_batch_embed if mode == "batch-embed" else gemini_embed)(body)
        else:
            status, result = openai_embeddings(body)
        entry["status"] = status
        payload = result if isinstance(result, bytes) else wire.error(status, result)
        await _send_json(send, status, payload, base_headers)

    async def _send_fault(
        self,
        wire: Wire,
        faults: Faults,
        entry: dict[str, Any],
        base_headers: list[tuple[bytes, bytes]],
        send: Send,
    ) -> None:
        status = faults.status or 500
        entry["status"] = status
        headers = list(base_headers)
        if faults.retry_after is not None:
            headers.append((b"retry-after", f"{faults.retry_after:g}".encode()))
            headers.append((b"retry-after-ms", f"{int(faults.retry_after * 1000)}".encode()))
        if isinstance(wire, AnthropicWire):
            headers.append((b"x-should-retry", b"true" if status >= 429 else b"false"))
        await _send_json(send, status, wire.error(status), headers)

    async def _stream(
        self,
        wire: Wire,
        call: Call,
        events: list[bytes],
        faults: Faults,
        base_headers: list[tuple[bytes, bytes]],
        send: Send,
    ) -> None:
        headers = [
            (b"content-type", wire.content_type_stream),
            (b"cache-control", b"no-cache"),
            *base_headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        delay = faults.chunk_delay_ms / 1000.0
        cut = faults.disconnect_after
        try:
            if not delay and cut is None:
                # Nothing paces the stream: one write, as a loopback socket would deliver it.
                await send({"type": "http.response.body", "body": b"".join(events)})
                return
            for i, event in enumerate(events):
                if cut is not None and i >= cut:
                    raise MockDisconnect(f"mock fault: disconnect after {cut} events")
                if delay and i:
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away; nothing left to do
            return

    # ---- control endpoints ----

    async def _control(self, method: str, path: str, scope: Scope, body: bytes, send: Send) -> None:
        status, payload = self._control_result(method, path, scope, body)
        await _send_json(send, status, dumps(payload).encode(), [])

    def _control_result(self, method: str, path: str, scope: Scope, body: bytes) -> tuple[int, Any]:
        if path == "/_mock/health":
            return 200, {"ok": True}
        if path == "/_mock/requests" and method == "GET":
            params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            rows = self.requests(params.get("path"))
            limit = params.get("limit")
            if limit and limit.isdigit():
                rows = rows[-int(limit) :] if int(limit) else []
            return 200, {"requests": rows}
        if path == "/_mock/reset" and method == "POST":
            self.reset()
            return 200, {"ok": True}
        if path == "/_mock/faults":
            if method == "POST":
                try:
                    spec = json.loads(body or b"{}")
                    rules = parse_fault_spec(spec.get("faults"))
                except Exception as exc:
                    return 400, {"error": {"message": str(exc)}}
                seed = spec.get("seed")
                if spec.get("append"):
                    for rule in rules:
                        self.faults.add(rule)
                else:
                    self.faults.set(rules, seed=seed if isinstance(seed, int) else None)
            return 200, {"faults": self.faults.describe()}
        if path == "/_mock/config":
            if method == "POST":
                try:
                    changes = json.loads(body or b"{}")
                except ValueError as exc:
                    return 400, {"error": {"message": str(exc)}}
                if "latency_ms" in changes:
                    self.settings.latency_ms = float(changes["latency_ms"] or 0)
                if "region" in changes:
                    self.settings.region = changes["region"]
                if "context_window" in changes:
                    window = changes["context_window"]
                    self.settings.context_window = int(window) if window else None
            return 200, {
                "latency_ms": self.settings.latency_ms,
                "region": self.settings.region,
                "context_window": self.settings.context_window,
            }
        return 404, {"error": {"message": f"unknown control endpoint {method} {path}"}}


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _wait_for_disconnect(receive: Receive, limit_s: float) -> None:
    """The timeout fault: answer nothing until the client gives up (or limit_s passes)."""
    try:
        async with asyncio.timeout(limit_s):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return
