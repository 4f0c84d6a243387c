"""create_app(server): the FastAPI application, assembled from a ServerState.

The app holds no state of its own beyond what it is given: the ServerState (on
``app.state.flowloom``), its routers (flowloom.server.routes.ROUTE_MODULES), the one
exception handler (flowloom.server.errors) and two pieces of ASGI middleware: a body
size limit (413 before anything parses an oversized body) and request metrics. The web
pages' state (flowloom.server.web.state) is made with the app and closed when its
lifespan ends, so the dashboard's background worker never outlives it. Outside
all of it, error pages included, sits the edge (flowloom.server.edge): trusted proxy
headers, security headers, redirects from the public URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowloom import __version__
from flowloom.server.edge import docs_page, edge, oauth2_redirect_page
from flowloom.server.errors import ErrorBody, install_error_handlers
from flowloom.server.metrics import Metrics
from flowloom.server.routes import routers
from flowloom.server.routes.scim import SCIM_MEDIA_TYPE, SCIM_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.web.state import WebState

__all__ = ["BodyLimit", "RequestMetrics", "create_app"]

_OAUTH2_REDIRECT = "/docs/oauth2-redirect"
_DESCRIPTION = """\
FlowLoom's team server: projects, users, roles and API keys, and each project's
append-only, verifiable ledger. Authenticate with `Authorization: Bearer flk_...`
or the session cookie from `/api/v1/auth/login` (then send `X-CSRF-Token` on
unsafe methods). Errors are `{"error": {"code", "message", "hint"}}`.
"""


class _ServerApp(FastAPI):
    """FastAPI with the edge outside its whole middleware stack, so that even the 500
    page (answered by the outermost Starlette layer) carries the security headers."""

    def build_middleware_stack(self) -> ASGIApp:
        server: ServerState = self.state.flowloom
        return edge(super().build_middleware_stack(), server.settings)


def create_app(server: ServerState) -> FastAPI:
    """The HTTP application over `server`; the caller owns `server` and closes it."""
    web = WebState(server)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if server.webhooks is not None:  # outbound webhooks are sent while the app serves
            server.webhooks.dispatcher.start()
        yield
        # The worker may be computing an assessment: wait for it off the event loop.
        await asyncio.to_thread(web.close)

    app = _ServerApp(
        title="FlowLoom",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.flowloom = server
    app.state.flowloom_web = web

    # FastAPI's own /docs pages, served here to give them a policy of their own.
    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return docs_page("/openapi.json", "FlowLoom - Swagger UI", _OAUTH2_REDIRECT)

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    def docs_oauth2_redirect() -> HTMLResponse:
        return oauth2_redirect_page()

    install_error_handlers(app)
    for router in routers():
        app.include_router(router)
    _describe_errors_as_json(app)
    # Outermost last: metrics see every response, including the limit's 413s.
    app.add_middleware(BodyLimit, limit=server.settings.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=server.metrics)
    return app


def _describe_errors_as_json(app: FastAPI) -> None:
    """Make every documented error response the JSON error body, whatever the route serves.

    FastAPI would document a text route's errors as text/plain and validation errors in
    its own shape; the exception handler answers every error as ErrorBody JSON.
    """
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = default()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in document.get("paths", {}).items():
            scim = path.startswith(SCIM_PREFIX + "/")
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if scim:  # SCIM answers in its own shape and media type (RFC 7644)
                        _describe_scim(status, response)
                    elif status[:1] in ("4", "5"):
                        response["content"] = error
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_scim(status: str, response: dict[str, Any]) -> None:
    """A SCIM route's answer: a JSON object as application/scim+json; its errors keep the
    SCIM error schema the route declares (flowloom.server.routes.scim)."""
    if status[:1] == "2" and "content" in response:
        response["content"] = {SCIM_MEDIA_TYPE: {"schema": {"type": "object"}}}


def _too_large(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": f"the request body is over the server's limit of {limit} bytes",
                "hint": "send smaller batches, or raise max_request_bytes in [server]",
            }
        }
    ).encode()


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, before anything parses them.

    The body is read up to the limit and replayed to the app, so a client that lies in
    (or omits) Content-Length is stopped just the same.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = _too_large(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMetrics:
    """Count requests and time them, labelled by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe(
                scope["method"], template, status[0], time.perf_counter() - started
            )
