"""The MCP server: the project's decisions and memory, offered to AI assistants.

`flowloom mcp` serves the tools and resources of `flowloom.mcp.server` over stdio (what
an assistant launches) or streamable HTTP (behind an API key). The SDK is imported only
by the server modules, so importing this package stays light.
"""

from __future__ import annotations

__all__: list[str] = []
