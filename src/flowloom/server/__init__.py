"""The FlowLoom team server: the HTTP API over the ledger, the directory and signatures.

`create_app(server)` assembles the FastAPI application from a `ServerState`, which
`flowloom.server.build.build_server(settings)` wires; `flowloom serve` runs it under uvicorn.
"""

from __future__ import annotations

__all__ = ["INSTANCE_PROJECT"]

from flowloom.auth.permissions import INSTANCE_PROJECT
