"""The relay stage: a provider's answer to the caller, whole or one event per write.

Fallback is only possible while nothing has reached the caller, so `UpstreamFailed` is
raised here only before the first write; after it, a broken stream ends with an error
event in the caller's format and the failure is what gets recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from flowloom.errors import FlowLoomError
from flowloom.gateway.asgi import Message, Receive, Send
from flowloom.gateway.providers.interface import Format
from flowloom.gateway.recorder import Attempt
from flowloom.gateway.routing.model import Target
from flowloom.gateway.translate.errors import SHAPE_ERRORS
from flowloom.gateway.upstream import UpstreamFailed, UpstreamResponse
from flowloom.gateway.wire.common import RequestInfo, Tokens
from flowloom.gateway.wire.formats import Wire
from flowloom.gateway.wire.sse import SseSplitter, parse_event, serialize

if TYPE_CHECKING:
    from flowloom.gateway.translate import StreamTranslator

__all__ = ["Outcome", "StreamRelay", "relay_whole"]

_JSON_STREAM = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_TRANSLATION_FAILURES: tuple[type[Exception], ...] = (FlowLoomError, *SHAPE_ERRORS)
_FORWARDED_RESPONSE_HEADERS = ("request-id", "x-request-id", "openai-processing-ms")


@dataclass(slots=True)
class Outcome:
    """What went back to the caller, as the record keeps it (written by the attempt and
    relay stages, read by the record stage)."""

    status: int = 0
    response: bytes = b""
    error: str | None = None
    error_kind: str | None = None
    target: Target | None = None
    ttft: float | None = None
    response_started: bool = False
    usage: Tokens | None = None
    clamped: tuple[int, int] | None = None  # (max tokens asked, max tokens sent)
    attempts: list[Attempt] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # more refs for the record


async def relay_whole(
    *,
    fmt: Format,
    parsed: dict[str, Any],
    info: RequestInfo,
    started: float,
    out: Outcome,
    send: Send,
    response: UpstreamResponse,
    target: Target,
    max_bytes: int,
    io_errors: tuple[type[BaseException], ...],
) -> None:
    """Read the whole answer, translate it when formats differ, send it in one write."""
    errors: tuple[type[BaseException], ...] = (*io_errors, TimeoutError)
    try:
        raw = await response.read()
    except errors as exc:
        raise UpstreamFailed(
            None, "disconnect", f"{target.provider} broke off: {type(exc).__name__}"
        ) from exc
    if len(raw) > max_bytes:
        raise UpstreamFailed(
            502,
            "too_large",
            f"{target.provider} answered with {len(raw)} bytes, over the limit",
        )
    if target.format != fmt:
        from flowloom.gateway.translate import translate_response

        try:
            translated = translate_response(
                json.loads(raw),
                target.format,
                fmt,
                model=info.model,
                namespaced=_namespaced(fmt, parsed),
            )
        except _TRANSLATION_FAILURES as exc:
            raise UpstreamFailed(
                502, "translation", f"cannot translate {target.provider}'s answer: {exc}"
            ) from exc
        raw = json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
    out.status = response.status
    out.response = raw
    headers = response.headers
    extra = [(b"content-type", headers.get("content-type", "application/json").encode("latin-1"))]
    for name in _FORWARDED_RESPONSE_HEADERS:
        value = headers.get(name)
        if value is not None:
            extra.append((name.encode(), value.encode("latin-1")))
    out.response_started = True
    out.ttft = time.perf_counter() - started
    await send({"type": "http.response.start", "status": response.status, "headers": extra})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


class StreamRelay:
    """One streamed answer: SSE events relayed one per write (translated when formats
    differ), or a Gemini caller's JSON array element by element; the record keeps the
    events, up to `record_limit` bytes."""

    def __init__(
        self,
        *,
        fmt: Format,
        query: str,
        parsed: dict[str, Any],
        info: RequestInfo,
        started: float,
        out: Outcome,
        wire: Wire,
        send: Send,
        receive: Receive,
        response: UpstreamResponse,
        target: Target,
        record_limit: int,
        io_errors: tuple[type[BaseException], ...],
    ) -> None:
        """`io_errors`: the transport's exceptions for a broken exchange, OSError among them."""
        self._out = out
        self._wire = wire
        self._send = send
        self._receive = receive
        self._response = response
        self._target = target
        self._started = started
        self._limit = record_limit
        self._io_errors = io_errors
        self._mid_stream_errors: tuple[type[BaseException], ...] = (
            *io_errors,
            TimeoutError,
            ValueError,
        )
        self._translator: StreamTranslator | None = None
        if target.format != fmt:
            from flowloom.gateway.translate import StreamTranslator

            options = parsed.get("stream_options")
            include_usage = fmt != "openai" or (
                isinstance(options, dict) and options.get("include_usage") is True
            )
            self._translator = StreamTranslator(
                target.format,
                fmt,
                model=info.model,
                include_usage=include_usage,
                input_tokens=info.est_input_tokens,
                namespaced=_namespaced(fmt, parsed),
            )
        # A Gemini caller without ?alt=sse reads one JSON array, streamed element by
        # element; the record keeps the events (it is reassembled like any stream).
        self._as_array = fmt == "gemini" and "sse" not in parse_qs(query).get("alt", ())
        self._splitter = SseSplitter()
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._truncated = False
        self._watcher: asyncio.Task[Message] | None = None
        self._finished = False

    async def run(self, first_byte_s: float) -> None:
        """Relay until the end; UpstreamFailed only while nothing was sent."""
        out = self._out
        try:
            await self._first_event(first_byte_s)
            await self._rest()
            self._finished = True
            if out.response_started:
                end = b"]" if self._as_array else b""
                await self._send({"type": "http.response.body", "body": end, "more_body": False})
        finally:
            self._finished = True
            watcher = self._watcher
            if watcher is not None and not watcher.done():
                watcher.cancel()
            translator = self._translator
            if translator is not None:
                if translator.error is not None and out.error is None:
                    out.error = f"translation: {translator.error}"
                withheld = translator.withheld_usage
                if withheld is not None:
                    from flowloom.gateway.translate.common import usage_numbers

                    out.usage = Tokens(*usage_numbers(withheld))
            out.response = b"".join(self._kept)
            if self._truncated:
                out.error = (out.error + "; " if out.error else "") + "stream record truncated"

    async def _first_event(self, first_byte_s: float) -> None:
        """Read until the first event reached the caller, within `first_byte_s`."""
        out, provider = self._out, self._target.provider
        content = self._response.content
        try:
            async with asyncio.timeout(first_byte_s):
                while not out.response_started:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    for raw in self._splitter.feed(chunk):
                        await self._relay(raw)
        except TimeoutError as exc:
            raise UpstreamFailed(
                None,
                "first_byte_timeout",
                f"{provider} sent no first token within {first_byte_s:.1f} s",
            ) from exc
        except self._io_errors as exc:
            raise UpstreamFailed(
                None,
                "disconnect",
                f"{provider} broke off before the first token: {type(exc).__name__}",
            ) from exc
        if not out.response_started:
            rest = self._splitter.rest()
            if rest.strip():
                await self._relay(rest + b"\n\n")
            if not out.response_started:
                raise UpstreamFailed(
                    None, "disconnect", f"{provider} ended the stream without an event"
                )

    async def _rest(self) -> None:
        """Relay the rest; a break now is the answer (an error event), not a fallback."""
        out = self._out
        content = self._response.content
        splitter = self._splitter
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                for raw in splitter.feed(chunk):
                    await self._relay(raw)
                    if self._watcher is not None and self._watcher.done():
                        raise ConnectionResetError("the caller went away")
            rest = splitter.rest()
            if rest.strip():
                await self._relay(rest + b"\n\n")
            if self._translator is not None:
                for event in self._translator.close():
                    await self._emit(serialize(event))
        except self._mid_stream_errors as exc:
            gone = self._watcher is not None and self._watcher.done()
            message = (
                "the caller disconnected mid-stream"
                if gone
                else f"{self._target.provider} broke off mid-stream: {type(exc).__name__}"
            )
            out.error = message
            out.status = 499 if gone else 502
            out.error_kind = "client_disconnect" if gone else "disconnect"
            if not gone and out.response_started:
                error = self._wire.stream_error(502, message)
                self._kept.append(error)
                sent = _array_element(error, False) if self._as_array else error
                await self._send({"type": "http.response.body", "body": sent, "more_body": True})
            elif not out.response_started:
                raise UpstreamFailed(None, "disconnect", message) from exc

    async def _relay(self, raw: bytes) -> None:
        translator = self._translator
        if translator is None:
            await self._emit(raw)
            return
        parsed = parse_event(raw)
        if parsed is None:
            return
        for event in translator.feed(parsed):
            await self._emit(serialize(event))

    async def _emit(self, data: bytes) -> None:
        out = self._out
        first = not out.response_started
        if first:
            out.response_started = True
            out.ttft = time.perf_counter() - self._started
            out.status = 200
            headers = _JSON_STREAM if self._as_array else _SSE
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            self._watcher = asyncio.ensure_future(self._receive())
            self._watcher.add_done_callback(self._close_unless_finished)
        sent = _array_element(data, first) if self._as_array else data
        await self._send({"type": "http.response.body", "body": sent, "more_body": True})
        if self._kept_bytes + len(data) <= self._limit:
            self._kept.append(data)
            self._kept_bytes += len(data)
        else:
            self._truncated = True

    def _close_unless_finished(self, task: asyncio.Task[Message]) -> None:
        # The caller went away mid-stream: stop reading upstream, free the connection.
        if not self._finished and not task.cancelled():
            self._response.close()


def _namespaced(fmt: Format, parsed: dict[str, Any] | None) -> dict[str, tuple[str, str]] | None:
    """The namespace functions of a Responses caller's tools (flattened on translation)."""
    if fmt != "responses" or parsed is None:
        return None
    from flowloom.gateway.translate import namespaced_tools

    return namespaced_tools(parsed) or None


def _array_element(event: bytes, first: bool) -> bytes:
    """One SSE event's data as the next element of a streamed JSON array."""
    parsed = parse_event(event)
    data = parsed.data.encode() if parsed is not None else b"{}"
    return (b"[" if first else b",\r\n") + data
