"""The LLM gateway: provider-compatible endpoints that route, limit and record every exchange.

`build_gateway(...)` wires a Router, Access, a Recorder and one pooled upstream client into
a `Gateway`; `create_gateway_app(gateway)` is the raw ASGI app serving it. Heavy parts
(aiohttp, OpenTelemetry) are imported only when a gateway is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Gateway", "build_gateway", "create_gateway_app"]

if TYPE_CHECKING:
    from flowloom.gateway.app import Gateway, create_gateway_app
    from flowloom.gateway.wiring import build_gateway


def __getattr__(name: str) -> Any:
    # Lazy: importing flowloom.gateway (e.g. for a submodule) must not pull in aiohttp.
    if name == "build_gateway":
        from flowloom.gateway import wiring

        return wiring.build_gateway
    if name in __all__:
        from flowloom.gateway import app

        return getattr(app, name)
    raise AttributeError(name)
