"""The MCP server over streamable HTTP, behind FlowLoom API keys.

`ApiKeyGate` wraps the SDK's Starlette app: every HTTP request must carry
``Authorization: Bearer flk_...`` for a key that is valid now (not revoked, not
expired) and whose principal holds ``ledger.read`` on the project; otherwise the answer
is 401 (no or bad key) or 403 (no permission) in the server's error shape, before the
MCP layer sees the request. The key is checked on every request, not once per MCP
session, so a revoked key stops working at once. The Principal is left in the ASGI
scope for the tools (writing tools also need ``ledger.append``).

An MCP session belongs to the user whose key opened it: the gate notes the
``Mcp-Session-Id`` the server hands out and answers 404 (as for an unknown session) to
a request of another user that names it, so a session id seen elsewhere is no way into
someone else's session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowloom.auth.principals import Principal
from flowloom.errors import AuthError, FlowLoomError, InputError, PermissionDeniedError
from flowloom.mcp.server import PRINCIPAL_SCOPE_KEY

__all__ = ["ApiKeyGate", "serve_http"]

_log = logging.getLogger("flowloom.mcp")

MCP_PATH: Final = "/mcp"
SESSION_HEADER: Final = b"mcp-session-id"
MAX_SESSIONS: Final = 100_000
"""Sessions whose owner the gate remembers (the oldest are forgotten first)."""

Authenticate = Callable[[str], Awaitable[Principal]]
"""Turns a bearer secret into a Principal allowed to read the project, or raises
AuthError (401) / PermissionDeniedError (403)."""


class ApiKeyGate:
    """ASGI middleware: no request reaches the MCP app without a valid API key."""

    def __init__(self, app: ASGIApp, authenticate: Authenticate) -> None:
        self.app = app
        self.authenticate = authenticate
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan: the session manager's start
            return
        secret = _bearer(scope)
        try:
            if secret is None:
                raise AuthError(
                    "this MCP server needs an API key",
                    hint="send the header Authorization: Bearer flk_...",
                )
            principal = await self.authenticate(secret)
        except AuthError as exc:
            await _error(send, 401, "unauthorized", exc)
            return
        except PermissionDeniedError as exc:
            await _error(send, 403, "forbidden", exc)
            return
        except FlowLoomError as exc:
            _log.warning("API key check failed: %s", exc.diagnostics())
            await _error(send, 503, "unavailable", exc)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        session = _header(scope, SESSION_HEADER)
        if session is not None:
            owner = self._owners.get(session)
            if owner is not None and owner != principal.user_id:
                _log.warning("MCP session used with another user's key: refused")
                await _error(
                    send,
                    404,
                    "not_found",
                    AuthError("no such MCP session", hint="start a session of your own"),
                )
                return
        await self.app(scope, receive, self._bind(send, principal.user_id))

    def _bind(self, send: Send, user: str) -> Send:
        """`send`, noting the owner of a session id the server hands out."""

        async def bound(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if bytes(name).lower() == SESSION_HEADER:
                        session = bytes(value).decode("latin-1")
                        self._owners.setdefault(session, user)
                        self._owners.move_to_end(session)
                        while len(self._owners) > MAX_SESSIONS:
                            self._owners.popitem(last=False)
            await send(message)

        return bound


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, secret = text.strip().partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            return None
    return None


async def _error(send: Send, status: int, code: str, exc: FlowLoomError) -> None:
    error: dict[str, Any] = {"code": code, "message": exc.message}
    if exc.hint:
        error["hint"] = exc.hint
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="flowloom"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or an InputError that says what to change."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise InputError(f"cannot listen on {host}: {exc}", hint="check --host") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one)",
        ) from exc
    return sock


def serve_http(app: ASGIApp, *, host: str, port: int, log_level: str = "warning") -> None:
    """Serve `app` with uvicorn until interrupted; says on stderr where it listens."""
    import uvicorn

    sock = _listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
    # log_config=None: uvicorn's loggers go through the process's logging, to stderr
    # (its own default sends access lines to stdout).
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", log_config=None)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            print(
                f"flowloom mcp: listening on http://{shown}:{bound[1]}{MCP_PATH}",
                file=sys.stderr,
                flush=True,
            )
        await task

    from flowloom.server.uvicorn_run import sigterm_exits_cleanly

    try:
        with sigterm_exits_cleanly():  # so the caller's cleanup runs on SIGTERM
            asyncio.run(main())
    finally:
        sock.close()
