"""Upstream I/O as the pipeline sees it: one POST (or GET) to a provider, then a body read
whole or chunk by chunk.

A small interface so that the request pipeline does not depend on a transport:
`HttpUpstream` is the one pooled aiohttp client of a gateway process; `MemoryUpstream`
(upstream_memory.py) answers from scripted replies, so pipeline tests need no sockets.
An implementation names the exceptions its transport raises (`errors`); the pipeline
treats them, like OSError, as a provider breaking off. aiohttp's own response object
already has this shape, so the hot path adds no wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HttpUpstream", "Upstream", "UpstreamBody", "UpstreamFailed", "UpstreamResponse"]


class UpstreamBody(Protocol):
    """A response body being received."""

    async def read(self, n: int = -1) -> bytes: ...

    async def readany(self) -> bytes:
        """The next bytes that arrived; b"" at the end."""
        ...


class UpstreamResponse(Protocol):
    """A provider's answer once its status line and headers are in."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Looked up by lower-case name."""
        ...

    @property
    def content_type(self) -> str: ...

    @property
    def content(self) -> UpstreamBody: ...

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Stop receiving and drop the connection (the caller went away)."""
        ...

    def release(self) -> Any:
        """Done with the response: the connection may be reused."""
        ...


class Upstream(Protocol):
    """Where the pipeline's upstream requests go."""

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The transport's own exceptions for a failed or broken exchange."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> UpstreamResponse:
        """Send; return once the status and headers are in (the body is read after)."""
        ...

    async def get(
        self, url: str, headers: Mapping[str, str], *, timeout_s: float, limit: int
    ) -> tuple[int, bytes]:
        """A small GET read whole (at most `limit` bytes): (status, body)."""
        ...


class UpstreamFailed(Exception):
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


class HttpUpstream:
    """One pooled aiohttp client per gateway process, opened on first use."""

    def __init__(self, *, pool_size: int, connect_timeout_s: float) -> None:
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._client: aiohttp.ClientSession | None = None
        self._errors: tuple[type[BaseException], ...] | None = None

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        if self._errors is None:
            import aiohttp

            self._errors = (aiohttp.ClientError,)
        return self._errors

    async def start(self) -> None:
        await self._session()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _session(self) -> aiohttp.ClientSession:
        if self._client is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                limit_per_host=0,
                ttl_dns_cache=300,
                keepalive_timeout=60,
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                skip_auto_headers=("User-Agent",),
            )
        return self._client

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> UpstreamResponse:
        import aiohttp

        session = await self._session()
        return await session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
            ),
        )

    async def get(
        self, url: str, headers: Mapping[str, str], *, timeout_s: float, limit: int
    ) -> tuple[int, bytes]:
        import aiohttp

        session = await self._session()
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            return response.status, await response.content.read(limit)
