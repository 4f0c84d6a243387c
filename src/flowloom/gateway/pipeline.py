"""The request path of one model call, as explicit stages.

`Pipeline.handle` runs them in order, each a method that either hands its result to the
next or answers the caller itself:

1. authenticate — the virtual key from the header or query the caller's SDK uses;
2. reserve      — a recording slot, or 503 (the gateway records every exchange);
3. read         — size guard, body, parse with a nesting guard, field checks, peek;
4. route        — the router's cascade of targets;
5. admit        — once per call, at its first allowed target (`Admit`);
6. attempt      — per target: translate, send, and fall back on failure (`_cascade`);
7. relay        — the answer, whole or one event per write (relay.py);
8. record       — exactly once, whatever happened (`_record`, in `handle`'s finally).

The invariants, each held at one place: recorded exactly once (`handle`); the recording
slot reserved before anything else and given back by that record; admitted once per
call and that admission settled or released once (`Admit`, settlement.py); fallback only
while nothing has reached the caller (`UpstreamFailed` is only raised before the first
byte, relay.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowloom.errors import (
    AuthError,
    FlowLoomError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from flowloom.gateway.access.records import Admission, VirtualKey
from flowloom.gateway.asgi import Message, Receive, Send, respond
from flowloom.gateway.ports import AccessPort, RouterPort
from flowloom.gateway.providers.interface import Format, Provider, UpstreamCall
from flowloom.gateway.recorder import Attempt, Exchange, Recorder
from flowloom.gateway.relay import Outcome, StreamRelay, relay_whole
from flowloom.gateway.routing.model import RouteRequest, Target
from flowloom.gateway.settings import GatewaySettings
from flowloom.gateway.translate.errors import SHAPE_ERRORS
from flowloom.gateway.upstream import Upstream, UpstreamFailed
from flowloom.gateway.wire.common import RequestInfo, Tokens, classify_error
from flowloom.gateway.wire.formats import Wire, wire_for
from flowloom.gateway.wire.intake import (
    MAX_MODEL_CHARS,
    MalformedRequestError,
    check_fields,
    check_model_name,
    parse_request,
)
from flowloom.gateway.wire.routes import EMBEDDING_OPS

__all__ = ["Admit", "Inbound", "Intake", "Pipeline", "secret_of", "status_of"]

log = logging.getLogger("flowloom.gateway")

SESSION_HEADERS = (
    "x-claude-code-session-id",
    "x-session-id",
    "session_id",
    "session-id",
    "x-flowloom-session",
    "x-codex-session-id",
)


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the ASGI scope says about a model call, before its body is read."""

    fmt: Format
    op: str
    endpoint: str
    headers: dict[str, str]
    query: str
    url_model: str | None
    started: float
    wall: float


@dataclass(frozen=True, slots=True)
class Intake:
    """The read stage's result: the body as sent, parsed, and what the pipeline peeked."""

    body: bytes
    parsed: dict[str, Any]
    info: RequestInfo


class Admit:
    """The admit stage: rate limits and budgets count a caller's request once, at its
    first allowed target, not the gateway's fallbacks. Later targets (fallbacks, the
    retry) are only checked against the key's allow-list. The admission is given back
    (or charged) by the recorder's settlement, once."""

    __slots__ = ("_access", "_info", "_vkey", "admission")

    def __init__(self, access: AccessPort, vkey: VirtualKey, info: RequestInfo) -> None:
        self._access = access
        self._vkey = vkey
        self._info = info
        self.admission: Admission | None = None

    def allowed_model(self, target: Target) -> str:
        """The name the key may use for `target`: the requested one, or else the upstream
        model's; PermissionDeniedError when it allows neither."""
        info = self._info
        try:
            self._access.check_model(self._vkey, info.model)
            return info.model
        except PermissionDeniedError:
            if target.model == info.model:
                raise
            self._access.check_model(self._vkey, target.model)
            return target.model

    async def __call__(self, target: Target) -> None:
        model = self.allowed_model(target)
        if self.admission is None:
            self.admission = await self._access.admit_async(
                self._vkey, model=model, est_tokens=self._info.est_input_tokens
            )

    def give_back(self) -> None:
        """Release the admission now (a call that costs no tokens, e.g. count_tokens)."""
        if self.admission is not None:
            self._access.release(self.admission)
            self.admission = None


