"""The gateway's ASGI app: lifecycle, endpoints, and the model-call pipeline behind them.

Raw ASGI on purpose: no framework routing or body validation sits between a caller and
the upstream. A model call goes through the stages of pipeline.py (authenticate, reserve
a recording slot, read, route, admit, attempt with fallback, relay, record); the
upstream I/O behind them is an `Upstream` (upstream.py: one pooled HTTP client, or an
in-memory one in tests). Usage is settled and the exchange recorded afterwards, in the
recorder's thread (settlement.py). Wiring the parts together is wiring.py's job; this
module never imports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowloom.errors import FlowLoomError, NotFoundError
from flowloom.gateway.asgi import Receive, Scope, Send, respond
from flowloom.gateway.pipeline import Inbound, Pipeline, secret_of, status_of
from flowloom.gateway.ports import AccessPort, RouterPort
from flowloom.gateway.providers.interface import Format, Provider, ProviderConfig
from flowloom.gateway.providers.registry import make_provider
from flowloom.gateway.recorder import Recorder
from flowloom.gateway.settings import GatewaySettings
from flowloom.gateway.upstream import HttpUpstream, Upstream
from flowloom.gateway.wire.formats import wire_for
from flowloom.gateway.wire.models import ModelsEndpoint
from flowloom.gateway.wire.routes import caller_format, model_call, models_read

if TYPE_CHECKING:
    from flowloom.gateway.otel import Telemetry

__all__ = ["Gateway", "GatewaySettings", "create_gateway_app"]

log = logging.getLogger("flowloom.gateway")


class Gateway:
    """The ASGI app and its collaborators; one per process, shared by every request.

    `upstream` defaults to one pooled HTTP client (HttpUpstream). The recorder's settle
    hook is given to the Recorder by whoever builds it (settlement.Settlement).
    """

    def __init__(
        self,
        *,
        router: RouterPort,
        access: AccessPort,
        recorder: Recorder,
        settings: GatewaySettings | None = None,
        telemetry: Telemetry | None = None,
        closers: list[Callable[[], None]] | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.router = router
        self.access = access
        self.recorder = recorder
        self.settings = settings or GatewaySettings()
        self.telemetry = telemetry
        self.upstream: Upstream = upstream or HttpUpstream(
            pool_size=self.settings.pool_size, connect_timeout_s=self.settings.connect_timeout_s
        )
        self._closers = closers or []
        self._providers: dict[str, tuple[ProviderConfig, Provider]] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._started = False
        self._recorder_started = False
        self.pipeline = Pipeline(
            router=router,
            access=access,
            recorder=recorder,
            settings=self.settings,
            upstream=self.upstream,
            provider=self.provider,
            before_send=self._start_recorder,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def startup(self) -> None:
        if self._started:
            return
        self._started = True
        self._start_recorder()
        await self.upstream.start()
        if self.settings.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())

    def _start_recorder(self) -> None:
        """Start the recorder once: at startup, or at first use when served without a
        lifespan."""
        if not self._recorder_started:
            self._recorder_started = True
            self.recorder.start()

    async def shutdown(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        await self.upstream.close()
        await asyncio.to_thread(self.recorder.close)
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.exception("closing a gateway part failed")
        self._started = False
        self._recorder_started = False

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                self.router.reload_if_changed()
            except Exception:
                log.exception("reloading the routing configuration failed")

    def provider(self, name: str) -> Provider:
        """The adapter of provider `name` (cached per configuration object)."""
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
                inbound = Inbound(
                    fmt=route.format,
                    op=route.op,
                    endpoint=path,
                    headers=_headers(scope),
                    query=_query(scope),
                    url_model=route.url_model,
                    started=time.perf_counter(),
                    wall=time.time(),
                )
                await self.pipeline.handle(inbound, receive, send)
                return
        elif method == "GET":
            if path == "/healthz":
                await respond(send, 200, b'{"status":"ok"}')
                return
            if path == "/readyz":
                await self._ready(send)
                return
            read = models_read(path, _headers(scope), _query(scope))
            if read is not None:
                await self._models(scope, send, read.format, read.model)
                return
        fmt = caller_format(path, _headers(scope), _query(scope))
        await respond(
            send, 404, wire_for(fmt).error_body(404, f"no such endpoint: {method} {path}")
        )

    async def _ready(self, send: Send) -> None:
        status = self.recorder.status()
        ok = bool(status["available"])
        body = json.dumps({"status": "ready" if ok else "unavailable", "recorder": status})
        await respond(send, 200 if ok else 503, body.encode())

    async def _models(self, scope: Scope, send: Send, fmt: Format, model: str | None) -> None:
        """GET the model list or one model, in the caller's format (see wire.models)."""
        headers = _headers(scope)
        try:
            self.access.authenticate(secret_of(headers, _query(scope)))
        except FlowLoomError as exc:
            status = status_of(exc)
            await respond(send, status, wire_for(fmt).error_body(status, exc.diagnostics()))
            return
        self._start_recorder()
        endpoint = ModelsEndpoint(
            self.router, self.provider, self.access.provider_key, self.upstream
        )
        status, body = await (
            endpoint.list(fmt) if model is None else endpoint.get(fmt, model, headers)
        )
        await respond(send, status, body)


def _query(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def create_gateway_app(gateway: Gateway) -> Gateway:
    """The ASGI app serving `gateway` (the Gateway is itself the ASGI callable)."""
    return gateway
