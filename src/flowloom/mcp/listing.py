"""The project's decisions as MCP resources, in the wire form `resources/list` gives.

`resources/list` names every recorded decision (Claude Code offers them as `@`
mentions), and an assistant waits for that list before its first prompt. So the fast
front (`flowloom.cli.mcp_front`) reads it here through the ledger alone, without the
SDK, and the SDK server (`flowloom.mcp.server.FlowLoomMCP`) lists the same dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["decision_resource", "project_decision_resources"]


def decision_resource(summary: dict[str, Any]) -> dict[str, Any]:
    """One decision (`ProjectTools.list_decisions`' summary) as an MCP resource."""
    return {
        "description": f"Decision {summary['id']} ({summary['status']}, risk {summary['risk']})",
        "mimeType": "application/json",
        "name": summary["id"],
        "title": summary["title"],
        "uri": summary["uri"],
    }


def project_decision_resources(cwd: Path) -> list[dict[str, Any]] | None:
    """The decisions of the ledger a server started in `cwd` serves, read-only; None
    when this is not the plain local case (a team server's record, a ledger that does
    not open): the SDK server then answers, and says what is wrong."""
    from flowloom.config import load_settings

    settings = load_settings(cwd)
    if settings.server_url is not None:
        return None
    from flowloom.decisions.records import DecisionBook
    from flowloom.errors import FlowLoomError
    from flowloom.mcp.tools import decision_uri
    from flowloom.services import build_services

    try:
        services = build_services(settings, access="read")
    except FlowLoomError:
        return None
    try:
        return [
            decision_resource(
                {
                    "id": d.id,
                    "title": d.title,
                    "status": d.status,
                    "risk": d.risk,
                    "uri": decision_uri(d.id),
                }
            )
            for d in DecisionBook(services.ledger).list()
        ]
    finally:
        services.close()
