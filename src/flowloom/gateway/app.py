"""The gateway's ASGI app and its request pipeline.

Raw ASGI on purpose: no framework routing or body validation sits between a caller and
the upstream. Per call the pipeline is: authenticate the virtual key, reserve a recording
slot, read and peek the body (model, stream, tools, images, max tokens), plan a cascade
with the router, then for each target: admit (limits, budget), translate when formats
differ, send with the one pooled HTTP client, and fall back on 429/5xx/529, timeouts and
context-window errors while nothing has reached the caller yet. Streams are relayed one
SSE event per write, in order. Usage is settled and the exchange recorded afterwards, in
the recorder's thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from flowloom.errors import (
    AuthError,
    FlowLoomError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from flowloom.gateway.access.records import Admission, Usage, VirtualKey
from flowloom.gateway.ports import AccessPort, RouterPort
from flowloom.gateway.providers.interface import Format, Provider, ProviderConfig, UpstreamCall
from flowloom.gateway.providers.registry import make_provider
from flowloom.gateway.recorder import Attempt, Exchange, Recorder
from flowloom.gateway.routing.model import RouteRequest, Target
from flowloom.gateway.translate.errors import SHAPE_ERRORS
from flowloom.gateway.wire.common import RequestInfo, Tokens, classify_error
from flowloom.gateway.wire.formats import Wire, wire_for
from flowloom.gateway.wire.intake import (
    MAX_MODEL_CHARS,
    MalformedRequestError,
    check_fields,
    check_model_name,
    parse_request,
)
from flowloom.gateway.wire.models import ModelsEndpoint
from flowloom.gateway.wire.routes import (
    EMBEDDING_OPS,
    caller_format,
    model_call,
    models_read,
)
from flowloom.gateway.wire.sse import SseSplitter, parse_event, serialize

if TYPE_CHECKING:
    import aiohttp

    from flowloom.gateway.otel import Telemetry

__all__ = ["Gateway", "GatewaySettings", "build_gateway", "create_gateway_app"]

log = logging.getLogger("flowloom.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SESSION_HEADERS = (
    "x-claude-code-session-id",
    "x-session-id",
    "session_id",
    "session-id",
    "x-flowloom-session",
    "x-codex-session-id",
)
_JSON = [(b"content-type", b"application/json")]
_JSON_STREAM = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_TRANSLATION_FAILURES: tuple[type[Exception], ...] = (FlowLoomError, *SHAPE_ERRORS)
_FORWARDED_RESPONSE_HEADERS = ("request-id", "x-request-id", "openai-processing-ms")


@dataclass(frozen=True)
class GatewaySettings:
    """Limits and defaults of one gateway process."""

    default_project: str = "gateway"
    max_request_bytes: int = 32 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024
    max_record_bytes: int = 8 * 1024 * 1024
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retry_wait_s: float = 10.0
    reload_interval_s: float = 2.0
    pool_size: int = 512


@dataclass(slots=True)
class _Call:
    """One caller request as the pipeline tracks it."""

    fmt: Format
    op: str
    endpoint: str
    headers: dict[str, str]
    query: str
    url_model: str | None
    started: float
    wall: float
    body: bytes = b""
    info: RequestInfo | None = None
    parsed: dict[str, Any] | None = None
    vkey: VirtualKey | None = None
    admission: Admission | None = None
    attempts: list[Attempt] = field(default_factory=list)
    status: int = 0
    response: bytes = b""
    error: str | None = None
    target: Target | None = None
    ttft: float | None = None
    response_started: bool = False
    error_kind: str | None = None
    usage: Tokens | None = None
    clamped: tuple[int, int] | None = None  # (max tokens asked, max tokens sent)
    notes: dict[str, Any] = field(default_factory=dict)  # more refs for the record


class _UpstreamFailed(Exception):
    """An attempt failed before anything reached the caller: maybe fall back."""

    def __init__(
        self,
        status: int | None,
        kind: str | None,
        message: str,
        body: bytes = b"",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.body = body
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after-ms")
    if raw:
        try:
            return float(raw) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def _status_of(exc: FlowLoomError) -> int:
    status = getattr(exc, "http_status", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    return 500


class Gateway:
    """The pipeline and its collaborators; one per process, shared by every request."""

    def __init__(
        self,
        *,
        router: RouterPort,
        access: AccessPort,
        recorder: Recorder,
        settings: GatewaySettings | None = None,
        telemetry: Telemetry | None = None,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self.router = router
        self.access = access
        self.recorder = recorder
        self.settings = settings or GatewaySettings()
        self.telemetry = telemetry
        self._closers = closers or []
        self._client: aiohttp.ClientSession | None = None
        self._providers: dict[str, tuple[ProviderConfig, Provider]] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    async def startup(self) -> None:
        if self._started:
            return
        self._started = True
        self.recorder.start()
        await self._session()
        if self.settings.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())

    async def shutdown(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        await asyncio.to_thread(self.recorder.close)
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.exception("closing a gateway part failed")
        self._started = False

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                self.router.reload_if_changed()
            except Exception:
                log.exception("reloading the routing configuration failed")

    async def _session(self) -> aiohttp.ClientSession:
        if self._client is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self.settings.pool_size,
                limit_per_host=0,
                ttl_dns_cache=300,
                keepalive_timeout=60,
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.settings.connect_timeout_s
                ),
                skip_auto_headers=("User-Agent",),
            )
            if not self._started:
                self.recorder.start()
        return self._client

    def provider(self, name: str) -> Provider:
        configs = self.router.providers()
        config = configs.get(name)
        if config is None:
            raise NotFoundError(f"the routing configuration has no provider {name!r}")
        cached = self._providers.get(name)
        if cached is not None and cached[0] is config:
            return cached[1]
        adapter = make_provider(config)
        if len(self._providers) > 4 * len(configs) + 16:
            self._providers.clear()  # stale adapters of reloaded configurations
        self._providers[name] = (config, adapter)
        return adapter

    # -- settlement (recorder thread) ---------------------------------------------------

    def settle(self, exchange: Exchange, tokens: Tokens) -> float | None:
        admission = exchange.admission
        if not isinstance(admission, Admission):
            return None
        if exchange.provider is None or exchange.status >= 400:
            self.access.release(admission)
            return None
        cost = self.access.settle(
            admission,
            provider=exchange.provider,
            model=exchange.upstream_model or exchange.model,
            usage=Usage(
                tokens.input_tokens, tokens.output_tokens, tokens.cache_read, tokens.cache_write
            ),
        )
        return round(cost.total_usd, 10) if cost.priced else None

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST":
            route = model_call(path)
            if route is not None:
                await self._model_call(
                    scope, receive, send, route.format, route.op, route.url_model
                )
                return
        elif method == "GET":
            if path == "/healthz":
                await _respond(send, 200, b'{"status":"ok"}')
                return
            if path == "/readyz":
                await self._ready(send)
                return
            read = models_read(path, _headers(scope), _query(scope))
            if read is not None:
                await self._models(scope, send, read.format, read.model)
                return
        fmt = caller_format(path, _headers(scope), _query(scope))
        await _respond(
            send, 404, wire_for(fmt).error_body(404, f"no such endpoint: {method} {path}")
        )

    async def _ready(self, send: Send) -> None:
        status = self.recorder.status()
        ok = bool(status["available"])
        body = json.dumps({"status": "ready" if ok else "unavailable", "recorder": status})
        await _respond(send, 200 if ok else 503, body.encode())

    async def _models(self, scope: Scope, send: Send, fmt: Format, model: str | None) -> None:
        """GET the model list or one model, in the caller's format (see wire.models)."""
        headers = _headers(scope)
        try:
            self.access.authenticate(_secret(headers, _query(scope)))
        except FlowLoomError as exc:
            status = _status_of(exc)
            await _respond(send, status, wire_for(fmt).error_body(status, exc.diagnostics()))
            return
        endpoint = ModelsEndpoint(
            self.router, self.provider, self.access.provider_key, self._session
        )
        status, body = await (
            endpoint.list(fmt) if model is None else endpoint.get(fmt, model, headers)
        )
        await _respond(send, status, body)

    # -- the pipeline -------------------------------------------------------------------

    async def _model_call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        fmt: Format,
        op: str,
        url_model: str | None,
    ) -> None:
        headers = _headers(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        call = _Call(
            fmt=fmt,
            op=op,
            endpoint=scope["path"],
            headers=headers,
            query=query,
            url_model=url_model,
            started=time.perf_counter(),
            wall=time.time(),
        )
        wire = wire_for(fmt)
        try:
            call.vkey = self.access.authenticate(_secret(headers, query))
        except FlowLoomError as exc:
            status = _status_of(exc)
            await _respond(send, status, wire.error_body(status, exc.diagnostics()))
            return
        if not self.recorder.reserve():
            message = "the gateway cannot record right now, so it refuses requests"
            if self.recorder.reason:
                message += f" ({self.recorder.reason})"
            await _respond(
                send, 503, wire.error_body(503, message + "; retry later"), [(b"retry-after", b"5")]
            )
            return
        try:
            await self._serve(call, wire, receive, send)
        except Exception as exc:  # a bug must still answer and be recorded
            log.exception("gateway request failed")
            call.error = f"internal error: {type(exc).__name__}: {exc}"
            if not call.response_started:
                call.status = 500
                call.response = wire.error_body(500, "the gateway failed; see its log")
                await _respond(send, 500, call.response)
        finally:
            self._record(call)

    def _record(self, call: _Call) -> None:
        target = call.target
        info = call.info
        self.recorder.record(
            Exchange(
                endpoint=call.endpoint,
                format=call.fmt,
                model=info.model if info is not None else (call.url_model or "")[:MAX_MODEL_CHARS],
                stream=info.stream if info is not None else False,
                request=call.body,
                response=call.response,
                status=call.status,
                started_at=call.wall,
                latency_s=time.perf_counter() - call.started,
                ttft_s=call.ttft,
                provider=target.provider if target is not None else None,
                upstream_model=target.model if target is not None else None,
                upstream_format=target.format if target is not None else None,
                region=target.region if target is not None else None,
                attempts=tuple(call.attempts),
                virtual_key=call.vkey.id if call.vkey is not None else None,
                project=call.vkey.project if call.vkey is not None else None,
                session=_session_id(call.headers),
                error=call.error,
                admission=call.admission,
                traceparent=call.headers.get("traceparent"),
                user_agent=call.headers.get("user-agent"),
                max_tokens=info.max_tokens if info is not None else None,
                usage=call.usage,
                extra={**_clamp_note(call.clamped), **call.notes},
            )
        )

    async def _fail(
        self,
        call: _Call,
        wire: Wire,
        send: Send,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        call.status = status
        call.error = message
        call.response = wire.error_body(status, message)
        await _respond(send, status, call.response, extra)

    async def _serve(self, call: _Call, wire: Wire, receive: Receive, send: Send) -> None:
        settings = self.settings
        declared = call.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > settings.max_request_bytes
        ):
            await self._too_large(call, wire, send)
            return
        body = await _read_body(receive, settings.max_request_bytes)
        if body is None:
            await self._too_large(call, wire, send)
            return
        call.body = body
        try:
            parsed = parse_request(body)
            check_fields(call.fmt, parsed, call.op)
            if call.url_model is not None:
                check_model_name(call.url_model)
        except MalformedRequestError as exc:
            await self._fail(call, wire, send, 400, exc.diagnostics())
            return
        call.parsed = parsed
        info = wire.peek(parsed, size=len(body), model=call.url_model)
        if call.op == "stream_generate":
            info = _with_stream(info)
        elif call.op in EMBEDDING_OPS or call.op == "count_tokens":
            info = _without_stream(info)
        call.info = info
        if not info.model:
            await self._fail(call, wire, send, 400, 'the request names no model; set "model"')
            return
        vkey = call.vkey
        assert vkey is not None
        try:
            cascade = self.router.plan(
                RouteRequest(
                    format=call.fmt,
                    model=info.model,
                    stream=info.stream,
                    has_tools=info.has_tools,
                    has_images=info.has_images,
                    est_input_tokens=info.est_input_tokens,
                    max_output_tokens=info.max_tokens,
                    project=vkey.project,
                    residency=None,
                )
            )
        except FlowLoomError as exc:
            await self._fail_flowloom(call, wire, send, exc)
            return
        if call.op == "count_tokens":
            await self._count_tokens(call, wire, send, cascade)
            return
        await self._cascade(call, wire, send, receive, cascade)

    async def _too_large(self, call: _Call, wire: Wire, send: Send) -> None:
        limit = self.settings.max_request_bytes
        await self._fail(
            call, wire, send, 413, f"the request body is over the gateway's limit of {limit} bytes"
        )

    async def _fail_flowloom(self, call: _Call, wire: Wire, send: Send, exc: FlowLoomError) -> None:
        status = _status_of(exc)
        extra = None
        retry = getattr(exc, "retry_after_s", None)
        if isinstance(retry, int | float) and retry > 0:
            extra = [(b"retry-after", str(max(1, int(retry + 0.999))).encode())]
        await self._fail(call, wire, send, status, exc.diagnostics(), extra)

    def _allowed_model(self, vkey: VirtualKey, target: Target, info: RequestInfo) -> str:
        """The name the key may use for `target`: the requested one, or else the upstream
        model's; PermissionDeniedError when it allows neither."""
        try:
            self.access.check_model(vkey, info.model)
            return info.model
        except PermissionDeniedError:
            if target.model == info.model:
                raise
            self.access.check_model(vkey, target.model)
            return target.model

    def _admit(self, call: _Call, target: Target) -> None:
        """Admit the call once, at its first allowed target: rate limits and budgets count
        a caller's request, not the gateway's fallbacks. Later targets (fallbacks, the
        retry) are only checked against the key's allow-list."""
        vkey, info = call.vkey, call.info
        assert vkey is not None and info is not None
        model = self._allowed_model(vkey, target, info)
        if call.admission is None:
            call.admission = self.access.admit(vkey, model=model, est_tokens=info.est_input_tokens)

    async def _cascade(
        self, call: _Call, wire: Wire, send: Send, receive: Receive, cascade: list[Target]
    ) -> None:
        info = call.info
        vkey = call.vkey
        assert info is not None and vkey is not None
        deadline = call.started + self.settings.request_timeout_s
        last: _UpstreamFailed | None = None
        last_target: Target | None = None
        denied: FlowLoomError | None = None
        pending = list(cascade)
        retried = False
        while pending:
            target = pending.pop(0)
            try:
                self._admit(call, target)
            except PermissionDeniedError as exc:
                denied = denied or exc
                call.attempts.append(
                    Attempt(
                        target.provider,
                        target.model,
                        target.format,
                        403,
                        "not_allowed",
                        0.0,
                        region=target.region,
                    )
                )
                continue
            except FlowLoomError as exc:
                await self._fail_flowloom(call, wire, send, exc)
                return
            began = time.perf_counter()
            try:
                await self._attempt(call, wire, send, receive, target, deadline)
            except _UpstreamFailed as failure:
                elapsed = time.perf_counter() - began
                call.attempts.append(
                    Attempt(
                        target.provider,
                        target.model,
                        target.format,
                        failure.status,
                        failure.kind,
                        elapsed * 1000.0,
                        region=target.region,
                    )
                )
                self._outcome(
                    target, False, failure.status, elapsed, failure.retry_after, failure.kind
                )
                last, last_target = failure, target
                if not self.router.should_fall_back(failure.status, failure.kind):
                    break
                pending = self._fallbacks(cascade, pending, target, failure.kind)
                left = deadline - time.perf_counter()
                wait = failure.retry_after
                if (
                    not pending
                    and not retried
                    and wait is not None
                    and wait <= min(self.settings.max_retry_wait_s, left)
                ):
                    # The last target asked for a short pause: honour it, once.
                    retried = True
                    await asyncio.sleep(wait)
                    pending = [target]
                continue
            elapsed = time.perf_counter() - began
            call.target = target
            ok = call.status < 400
            call.attempts.append(
                Attempt(
                    target.provider,
                    target.model,
                    target.format,
                    call.status,
                    call.error_kind,
                    elapsed * 1000.0,
                    region=target.region,
                )
            )
            self._outcome(target, ok, call.status, elapsed, None, call.error_kind)
            return
        # Nothing succeeded and nothing reached the caller: answer with the last failure.
        if last is None:
            if denied is not None:
                await self._fail_flowloom(call, wire, send, denied)
            else:
                await self._fail(
                    call, wire, send, 503, "every target of this model is unavailable; retry later"
                )
            return
        await self._relay_failure(call, wire, send, last, last_target)

    def _fallbacks(
        self, cascade: list[Target], pending: list[Target], failed: Target, kind: str | None
    ) -> list[Target]:
        """What is left to try: the router's view (retry-after, breakers, larger windows)."""
        fallbacks = getattr(self.router, "fallbacks", None)
        if fallbacks is None:
            return pending
        allowed = fallbacks(cascade, failed, error_kind=kind)
        return [t for t in pending if t in allowed]

    def _outcome(
        self,
        target: Target,
        ok: bool,
        status: int | None,
        latency_s: float,
        retry_after: float | None,
        kind: str | None,
    ) -> None:
        try:
            self.router.outcome(
                target,
                ok=ok,
                status=status,
                latency_s=latency_s,
                retry_after_s=retry_after,
                error_kind=kind,
            )
        except Exception:
            log.exception("the router failed to take an outcome")

    async def _relay_failure(
        self, call: _Call, wire: Wire, send: Send, failure: _UpstreamFailed, target: Target | None
    ) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if failure.retry_after is not None:
            extra.append((b"retry-after", str(max(1, int(failure.retry_after + 0.999))).encode()))
        if failure.status is None:
            status = 504 if failure.kind in ("timeout", "first_byte_timeout") else 502
            await self._fail(call, wire, send, status, str(failure), extra)
            return
        status = failure.status
        if target is not None and target.format == call.fmt and _json_object(failure.body):
            call.status = status
            call.error = str(failure)
            call.response = failure.body
            await _respond(send, status, failure.body, extra)
            return
        await self._fail(call, wire, send, status, str(failure), extra)

    # -- one upstream attempt --------------------------------------------------------------

    def _upstream_body(self, call: _Call, target: Target) -> bytes:
        info = call.info
        parsed = call.parsed
        assert info is not None and parsed is not None
        call.clamped = None
        limit = target.max_output
        if limit is not None and info.max_tokens is not None and info.max_tokens > limit:
            # The target allows less output than asked: send its maximum, and say so in
            # the record, rather than fail a call a client cannot reshape (Claude Code
            # asks for 32,000).
            parsed = wire_for(call.fmt).with_max_tokens(parsed, limit)
            call.clamped = (info.max_tokens, limit)
        if call.op in EMBEDDING_OPS:
            return _embedding_body(call.body, parsed, call.op, info.model, target)
        if target.format != call.fmt:
            from flowloom.gateway.translate import translate_request

            translated = translate_request(
                parsed, call.fmt, target.format, model=target.model, stream=info.stream
            )
            return json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
        if call.clamped is None and (call.fmt == "gemini" or parsed.get("model") == target.model):
            return call.body  # untouched: unknown fields and byte order as the caller sent them
        rewritten = dict(parsed)
        if call.fmt != "gemini":  # a Gemini call names its model in the URL
            rewritten["model"] = target.model
        return json.dumps(rewritten, ensure_ascii=False, separators=(",", ":")).encode()

    async def _attempt(
        self, call: _Call, wire: Wire, send: Send, receive: Receive, target: Target, deadline: float
    ) -> None:
        import aiohttp

        info = call.info
        assert info is not None
        provider = self.provider(target.provider)
        config = provider.config
        try:
            body = self._upstream_body(call, target)
        except FlowLoomError as exc:
            raise _UpstreamFailed(400, "translation", exc.diagnostics()) from exc
        except SHAPE_ERRORS as exc:
            raise _UpstreamFailed(
                400,
                "translation",
                f"this request cannot be translated for {target.provider} ({target.format}): "
                f"a field has an unexpected shape ({type(exc).__name__}: {exc})",
            ) from exc
        upstream = UpstreamCall(
            format=target.format,
            model=target.model,
            stream=info.stream,
            body=body,
            path_hint=call.op
            if target.format == call.fmt
            else _default_op(target.format, info.stream),
            passthrough_headers=call.headers,
        )
        api_key = self.access.provider_key(config.api_key_ref) if config.api_key_ref else None
        session = await self._session()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _UpstreamFailed(None, "timeout", "the request's time budget is spent")
        first_byte = min(config.first_byte_timeout_s, remaining)
        try:
            async with asyncio.timeout(first_byte):
                response = await session.post(
                    provider.url(upstream),
                    data=body,
                    headers=provider.headers(upstream, api_key),
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        sock_connect=self.settings.connect_timeout_s,
                        sock_read=min(config.timeout_s, remaining),
                    ),
                )
        except TimeoutError as exc:
            raise _UpstreamFailed(
                None, "timeout", f"{target.provider} did not answer within {first_byte:.1f} s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _UpstreamFailed(
                None, "connect", f"{target.provider} is unreachable: {type(exc).__name__}"
            ) from exc
        try:
            if response.status >= 400:
                await self._upstream_error(call, response, target)
            streaming = info.stream and response.content_type == "text/event-stream"
            if streaming:
                await self._relay_stream(call, wire, send, receive, response, target, first_byte)
            else:
                await self._relay_whole(call, wire, send, response, target)
                if call.op in ("embed_content", "batch_embed") and call.status < 400:
                    # Gemini reports no usage for embeddings: count the input, estimated.
                    call.usage = Tokens(input_tokens=info.est_input_tokens)
                    call.notes["usage_estimated"] = True
        finally:
            response.release()

    async def _upstream_error(
        self, call: _Call, response: aiohttp.ClientResponse, target: Target
    ) -> None:
        import aiohttp

        try:
            raw = await response.content.read(1024 * 1024)
        except (aiohttp.ClientError, OSError, TimeoutError):
            raw = b""
        message = f"{target.provider} answered {response.status}"
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            detail = wire_for(target.format).error_message(parsed)
            if detail:
                message = f"{message}: {detail}"
        raise _UpstreamFailed(
            response.status,
            classify_error(response.status, raw),
            message,
            raw,
            _retry_after(response.headers),
        )

    async def _relay_whole(
        self, call: _Call, wire: Wire, send: Send, response: aiohttp.ClientResponse, target: Target
    ) -> None:
        import aiohttp

        info = call.info
        assert info is not None
        try:
            raw = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _UpstreamFailed(
                None, "disconnect", f"{target.provider} broke off: {type(exc).__name__}"
            ) from exc
        if len(raw) > self.settings.max_response_bytes:
            raise _UpstreamFailed(
                502,
                "too_large",
                f"{target.provider} answered with {len(raw)} bytes, over the limit",
            )
        if target.format != call.fmt:
            from flowloom.gateway.translate import translate_response

            try:
                translated = translate_response(
                    json.loads(raw),
                    target.format,
                    call.fmt,
                    model=info.model,
                    namespaced=_namespaced(call),
                )
            except _TRANSLATION_FAILURES as exc:
                raise _UpstreamFailed(
                    502, "translation", f"cannot translate {target.provider}'s answer: {exc}"
                ) from exc
            raw = json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
        call.status = response.status
        call.response = raw
        extra = [
            (
                b"content-type",
                response.headers.get("content-type", "application/json").encode("latin-1"),
            )
        ]
        for name in _FORWARDED_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                extra.append((name.encode(), value.encode("latin-1")))
        call.response_started = True
        call.ttft = time.perf_counter() - call.started
        await send({"type": "http.response.start", "status": response.status, "headers": extra})
        await send({"type": "http.response.body", "body": raw, "more_body": False})

    async def _relay_stream(
        self,
        call: _Call,
        wire: Wire,
        send: Send,
        receive: Receive,
        response: aiohttp.ClientResponse,
        target: Target,
        first_byte_s: float,
    ) -> None:
        """Relay one event per write; fall back only while nothing was sent."""
        import aiohttp

        info = call.info
        assert info is not None
        translator = None
        if target.format != call.fmt:
            from flowloom.gateway.translate import StreamTranslator

            options = call.parsed.get("stream_options") if call.parsed else None
            include_usage = call.fmt != "openai" or (
                isinstance(options, dict) and options.get("include_usage") is True
            )
            translator = StreamTranslator(
                target.format,
                call.fmt,
                model=info.model,
                include_usage=include_usage,
                input_tokens=info.est_input_tokens,
                namespaced=_namespaced(call),
            )
        # A Gemini caller without ?alt=sse reads one JSON array, streamed element by
        # element; the record keeps the events (it is reassembled like any stream).
        as_array = call.fmt == "gemini" and not _alt_sse(call.query)
        splitter = SseSplitter()
        kept: list[bytes] = []
        kept_bytes = 0
        limit = self.settings.max_record_bytes
        truncated = False
        content = response.content
        watcher: asyncio.Task[Message] | None = None

        finished = False

        def _close_unless_finished(task: asyncio.Task[Message]) -> None:
            # The caller went away mid-stream: stop reading upstream, free the connection.
            if not finished and not task.cancelled():
                response.close()

        async def emit(data: bytes) -> None:
            nonlocal kept_bytes, truncated, watcher
            first = not call.response_started
            if first:
                call.response_started = True
                call.ttft = time.perf_counter() - call.started
                call.status = 200
                headers = _JSON_STREAM if as_array else _SSE
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                watcher = asyncio.ensure_future(receive())
                watcher.add_done_callback(_close_unless_finished)
            sent = _array_element(data, first) if as_array else data
            await send({"type": "http.response.body", "body": sent, "more_body": True})
            if kept_bytes + len(data) <= limit:
                kept.append(data)
                kept_bytes += len(data)
            else:
                truncated = True

        async def relay(raw: bytes) -> None:
            if translator is None:
                await emit(raw)
                return
            parsed = parse_event(raw)
            if parsed is None:
                return
            for event in translator.feed(parsed):
                await emit(serialize(event))

        try:
            try:
                async with asyncio.timeout(first_byte_s):
                    while not call.response_started:
                        chunk = await content.readany()
                        if not chunk:
                            break
                        for raw in splitter.feed(chunk):
                            await relay(raw)
            except TimeoutError as exc:
                raise _UpstreamFailed(
                    None,
                    "first_byte_timeout",
                    f"{target.provider} sent no first token within {first_byte_s:.1f} s",
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise _UpstreamFailed(
                    None,
                    "disconnect",
                    f"{target.provider} broke off before the first token: {type(exc).__name__}",
                ) from exc
            if not call.response_started:
                rest = splitter.rest()
                if rest.strip():
                    await relay(rest + b"\n\n")
                if not call.response_started:
                    raise _UpstreamFailed(
                        None, "disconnect", f"{target.provider} ended the stream without an event"
                    )
            try:
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    for raw in splitter.feed(chunk):
                        await relay(raw)
                        if watcher is not None and watcher.done():
                            raise ConnectionResetError("the caller went away")
                rest = splitter.rest()
                if rest.strip():
                    await relay(rest + b"\n\n")
                if translator is not None:
                    for event in translator.close():
                        await emit(serialize(event))
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                gone = watcher is not None and watcher.done()
                message = (
                    "the caller disconnected mid-stream"
                    if gone
                    else f"{target.provider} broke off mid-stream: {type(exc).__name__}"
                )
                call.error = message
                call.status = 499 if gone else 502
                call.error_kind = "client_disconnect" if gone else "disconnect"
                if not gone and call.response_started:
                    error = wire.stream_error(502, message)
                    kept.append(error)
                    sent = _array_element(error, False) if as_array else error
                    await send({"type": "http.response.body", "body": sent, "more_body": True})
                elif not call.response_started:
                    raise _UpstreamFailed(None, "disconnect", message) from exc
            finished = True
            if call.response_started:
                end = b"]" if as_array else b""
                await send({"type": "http.response.body", "body": end, "more_body": False})
        finally:
            finished = True
            if watcher is not None and not watcher.done():
                watcher.cancel()
            if translator is not None:
                if translator.error is not None and call.error is None:
                    call.error = f"translation: {translator.error}"
                withheld = translator.withheld_usage
                if withheld is not None:
                    from flowloom.gateway.translate.common import usage_numbers

                    call.usage = Tokens(*usage_numbers(withheld))
            call.response = b"".join(kept)
            if truncated:
                call.error = (call.error + "; " if call.error else "") + "stream record truncated"

    async def _count_tokens(
        self, call: _Call, wire: Wire, send: Send, cascade: list[Target]
    ) -> None:
        """Forward to a target of the caller's own format (Anthropic or Gemini); otherwise
        answer with an estimate. Recorded with input tokens = the count, no output.

        The key's allow-list and rate limit apply as to any call (only targets it may
        use are asked, and a key allowing none of them is refused).
        """
        info, vkey = call.info, call.vkey
        assert info is not None and vkey is not None
        allowed: list[Target] = []
        denied: PermissionDeniedError | None = None
        for target in cascade:
            try:
                self._allowed_model(vkey, target, info)
            except PermissionDeniedError as exc:
                denied = denied or exc
                continue
            allowed.append(target)
        try:
            if not allowed:
                assert denied is not None
                raise denied
            self._admit(call, allowed[0])
        except FlowLoomError as exc:
            await self._fail_flowloom(call, wire, send, exc)
            return
        if call.admission is not None:  # counted against rpm; counting costs no tokens
            self.access.release(call.admission)
            call.admission = None
        for target in allowed:
            if target.format == call.fmt:
                try:
                    await self._attempt(
                        call,
                        wire,
                        send,
                        _never,
                        target,
                        call.started + self.settings.request_timeout_s,
                    )
                except _UpstreamFailed:
                    continue
                call.target = target
                call.usage = Tokens(input_tokens=_token_count(call.response))
                call.notes["operation"] = "count_tokens"
                return
        count = info.est_input_tokens
        call.status = 200
        field_name = "totalTokens" if call.fmt == "gemini" else "input_tokens"
        call.response = json.dumps({field_name: count}).encode()
        call.usage = Tokens(input_tokens=count)
        call.notes.update(operation="count_tokens", usage_estimated=True)
        await _respond(send, 200, call.response)


def _token_count(response: bytes) -> int:
    """The count in a count_tokens answer: Anthropic input_tokens, Gemini totalTokens."""
    try:
        parsed = json.loads(response)
    except (ValueError, RecursionError):
        return 0
    if not isinstance(parsed, dict):
        return 0
    for name in ("input_tokens", "totalTokens", "total_tokens"):
        value = parsed.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _namespaced(call: _Call) -> dict[str, tuple[str, str]] | None:
    """The namespace functions of a Responses caller's tools (flattened on translation)."""
    if call.fmt != "responses" or call.parsed is None:
        return None
    from flowloom.gateway.translate import namespaced_tools

    return namespaced_tools(call.parsed) or None


def _embedding_body(
    raw: bytes, parsed: Mapping[str, Any], op: str, model: str, target: Target
) -> bytes:
    """An embeddings request for `target`: never translated (vectors of one provider's
    model mean nothing to another's), the model name rewritten when routed."""
    from flowloom.gateway.translate import TranslationError

    if target.format not in ("openai", "gemini") or (target.format == "gemini") != (
        op != "embeddings"
    ):
        raise TranslationError(
            f"embeddings cannot be translated for a {target.format} target; route this "
            "embedding model to a provider of the caller's own API"
        )
    if target.model == model:
        return raw
    rewritten = dict(parsed)
    if op == "embeddings":
        rewritten["model"] = target.model
    elif op == "batch_embed" and isinstance(parsed.get("requests"), list):
        rewritten["requests"] = [
            {**r, "model": f"models/{target.model}"} if isinstance(r, dict) else r
            for r in parsed["requests"]
        ]
    elif "model" in parsed:
        rewritten["model"] = f"models/{target.model}"
    return json.dumps(rewritten, ensure_ascii=False, separators=(",", ":")).encode()


def _alt_sse(query: str) -> bool:
    return "sse" in parse_qs(query).get("alt", ())


def _array_element(event: bytes, first: bool) -> bytes:
    """One SSE event's data as the next element of a streamed JSON array."""
    parsed = parse_event(event)
    data = parsed.data.encode() if parsed is not None else b"{}"
    return (b"[" if first else b",\r\n") + data


def _clamp_note(clamped: tuple[int, int] | None) -> dict[str, Any]:
    """The record's note that max tokens were lowered to the serving target's max_output."""
    if clamped is None:
        return {}
    return {"max_tokens_clamped": {"requested": clamped[0], "sent": clamped[1]}}


def _json_object(body: bytes) -> bool:
    """Whether an upstream error body is a JSON object (relayable to a same-format caller);
    a proxy's HTML page or a bare "Internal Server Error" is not."""
    if not body.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


async def _never() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def _with_stream(info: RequestInfo, stream: bool = True) -> RequestInfo:
    return RequestInfo(
        info.model, stream, info.has_tools, info.has_images, info.max_tokens, info.est_input_tokens
    )


def _without_stream(info: RequestInfo) -> RequestInfo:
    return _with_stream(info, False)


def _default_op(fmt: Format, stream: bool) -> str:
    if fmt == "anthropic":
        return "messages"
    if fmt == "gemini":
        return "stream_generate" if stream else "generate"
    return "responses" if fmt == "responses" else "chat"


def _query(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _secret(headers: Mapping[str, str], query: str | bytes) -> str:
    """The caller's key, sent the way its SDK sends it."""
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            return value
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if query:
        text = query.decode("latin-1") if isinstance(query, bytes) else query
        if "key=" in text:
            keys = parse_qs(text).get("key")
            if keys:
                return keys[0]
    return ""


def _session_id(headers: Mapping[str, str]) -> str | None:
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is over `limit` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = _JSON if not extra else [*_JSON, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def create_gateway_app(gateway: Gateway) -> Gateway:
    """The ASGI app serving `gateway` (the Gateway is itself the ASGI callable)."""
    return gateway


def build_gateway(
    *,
    database: str,
    config_path: Path | None = None,
    record: str = "fail_closed",
    spool_path: Path | None = None,
    project: str = "gateway",
    home: Path | None = None,
    settings: GatewaySettings | None = None,
    provider: ProviderConfig | None = None,
    access_database: str | None = None,
    telemetry: bool = False,
    origin_prefix: str = "flowloom.local",
) -> Gateway:
    """Wire a gateway over the ledger database `database`.

    Routing comes from `config_path`, else `provider` serves every call, else the default
    policy passes each provider's own model names straight through (routing.DEFAULT_POLICY);
    access from the access tables in `access_database` (default: `database`), or open
    access when `access_database` is "none".
    """
    from flowloom.gateway.wiring import build

    return build(
        database=database,
        config_path=config_path,
        record=record,
        spool_path=spool_path,
        project=project,
        home=home,
        settings=settings,
        provider=provider,
        access_database=access_database,
        telemetry=telemetry,
        origin_prefix=origin_prefix,
    )
