"""GET the model list and one model, in the caller's format, as each provider's SDK expects.

The list holds every model name the policy routes, and, when the policy passes provider
model names through (the default), the caller's own provider's list as that provider
answers it: so `models.list()` of an SDK is never empty against the default policy. One
model is the routed entry, else the provider's own answer for a passed-through name (a
name the provider does not know is 404 in the caller's format), else (a name routed to a
provider of another format) a short entry naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowloom.errors import FlowLoomError
from flowloom.gateway.ports import RouterPort
from flowloom.gateway.providers.interface import Format, Provider, UpstreamCall
from flowloom.gateway.routing.model import RouteRequest
from flowloom.gateway.wire.formats import wire_for

if TYPE_CHECKING:
    from flowloom.gateway.upstream import Upstream

__all__ = ["ModelsEndpoint", "model_list", "model_object"]

log = logging.getLogger("flowloom.gateway")

_KINDS: Mapping[str, tuple[str, ...]] = {
    "anthropic": ("anthropic",),
    "openai": ("openai", "openai_compatible"),
    "responses": ("openai", "openai_compatible"),
    "gemini": ("gemini",),
}
_FETCH_TIMEOUT_S = 10.0


def model_object(fmt: Format, model: str) -> dict[str, Any]:
    """One model entry in `fmt`'s shape, for a name the gateway routes."""
    if fmt == "anthropic":
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "2025-01-01T00:00:00Z",
        }
    if fmt == "gemini":
        return {
            "name": f"models/{model}",
            "displayName": model,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }
    return {"id": model, "object": "model", "created": 0, "owned_by": "flowloom"}


def _row_id(fmt: Format, row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    if fmt == "gemini":
        name = row.get("name")
        return name.removeprefix("models/") if isinstance(name, str) else None
    value = row.get("id")
    return value if isinstance(value, str) else None


def _rows(fmt: Format, body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    rows = body.get("models" if fmt == "gemini" else "data")
    return [r for r in rows if _row_id(fmt, r)] if isinstance(rows, list) else []


def model_list(fmt: Format, rows: list[dict[str, Any]]) -> bytes:
    """A model list response in `fmt`'s shape."""
    if fmt == "gemini":
        return json.dumps({"models": rows}).encode()
    if fmt == "anthropic":
        first = rows[0]["id"] if rows else None
        last = rows[-1]["id"] if rows else None
        return json.dumps(
            {"data": rows, "has_more": False, "first_id": first, "last_id": last}
        ).encode()
    return json.dumps({"object": "list", "data": rows}).encode()


class ModelsEndpoint:
    """The model list and model reads of one request (cheap: built per GET)."""

    def __init__(
        self,
        router: RouterPort,
        provider: Callable[[str], Provider],
        provider_key: Callable[[str], str | None],
        upstream: Upstream,
    ) -> None:
        self._router = router
        self._provider = provider
        self._key = provider_key
        self._upstream = upstream

    async def list(self, fmt: Format) -> tuple[int, bytes]:
        rows = [model_object(fmt, m.id) for m in self._router.models()]
        seen = {m["id"] if fmt != "gemini" else m["name"] for m in rows}
        if getattr(self._router, "passthrough", False):
            adapter = self._own_provider(fmt)
            fetched = await self._fetch(adapter, None, {}) if adapter is not None else None
            if fetched is not None and fetched[0] == 200:
                for row in _rows(fmt, fetched[1]):
                    key = row["id"] if fmt != "gemini" else row["name"]
                    if key not in seen:
                        seen.add(key)
                        rows.append(row)
        return 200, model_list(fmt, rows)

    async def get(self, fmt: Format, model: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        wire = wire_for(fmt)
        if any(m.id == model for m in self._router.models()):
            return 200, json.dumps(model_object(fmt, model)).encode()
        try:
            cascade = self._router.plan(
                RouteRequest(
                    format=fmt,
                    model=model,
                    stream=False,
                    has_tools=False,
                    has_images=False,
                    est_input_tokens=0,
                    max_output_tokens=None,
                    project=None,
                    residency=None,
                )
            )
        except FlowLoomError as exc:
            return 404, wire.error_body(404, exc.diagnostics())
        if cascade:
            target = cascade[0]
            try:
                adapter = self._provider(target.provider)
            except FlowLoomError:
                adapter = None
            if adapter is not None and adapter.config.kind in _KINDS[fmt]:
                fetched = await self._fetch(adapter, target.model, headers)
                if fetched is not None:
                    status, body = fetched
                    if status == 200 and _row_id(fmt, body) is not None:
                        if target.model != model:
                            body = {**body, **model_object(fmt, model)}
                        return 200, json.dumps(body).encode()
                    if status == 404:
                        return 404, wire.error_body(404, f"model '{model}' does not exist")
        return 200, json.dumps(model_object(fmt, model)).encode()

    def _own_provider(self, fmt: Format) -> Provider | None:
        for name, config in self._router.providers().items():
            if config.kind in _KINDS[fmt]:
                try:
                    return self._provider(name)
                except FlowLoomError:
                    return None
        return None

    async def _fetch(
        self, adapter: Provider, model: str | None, headers: Mapping[str, str]
    ) -> tuple[int, Any] | None:
        """(status, parsed JSON) of the provider's own GET, or None when it has none or
        cannot be reached (the gateway then answers from its own configuration)."""
        url = adapter.models_url(model)
        if url is None:
            return None
        config = adapter.config
        key = self._key(config.api_key_ref) if config.api_key_ref else None
        call = UpstreamCall(
            format=adapter.format,
            model=model or "",
            stream=False,
            body=b"",
            path_hint="models",
            passthrough_headers=headers,
        )
        sent = {k: v for k, v in adapter.headers(call, key).items() if k != "content-type"}
        errors: tuple[type[BaseException], ...] = (*self._upstream.errors, OSError, TimeoutError)
        try:
            status, raw = await self._upstream.get(
                url, sent, timeout_s=_FETCH_TIMEOUT_S, limit=8 * 1024 * 1024
            )
        except errors as exc:
            log.info("listing models at %s failed: %s", config.name, type(exc).__name__)
            return None
        try:
            return status, json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            return status, None
