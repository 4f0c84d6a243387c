"""Quick throughput check of the simulator (not a test).

    python tests/gateway/mock/load_check.py [URL] [--stream] [--seconds N] [--connections N]

Keeps one request in flight on each of N keep-alive connections for a few seconds and
prints requests per second. The client is a bare asyncio protocol with the httptools
response parser on uvloop, so that the client is not the bottleneck (aiohttp's client
tops out well below the simulator); run the simulator in another process, pinned to one
core, e.g. `taskset -c 0 flowloom dev mock-provider`, and this with `taskset -c 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlsplit

import httptools
import uvloop

BODY = (
    b'{"model":"claude-haiku-4-5","max_tokens":256,%s'
    b'"messages":[{"role":"user","content":"Hello there"}]}'
)


class _Conn(asyncio.Protocol):
    def __init__(self, request: bytes, deadline: float, done: asyncio.Future[None]) -> None:
        self.request = request
        self.deadline = deadline
        self.done = done
        self.ok = 0
        self.bad = 0
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own class
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() == 200:
            self.ok += 1
        else:
            self.bad += 1
        assert self.transport is not None
        if time.perf_counter() < self.deadline:
            self.transport.write(self.request)
        else:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(url: str, stream: bool, seconds: float, connections: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = BODY % (b'"stream":true,' if stream else b"")
    request = (
        b"POST /v1/messages HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"anthropic-version: 2023-06-01\r\nx-api-key: test\r\ncontent-length: %d\r\n\r\n%s"
        % (host.encode(), len(body), body)
    )
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = start + seconds
    conns = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda d=done: _Conn(request, deadline, d),
            host,
            port,  # type: ignore[misc]
        )
        conns.append(proto)
    await asyncio.gather(*(c.done for c in conns))
    elapsed = time.perf_counter() - start
    ok = sum(c.ok for c in conns)
    bad = sum(c.bad for c in conns)
    kind = "stream" if stream else "json"
    print(
        f"/v1/messages ({kind}) connections={connections}: {ok / elapsed:.0f} req/s, {bad} errors"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8090")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    uvloop.run(run(args.url, args.stream, args.seconds, args.connections))


if __name__ == "__main__":
    main()
