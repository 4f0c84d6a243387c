"""The SIEM page of a project: its destinations, where each stands, and the forms to add
or change one, remove one, or send it a test event.

Reading needs audit.read, acting project.admin, checked by `authorize()` as in the API;
the secret field is write-only (the page says only whether one is set). Every change is
recorded in the ledger by flowloom.siem with the signed-in person as the actor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flowloom.auth.principals import Principal
from flowloom.errors import FlowLoomError, RemoteError, StoreError
from flowloom.server.deps import authorize, get_server
from flowloom.server.state import ServerState
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state
from flowloom.siem.service import Siem

__all__ = ["router"]

router = APIRouter(prefix=WEB_PREFIX, route_class=WebRoute, include_in_schema=False)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
ProjectAdmin = Annotated[Principal, Depends(authorize("project.admin"))]
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


def _siem(server: ServerState) -> Siem:
    if server.siem is None:
        raise StoreError("the SIEM feed is not set up on this server")
    return server.siem


def _page(
    request: Request,
    principal: Principal,
    server: ServerState,
    web: WebState,
    project: str,
    *,
    notice: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — SIEM",
        nav="siem",
        rows=_siem(server).status(project),
        notice=notice,
        problem=problem,
    )
    return html(web.render("web/siem.html", context), status)


@router.get("/projects/{project}/siem", response_class=HTMLResponse)
def siem_page(
    project: str,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Server,
    web: Web,
) -> Response:
    return _page(request, principal, server, web, project)


@router.post("/projects/{project}/siem", response_class=HTMLResponse)
def configure_destination(
    project: str,
    request: Request,
    principal: ProjectAdmin,
    server: Server,
    web: Web,
    name: Annotated[str, Form(min_length=1, max_length=63)],
    kind: Annotated[str, Form(pattern="^(syslog|hec|elastic)$")],
    target: Annotated[str, Form(min_length=1, max_length=2048)],
    format: Annotated[str, Form(pattern="^(|rfc5424|cef|ocsf)$")] = "",
    secret: Annotated[str, Form(max_length=4096)] = "",
    ca_pem: Annotated[str, Form(max_length=65536)] = "",
) -> Response:
    try:
        _siem(server).configure(
            project,
            name,
            kind=kind,
            target=target,
            format=format or None,
            secret=secret or None,  # an empty field keeps the stored secret
            options={"ca_pem": ca_pem} if ca_pem.strip() else None,
            actor=principal.actor(),
        )
    except FlowLoomError as exc:
        return _page(
            request, principal, server, web, project, problem=exc.diagnostics(), status=400
        )
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/siem", status_code=303)


@router.post("/projects/{project}/siem/{name}/remove")
def remove_destination(
    project: str, name: Name, principal: ProjectAdmin, server: Server
) -> Response:
    _siem(server).remove(project, name, actor=principal.actor())
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/siem", status_code=303)


@router.post("/projects/{project}/siem/{name}/test", response_class=HTMLResponse)
def test_destination(
    project: str, name: Name, request: Request, principal: ProjectAdmin, server: Server, web: Web
) -> Response:
    try:
        event = _siem(server).send_test(project, name)
    except RemoteError as exc:  # the receiver's answer; an unknown name stays a 404
        return _page(
            request, principal, server, web, project, problem=exc.diagnostics(), status=502
        )
    return _page(request, principal, server, web, project, notice=f"Sent {event.uid} to {name}.")
