"""The MCP `initialize` answer, written without the SDK: what the server says first.

An assistant waits for this answer before it goes on, and the SDK (pydantic models)
takes a second or more to import on a loaded machine. So `flowloom mcp` over stdio
answers `initialize` from here at once (`flowloom.cli.mcp_front`) and hands the
connection to the SDK server, which then serves everything else. The answer must be
the one the SDK server would give: `tests/mcp/test_fast_start.py` compares them for
every protocol version. Standard library only.
"""

from __future__ import annotations

from typing import Any, Final

from flowloom import __version__

__all__ = ["HANDSHAKE_VERSIONS", "INSTRUCTIONS", "initialize_result"]

INSTRUCTIONS: Final = (
    "FlowLoom keeps this project's decisions (what was decided, why, who asked and who "
    "approved) in a tamper-evident ledger linked to the commits they produced. Before "
    "changing code, ask `why` about the lines you touch and `search_memory` for earlier "
    "decisions; when you and the user settle on an approach, `record_decision` it, so the "
    "next commit is linked to it."
)

HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""The protocol revisions the SDK negotiates through `initialize`, oldest first."""


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
        "serverInfo": {"name": "flowloom", "title": "FlowLoom", "version": __version__},
    }
