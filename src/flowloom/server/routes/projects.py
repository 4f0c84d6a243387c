"""Projects, their members, and their security audit trail.

Listing shows only the projects the caller holds a role on (all of them for a "*"
grant); everything under /projects/{project} passes `authorize()`. The audit trail lists
the security events (``auth.*``, ``key.*``) this server's keys attest; an event appended
around the endpoints is not an audit fact, and is listed, labelled unverified, only when
asked for (``include_unverified``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from flowloom.auth.principals import Principal
from flowloom.auth.records import Project
from flowloom.ledger.attest import AUTHORITY_FAMILIES
from flowloom.ledger.provenance import judge_bytes
from flowloom.server.deps import authenticated, authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import (
    MAX_INDEX,
    AuditEntryOut,
    AuditOut,
    MemberOut,
    ProjectIn,
    ProjectOut,
)
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.ledger import entry_out
from flowloom.server.state import ServerState
from flowloom.server.views import member_out

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX + "/projects", tags=["projects"], responses=ERROR_RESPONSES)


def _project_out(server: ServerState, project: Project, *, detail: bool) -> ProjectOut:
    out = ProjectOut(
        name=project.name,
        created_at=project.created_at,
        origin=server.settings.origin(project.name),
    )
    if detail:
        ledger = server.ledger(project.name)
        out.size = ledger.size()
        verifier = ledger.current_verifier()  # None until something is recorded
        out.vkey = verifier.vkey if verifier is not None else None
    return out


@router.get("", response_model=list[ProjectOut], summary="Projects the caller has a role on")
def list_projects(
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
) -> list[ProjectOut]:
    visible = server.authorizer.projects_with(principal, "project.read")
    return [
        _project_out(server, p, detail=False)
        for p in server.directory.list_projects()
        if visible is None or p.name in visible
    ]


@router.post("", status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(
    body: ProjectIn,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> ProjectOut:
    project = server.directory.create_project(body.name, by=principal)
    return _project_out(server, project, detail=True)


@router.get("/{project}", response_model=ProjectOut, summary="One project, with its log size")
def get_project(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> ProjectOut:
    return _project_out(server, server.directory.get_project(project), detail=True)


@router.get("/{project}/members", response_model=list[MemberOut], summary="Who has which role")
def members(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> list[MemberOut]:
    return [member_out(m) for m in server.directory.members(project)]


@router.put(
    "/{project}/members/{user_id}/{role}",
    status_code=204,
    response_class=Response,
    summary="Grant a role on the project",
)
def grant(
    project: str,
    user_id: str,
    role: str,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    server.directory.grant(user_id, project, role, by=principal)
    return Response(status_code=204)


@router.delete(
    "/{project}/members/{user_id}/{role}",
    status_code=204,
    response_class=Response,
    summary="Revoke a role on the project",
)
def revoke(
    project: str,
    user_id: str,
    role: str,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    server.directory.revoke(user_id, project, role, by=principal)
    return Response(status_code=204)


@router.get("/{project}/audit", response_model=AuditOut, summary="The project's security events")
def audit_trail(
    project: str,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(100, ge=1, le=1000),
    include_unverified: bool = Query(
        False, description="Also list security events whose origin is not proven, labelled"
    ),
) -> AuditOut:
    ledger = server.ledger(project)
    trust = server.trust(project)
    size = ledger.size()
    found: list[AuditEntryOut] = []
    following: int | None = None
    families = tuple(f"{family}." for family in AUTHORITY_FAMILIES)
    # auth.* and key.* are open families: filter by prefix while reading in index order.
    for entry in ledger.store.entries(project, start, size):
        if not entry.kind.startswith(families):
            continue
        proven = judge_bytes(entry.envelope, trust)
        if not proven.attested and not include_unverified:
            continue
        if len(found) == limit:
            following = entry.index
            break
        found.append(
            AuditEntryOut(
                **entry_out(entry).model_dump(),
                verified=proven.attested,
                origin=proven.origin,
                unverified_reason=None if proven.attested else proven.reason,
            )
        )
    return AuditOut(entries=found, size=size, next=following)
