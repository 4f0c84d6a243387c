"""Serving the LLM gateway's routes from the team server's process.

The gateway is a raw ASGI app kept free of any framework so that its hot path stays short;
putting it behind FastAPI's router would cost every model call a middleware stack. Instead
this dispatcher looks at the first path segment once: the providers' own paths (`/v1/…`,
`/v1beta/…`, `/openai/…`) go to the gateway, everything else (the API under `/api/v1`, the
web pages under `/ui`, health and metrics) to the server's app. The two never share a path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["GATEWAY_PREFIXES", "GatewayMount"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

GATEWAY_PREFIXES = ("/v1/", "/v1beta/", "/openai/")
"""The paths SDKs call when their base URL is the server's (Anthropic, OpenAI, Gemini, Azure)."""


class GatewayMount:
    """One ASGI app: the gateway's provider paths, and the server's app for the rest.

    The gateway's start-up and shut-down ride on the server's lifespan: it starts before
    the server reports it is up, and stops (draining its recorder) before the server's own
    shut-down closes the ledgers it records into.
    """

    def __init__(self, server: App, gateway: Any) -> None:
        self._server = server
        self._gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"].startswith(GATEWAY_PREFIXES):
            await self._gateway(scope, receive, send)
        elif kind == "lifespan":
            await self._server(scope, self._lifespan_receive(receive), send)
        else:
            await self._server(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        gateway = self._gateway

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await gateway.startup()
            elif message["type"] == "lifespan.shutdown":
                await gateway.shutdown()
            return message

        return wrapped
