"""What the MCP server says before any tool is called, written without the SDK.

An assistant waits for these answers before its first prompt, and the SDK (pydantic
models) takes a second or more to import on a loaded machine. So `flowloom mcp` over
stdio answers them from here at once (`flowloom.cli.mcp_front`) and loads the SDK only
when a request arrives that needs it (a tool call, a resource read). Two eras of the
protocol open a connection differently:

- up to 2025-11-25, `initialize` (`initialize_result`), then the lists;
- from 2026-07-28 (Claude Code 2.1.3xx), `server/discover`, `subscriptions/listen`
  and the lists, each request carrying the client's envelope in `_meta`.

The lists and the discovery answer are the SDK server's own, kept in `catalog.json`;
`tests/mcp/test_fast_start.py` compares every answer here with the SDK's, and
`python -m tests.mcp.catalog` writes the catalog anew when the tools change.
Standard library only.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

from flowloom import __version__

__all__ = [
    "HANDSHAKE_VERSIONS",
    "INSTRUCTIONS",
    "MODERN_VERSIONS",
    "Catalog",
    "initialize_result",
]

INSTRUCTIONS: Final = (
    "FlowLoom keeps this project's decisions (what was decided, why, who asked and who "
    "approved) in a tamper-evident ledger linked to the commits they produced. Before "
    "changing code, ask `why` about the lines you touch and `search_memory` for earlier "
    "decisions; when you and the user settle on an approach, `record_decision` it, so the "
    "next commit is linked to it."
)

HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""The protocol revisions the SDK negotiates through `initialize`, oldest first. The
catalog's lists are those of the newest; after an older one the SDK answers them."""

MODERN_VERSIONS: Final = ("2026-07-28",)
"""The revisions whose requests carry the client's envelope and need no `initialize`."""

LIST_METHODS: Final = ("prompts/list", "resources/list", "tools/list")
"""The lists an assistant asks for before its first prompt. The catalog's
`resources/list` holds the fixed resources only; the decisions are added to it
(`flowloom.mcp.listing`)."""
LEGACY: Final = "legacy"
MODERN: Final = "modern"

_META = "io.modelcontextprotocol/"
_CATALOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalog.json")
_LISTEN_FLAGS = ("toolsListChanged", "promptsListChanged", "resourcesListChanged")


def initialize_result(params: Any) -> dict[str, Any]:
    """The `initialize` result for the request's `params`: the client's protocol version
    when it is one of ours, else our newest (the client then decides)."""
    requested = params.get("protocolVersion") if isinstance(params, dict) else None
    version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
    return {
        "capabilities": {
            "prompts": {"listChanged": False},
            "resources": {"listChanged": False, "subscribe": False},
            "tools": {"listChanged": False},
        },
        "instructions": INSTRUCTIONS,
        "protocolVersion": version,
        "serverInfo": _server_info(),
    }


def _server_info() -> dict[str, str]:
    return {"name": "flowloom", "title": "FlowLoom", "version": __version__}


def modern_envelope(params: Any) -> bool:
    """Whether `params` carry a complete 2026-era envelope of a version we serve and
    nothing else the answer could depend on (a cursor, a filter): only then is the
    answer the catalog's. Anything else goes to the SDK, which knows every rule."""
    if not isinstance(params, dict) or set(params) != {"_meta"}:
        return False
    meta = params["_meta"]
    if not isinstance(meta, dict):
        return False
    info = meta.get(_META + "clientInfo")
    return (
        meta.get(_META + "protocolVersion") in MODERN_VERSIONS
        and isinstance(info, dict)
        and isinstance(info.get("name"), str)
        and isinstance(info.get("version"), str)
        and isinstance(meta.get(_META + "clientCapabilities"), dict)
    )


def listen_filter(params: Any) -> dict[str, bool] | None:
    """The list-changed notifications a `subscriptions/listen` asks for, when it asks for
    nothing else (resource subscriptions go to the SDK); None when it is not that."""
    if not isinstance(params, dict) or set(params) - {"_meta", "notifications"}:
        return None
    if not modern_envelope({"_meta": params.get("_meta")}):
        return None
    wanted = params.get("notifications")
    if not isinstance(wanted, dict) or set(wanted) - set(_LISTEN_FLAGS):
        return None
    if not all(isinstance(v, bool) for v in wanted.values()):
        return None
    return {k: True for k in _LISTEN_FLAGS if wanted.get(k)}


def listen_acknowledgement(request_id: Any, honored: dict[str, bool]) -> dict[str, Any]:
    """The notification that opens a `subscriptions/listen` stream. FlowLoom's lists
    never change while it runs, so nothing more is ever sent on it."""
    return {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {_META + "subscriptionId": request_id}, "notifications": honored},
    }


class Catalog:
    """The SDK server's answers that do not depend on the project: its discovery answer
    and its lists, per era (`catalog.json`)."""

    def __init__(self, answers: dict[str, dict[str, dict[str, Any]]]) -> None:
        self._answers = answers

    @classmethod
    def load(cls, path: str = _CATALOG) -> Catalog:
        with open(path, encoding="utf-8") as fh:
            answers = json.load(fh)
        for result in answers.get(MODERN, {}).values():
            result.setdefault("_meta", {})[_META + "serverInfo"] = _server_info()
        return cls(answers)

    def result(self, era: str, method: str) -> dict[str, Any] | None:
        """The answer to `method` in `era`, or None when the catalog has none."""
        found = self._answers.get(era, {}).get(method)
        return None if found is None else dict(found)
