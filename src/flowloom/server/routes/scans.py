"""Security scanner results over the API: `POST /api/v1/projects/{project}/scans`.

The body is a SARIF 2.1.0 log and the commit that was scanned. With a repository
configured for the project ([server.repositories]) the server reads the commit's tree
itself; otherwise the caller's `tree` is recorded as a claim (`tree_verified: false`).
Results are bound to decisions by `flowloom scan ingest` in a clone (it blames the
work tree); over the API they are recorded unbound. Needs ledger.append.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.principals import Principal
from flowloom.errors import InputError
from flowloom.scanners.evidence import KIND, ScanEvidence
from flowloom.scanners.sarif import parse_sarif
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.reports import project_repository
from flowloom.server.state import ServerState

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["security scanners"], responses=ERROR_RESPONSES)

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sarif: dict[str, Any] = Field(description="The SARIF 2.1.0 log, as the scanner wrote it")
    commit: str = Field(pattern=_SHA.pattern, description="The commit that was scanned")
    tree: str | None = Field(
        default=None, pattern=_SHA.pattern, description="Its tree, when no repository is set"
    )
    name: str = Field(default="scan.sarif", max_length=255)


@router.post("/projects/{project}/scans", summary="Record SARIF results for a scanned tree")
def ingest_scan(
    project: str,
    body: ScanIn,
    principal: Annotated[Principal, Depends(authorize("ledger.append"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    data = json.dumps(body.sarif).encode("utf-8")
    tools, results = parse_sarif(data, body.name)
    repo = project_repository(server, project)
    if repo is not None:
        tree, verified = repo.tree(body.commit), True
    elif body.tree is not None:
        tree, verified = body.tree, False
    else:
        raise InputError(
            "no repository is configured for this project, so the scanned tree is unknown",
            hint="send 'tree' (git rev-parse COMMIT^{tree}) or configure [server.repositories]",
        )
    evidence = ScanEvidence.of(
        tools,
        results,
        commit=body.commit,
        tree=tree,
        data=data,
        name=body.name,
        root=repo.cwd if repo is not None else None,
        decision_of=lambda path, line: None,
    )
    meta = evidence.meta()
    meta["actor"] = principal.actor()
    meta["refs"]["tree_verified"] = verified
    max_body = server.settings.max_body_bytes
    ack = server.ledger(project).record(
        KIND, meta=meta, body=data if len(data) <= max_body else None
    )
    return {"entry": ack.index, **meta["refs"]}
