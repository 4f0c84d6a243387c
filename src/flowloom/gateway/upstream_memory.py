"""An in-memory upstream: scripted provider replies, no sockets.

For pipeline tests (and in-process measurements) that need exact control over what a
provider does and when: status, headers, body chunks, a pause before any of them, a break
after some of them. What the pipeline sent is kept in `sent`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flowloom.gateway.upstream import UpstreamResponse

__all__ = ["MemoryUpstream", "Reply", "SentRequest", "sse"]


@dataclass(frozen=True)
class SentRequest:
    """One request the pipeline sent upstream."""

    method: str
    url: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Reply:
    """What the provider does: answer `status` with `headers`, then send `chunks`.

    `delay_s`: a pause before the status line (a slow provider); `gap_s`: a pause before
    each chunk; `break_after`: raise a connection reset after that many chunks.
    """

    status: int = 200
    chunks: Sequence[bytes] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    delay_s: float = 0.0
    gap_s: float = 0.0
    break_after: int | None = None


def sse(*events: bytes | str) -> Reply:
    """A 200 event stream of `events` (each an SSE block; a blank line is added)."""
    chunks = [(e.encode() if isinstance(e, str) else e).rstrip(b"\n") + b"\n\n" for e in events]
    return Reply(chunks=chunks, headers={"content-type": "text/event-stream"})


Handler = Callable[[SentRequest], Reply | Awaitable[Reply]]


class _Body:
    def __init__(self, reply: Reply, response: _Response) -> None:
        self._chunks = list(reply.chunks)
        self._reply = reply
        self._response = response
        self._given = 0

    async def readany(self) -> bytes:
        if self._response.closed:
            raise ConnectionResetError("the response was closed")
        reply = self._reply
        if reply.break_after is not None and self._given >= reply.break_after:
            raise ConnectionResetError("the provider broke off (scripted)")
        if not self._chunks:
            return b""
        if reply.gap_s:
            await asyncio.sleep(reply.gap_s)
        self._given += 1
        return self._chunks.pop(0)

    async def read(self, n: int = -1) -> bytes:
        parts = []
        size = 0
        while n < 0 or size < n:
            chunk = await self.readany()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        return data if n < 0 else data[:n]


class _Response:
    def __init__(self, reply: Reply) -> None:
        self.status = reply.status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in reply.headers.items()}
        raw = self.headers.get("content-type", "application/octet-stream")
        self.content_type = raw.split(";", 1)[0].strip().lower()
        self.closed = False
        self.released = False
        self.content = _Body(reply, self)

    async def read(self) -> bytes:
        return await self.content.read()

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


class MemoryUpstream:
    """Answers every request with `handler(request)` (a Reply, or an awaitable of one)."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.sent: list[SentRequest] = []
        self.responses: list[_Response] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def _reply(self, request: SentRequest) -> Reply:
        self.sent.append(request)
        reply = self._handler(request)
        if inspect.isawaitable(reply):
            reply = await reply
        assert isinstance(reply, Reply)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return reply

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> UpstreamResponse:
        reply = await self._reply(SentRequest("POST", url, body, dict(headers)))
        response = _Response(reply)
        self.responses.append(response)
        return response

    async def get(
        self, url: str, headers: Mapping[str, str], *, timeout_s: float, limit: int
    ) -> tuple[int, bytes]:
        reply = await self._reply(SentRequest("GET", url, b"", dict(headers)))
        return reply.status, b"".join(reply.chunks)[:limit]