@dataclass(slots=True)
class _Call:
    """One call's stage results; each field is written by one stage."""

    inbound: Inbound
    vkey: VirtualKey  # authenticate
    body: bytes = b""  # read (kept even when it does not parse: the record shows it)
    intake: Intake | None = None  # read
    admit: Admit | None = None  # admit
    out: Outcome = field(default_factory=Outcome)  # attempt and relay


class Pipeline:
    """The stages of a model call and their collaborators; one per gateway process."""

    def __init__(
        self,
        *,
        router: RouterPort,
        access: AccessPort,
        recorder: Recorder,
        settings: GatewaySettings,
        upstream: Upstream,
        provider: Callable[[str], Provider],
        before_send: Callable[[], None] = lambda: None,
    ) -> None:
        self.router = router
        self.access = access
        self.recorder = recorder
        self.settings = settings
        self.upstream = upstream
        self._provider = provider
        self._before_send = before_send
        self._io_errors: tuple[type[BaseException], ...] = (*upstream.errors, OSError)
        self._read_errors: tuple[type[BaseException], ...] = (*self._io_errors, TimeoutError)

    async def handle(self, inbound: Inbound, receive: Receive, send: Send) -> None:
        """Every stage, in order; the record stage runs exactly once for every call that
        got a recording slot."""
        wire = wire_for(inbound.fmt)
        vkey = await self._authenticate(inbound, wire, send)
        if vkey is None or not await self._reserve(wire, send):
            return
        call = _Call(inbound, vkey)
        try:
            intake = await self._read(call, wire, receive, send)
            if intake is None:
                return
            cascade = await self._route(call, intake, wire, send)
            if cascade is None:
                return
            call.admit = Admit(self.access, vkey, intake.info)
            if inbound.op == "count_tokens":
                await self._count_tokens(call, intake, wire, send, cascade)
            else:
                await self._cascade(call, intake, wire, send, receive, cascade)
        except Exception as exc:  # a bug must still answer and be recorded
            log.exception("gateway request failed")
            out = call.out
            out.error = f"internal error: {type(exc).__name__}: {exc}"
            if not out.response_started:
                out.status = 500
                out.response = wire.error_body(500, "the gateway failed; see its log")
                await respond(send, 500, out.response)
        finally:
            self._record(call)

    # -- 1. authenticate, 2. reserve ------------------------------------------------------

    async def _authenticate(self, inbound: Inbound, wire: Wire, send: Send) -> VirtualKey | None:
        try:
            return self.access.authenticate(secret_of(inbound.headers, inbound.query))
        except FlowLoomError as exc:
            status = status_of(exc)
            await respond(send, status, wire.error_body(status, exc.diagnostics()))
            return None

    async def _reserve(self, wire: Wire, send: Send) -> bool:
        if self.recorder.reserve():
            return True
        message = "the gateway cannot record right now, so it refuses requests"
        if self.recorder.reason:
            message += f" ({self.recorder.reason})"
        await respond(
            send, 503, wire.error_body(503, message + "; retry later"), [(b"retry-after", b"5")]
        )
        return False

    # -- 3. read --------------------------------------------------------------------------

    async def _read(self, call: _Call, wire: Wire, receive: Receive, send: Send) -> Intake | None:
        inbound = call.inbound
        limit = self.settings.max_request_bytes
        declared = inbound.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(call, wire, send)
            return None
        body = await _read_body(receive, limit)
        if body is None:
            await self._too_large(call, wire, send)
            return None
        call.body = body
        try:
            parsed = parse_request(body)
            check_fields(inbound.fmt, parsed, inbound.op)
            if inbound.url_model is not None:
                check_model_name(inbound.url_model)
        except MalformedRequestError as exc:
            await _fail(call.out, wire, send, 400, exc.diagnostics())
            return None
        info = wire.peek(parsed, size=len(body), model=inbound.url_model)
        if inbound.op == "stream_generate":
            info = _with_stream(info)
        elif inbound.op in EMBEDDING_OPS or inbound.op == "count_tokens":
            info = _with_stream(info, False)
        call.intake = Intake(body, parsed, info)
        if not info.model:
            await _fail(call.out, wire, send, 400, 'the request names no model; set "model"')
            return None
        return call.intake

    async def _too_large(self, call: _Call, wire: Wire, send: Send) -> None:
        limit = self.settings.max_request_bytes
        await _fail(
            call.out,
            wire,
            send,
            413,
            f"the request body is over the gateway's limit of {limit} bytes",
        )

    # -- 4. route -------------------------------------------------------------------------

    async def _route(
        self, call: _Call, intake: Intake, wire: Wire, send: Send
    ) -> list[Target] | None:
        info = intake.info
        try:
            return self.router.plan(
                RouteRequest(
                    format=call.inbound.fmt,
                    model=info.model,
                    stream=info.stream,
                    has_tools=info.has_tools,
                    has_images=info.has_images,
                    est_input_tokens=info.est_input_tokens,
                    max_output_tokens=info.max_tokens,
                    project=call.vkey.project,
                    residency=None,
                )
            )
        except FlowLoomError as exc:
            await _fail_flowloom(call.out, wire, send, exc)
            return None

    # -- 5. admit and 6. attempt / fall back ----------------------------------------------

    async def _cascade(
        self,
        call: _Call,
        intake: Intake,
        wire: Wire,
        send: Send,
        receive: Receive,
        cascade: list[Target],
    ) -> None:
        out, admit = call.out, call.admit
        assert admit is not None
        deadline = call.inbound.started + self.settings.request_timeout_s
        last: UpstreamFailed | None = None
        last_target: Target | None = None
        denied: FlowLoomError | None = None
        pending = list(cascade)
        retried = False
        while pending:
            target = pending.pop(0)
            try:
                await admit(target)
            except PermissionDeniedError as exc:
                denied = denied or exc
                out.attempts.append(
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
                await _fail_flowloom(out, wire, send, exc)
                return
            began = time.perf_counter()
            try:
                await self._attempt(call, intake, wire, send, receive, target, deadline)
            except UpstreamFailed as failure:
                elapsed = time.perf_counter() - began
                out.attempts.append(
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
            out.target = target
            ok = out.status < 400
            out.attempts.append(
                Attempt(
                    target.provider,
                    target.model,
                    target.format,
                    out.status,
                    out.error_kind,
                    elapsed * 1000.0,
                    region=target.region,
                )
            )
            self._outcome(target, ok, out.status, elapsed, None, out.error_kind)
            return
        # Nothing succeeded and nothing reached the caller: answer with the last failure.
        if last is None:
            if denied is not None:
                await _fail_flowloom(out, wire, send, denied)
            else:
                await _fail(
                    out, wire, send, 503, "every target of this model is unavailable; retry later"
                )
            return
        await _relay_failure(call.inbound.fmt, out, wire, send, last, last_target)

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

    def _upstream_body(self, call: _Call, intake: Intake, target: Target) -> bytes:
        """The request for `target`: translated when its format differs, max tokens
        clamped to its max_output (noted in the record), else the caller's own bytes."""
        fmt, op = call.inbound.fmt, call.inbound.op
        info, parsed, out = intake.info, intake.parsed, call.out
        out.clamped = None
        limit = target.max_output
        if limit is not None and info.max_tokens is not None and info.max_tokens > limit:
            # The target allows less output than asked: send its maximum, and say so in
            # the record, rather than fail a call a client cannot reshape (Claude Code
            # asks for 32,000).
            parsed = wire_for(fmt).with_max_tokens(parsed, limit)
            out.clamped = (info.max_tokens, limit)
        if op in EMBEDDING_OPS:
            return _embedding_body(intake.body, parsed, op, info.model, target)
        if target.format != fmt:
            from flowloom.gateway.translate import translate_request

            translated = translate_request(
                parsed, fmt, target.format, model=target.model, stream=info.stream
            )
            return json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
        if out.clamped is None and (fmt == "gemini" or parsed.get("model") == target.model):
            return intake.body  # untouched: unknown fields and byte order as the caller sent them
        rewritten = dict(parsed)
        if fmt != "gemini":  # a Gemini call names its model in the URL
            rewritten["model"] = target.model
        return json.dumps(rewritten, ensure_ascii=False, separators=(",", ":")).encode()

    async def _attempt(
        self,
        call: _Call,
        intake: Intake,
        wire: Wire,
        send: Send,
        receive: Receive,
        target: Target,
        deadline: float,
    ) -> None:
        """One target: translate, send, relay. UpstreamFailed while nothing reached the
        caller (the cascade may fall back); after that every failure is the answer."""
        inbound, info, out = call.inbound, intake.info, call.out
        provider = self._provider(target.provider)
        config = provider.config
        try:
            body = self._upstream_body(call, intake, target)
        except FlowLoomError as exc:
            raise UpstreamFailed(400, "translation", exc.diagnostics()) from exc
        except SHAPE_ERRORS as exc:
            raise UpstreamFailed(
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
            path_hint=inbound.op
            if target.format == inbound.fmt
            else _default_op(target.format, info.stream),
            passthrough_headers=inbound.headers,
        )
        api_key = self.access.provider_key(config.api_key_ref) if config.api_key_ref else None
        self._before_send()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise UpstreamFailed(None, "timeout", "the request's time budget is spent")
        first_byte = min(config.first_byte_timeout_s, remaining)
        try:
            async with asyncio.timeout(first_byte):
                response = await self.upstream.post(
                    provider.url(upstream),
                    body,
                    provider.headers(upstream, api_key),
                    connect_timeout_s=self.settings.connect_timeout_s,
                    read_timeout_s=min(config.timeout_s, remaining),
                )
        except TimeoutError as exc:
            raise UpstreamFailed(
                None, "timeout", f"{target.provider} did not answer within {first_byte:.1f} s"
            ) from exc
        except self._io_errors as exc:
            raise UpstreamFailed(
                None, "connect", f"{target.provider} is unreachable: {type(exc).__name__}"
            ) from exc
        try:
            if response.status >= 400:
                await self._upstream_error(response, target)
            if info.stream and response.content_type == "text/event-stream":
                relay = StreamRelay(
                    fmt=inbound.fmt,
                    query=inbound.query,
                    parsed=intake.parsed,
                    info=info,
                    started=inbound.started,
                    out=out,
                    wire=wire,
                    send=send,
                    receive=receive,
                    response=response,
                    target=target,
                    record_limit=self.settings.max_record_bytes,
                    io_errors=self._io_errors,
                )
                await relay.run(first_byte)
            else:
                await relay_whole(
                    fmt=inbound.fmt,
                    parsed=intake.parsed,
                    info=info,
                    started=inbound.started,
                    out=out,
                    send=send,
                    response=response,
                    target=target,
                    max_bytes=self.settings.max_response_bytes,
                    io_errors=self._io_errors,
                )
                if inbound.op in ("embed_content", "batch_embed") and out.status < 400:
                    # Gemini reports no usage for embeddings: count the input, estimated.
                    out.usage = Tokens(input_tokens=info.est_input_tokens)
                    out.notes["usage_estimated"] = True
        finally:
            response.release()

    async def _upstream_error(self, response: Any, target: Target) -> None:
        try:
            raw = await response.content.read(1024 * 1024)
        except self._read_errors:
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
        raise UpstreamFailed(
            response.status,
            classify_error(response.status, raw),
            message,
            raw,
            _retry_after(response.headers),
        )

    async def _count_tokens(
        self, call: _Call, intake: Intake, wire: Wire, send: Send, cascade: list[Target]
    ) -> None:
        """Forward to a target of the caller's own format (Anthropic or Gemini); otherwise
        answer with an estimate. Recorded with input tokens = the count, no output.

        The key's allow-list and rate limit apply as to any call (only targets it may
        use are asked, and a key allowing none of them is refused).
        """
        out, admit, fmt = call.out, call.admit, call.inbound.fmt
        assert admit is not None
        allowed: list[Target] = []
        denied: PermissionDeniedError | None = None
        for target in cascade:
            try:
                admit.allowed_model(target)
            except PermissionDeniedError as exc:
                denied = denied or exc
                continue
            allowed.append(target)
        try:
            if not allowed:
                assert denied is not None
                raise denied
            await admit(allowed[0])
        except FlowLoomError as exc:
            await _fail_flowloom(out, wire, send, exc)
            return
        admit.give_back()  # counted against rpm; counting costs no tokens
        for target in allowed:
            if target.format == fmt:
                try:
                    await self._attempt(
                        call,
                        intake,
                        wire,
                        send,
                        _never,
                        target,
                        call.inbound.started + self.settings.request_timeout_s,
                    )
                except UpstreamFailed:
                    continue
                out.target = target
                out.usage = Tokens(input_tokens=_token_count(out.response))
                out.notes["operation"] = "count_tokens"
                return
        count = intake.info.est_input_tokens
        out.status = 200
        field_name = "totalTokens" if fmt == "gemini" else "input_tokens"
        out.response = json.dumps({field_name: count}).encode()
        out.usage = Tokens(input_tokens=count)
        out.notes.update(operation="count_tokens", usage_estimated=True)
        await respond(send, 200, out.response)

    # -- 8. record ------------------------------------------------------------------------

    def _record(self, call: _Call) -> None:
        inbound, out, vkey = call.inbound, call.out, call.vkey
        target = out.target
        info = call.intake.info if call.intake is not None else None
        admission = call.admit.admission if call.admit is not None else None
        self.recorder.record(
            Exchange(
                endpoint=inbound.endpoint,
                format=inbound.fmt,
                model=info.model
                if info is not None
                else (inbound.url_model or "")[:MAX_MODEL_CHARS],
                stream=info.stream if info is not None else False,
                request=call.body,
                response=out.response,
                status=out.status,
                started_at=inbound.wall,
                latency_s=time.perf_counter() - inbound.started,
                ttft_s=out.ttft,
                provider=target.provider if target is not None else None,
                upstream_model=target.model if target is not None else None,
                upstream_format=target.format if target is not None else None,
                region=target.region if target is not None else None,
                attempts=tuple(out.attempts),
                virtual_key=vkey.id,
                project=vkey.project,
                session=_session_id(inbound.headers),
                error=out.error,
                admission=admission,
                traceparent=inbound.headers.get("traceparent"),
                user_agent=inbound.headers.get("user-agent"),
                max_tokens=info.max_tokens if info is not None else None,
                usage=out.usage,
                extra={**_clamp_note(out.clamped), **out.notes},
            )
        )


# -- answering ------------------------------------------------------------------------------


async def _fail(
    out: Outcome,
    wire: Wire,
    send: Send,
    status: int,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    out.status = status
    out.error = message
    out.response = wire.error_body(status, message)
    await respond(send, status, out.response, extra)


async def _fail_flowloom(out: Outcome, wire: Wire, send: Send, exc: FlowLoomError) -> None:
    status = status_of(exc)
    extra = None
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(retry, int | float) and retry > 0:
        extra = [(b"retry-after", str(max(1, int(retry + 0.999))).encode())]
    await _fail(out, wire, send, status, exc.diagnostics(), extra)


async def _relay_failure(
    fmt: Format,
    out: Outcome,
    wire: Wire,
    send: Send,
    failure: UpstreamFailed,
    target: Target | None,
) -> None:
    """The last failure as the answer: a same-format JSON error body as the provider sent
    it, anything else in the caller's format."""
    extra: list[tuple[bytes, bytes]] = []
    if failure.retry_after is not None:
        extra.append((b"retry-after", str(max(1, int(failure.retry_after + 0.999))).encode()))
    if failure.status is None:
        status = 504 if failure.kind in ("timeout", "first_byte_timeout") else 502
        await _fail(out, wire, send, status, str(failure), extra)
        return
    status = failure.status
    if target is not None and target.format == fmt and _json_object(failure.body):
        out.status = status
        out.error = str(failure)
        out.response = failure.body
        await respond(send, status, failure.body, extra)
        return
    await _fail(out, wire, send, status, str(failure), extra)


def status_of(exc: FlowLoomError) -> int:
    """The HTTP status a FlowLoom error answers with."""
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


def secret_of(headers: Mapping[str, str], query: str | bytes) -> str:
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
            from urllib.parse import parse_qs

            keys = parse_qs(text).get("key")
            if keys:
                return keys[0]
    return ""


# -- helpers ----------------------------------------------------------------------------------


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


def _default_op(fmt: Format, stream: bool) -> str:
    if fmt == "anthropic":
        return "messages"
    if fmt == "gemini":
        return "stream_generate" if stream else "generate"
    return "responses" if fmt == "responses" else "chat"


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
