"""The project's code-host integrations page: settings, "send test", the outbound queue.

Reading needs project.read, changing project.admin, as the API
(flowloom.server.routes.integrations); the same Integrations service records every
change in the ledger. Secrets are write-only here: a password field left empty keeps
the stored value, and the page shows only whether each one is set.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flowloom.auth.principals import Principal
from flowloom.server.deps import authorize, get_server
from flowloom.server.routes.integrations import integrations_of
from flowloom.server.state import ServerState
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state

__all__ = ["router"]

router = APIRouter(prefix=WEB_PREFIX, route_class=WebRoute, include_in_schema=False)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
Host = Annotated[str, Path(pattern="^(github|gitlab|bitbucket)$")]
ProjectAdmin = Annotated[Principal, Depends(authorize("project.admin"))]
_Text = Annotated[str, Form(max_length=2000)]


@router.get("/projects/{project}/integrations", response_class=HTMLResponse)
def integrations_page(
    project: str,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Server,
    web: Web,
    tested: str | None = None,
) -> Response:
    service = integrations_of(server)
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — integrations",
        nav="integrations",
        configs={c.kind: c.public() for c in service.store.of_project(project)},
        hosts=("github", "gitlab", "bitbucket"),
        deliveries=[i.to_json() for i in service.items(project, limit=30)],
        tested=tested,
    )
    return html(web.render("web/integrations.html", context))


def _back(project: str, **query: str) -> Response:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/integrations{suffix}", 303)


@router.post("/projects/{project}/integrations/{kind}")
def save_integration(
    project: str,
    kind: Host,
    principal: ProjectAdmin,
    server: Server,
    repo: Annotated[str, Form(min_length=3, max_length=300)],
    api_url: _Text = "",
    app_id: _Text = "",
    installation_id: _Text = "",
    protected_branches: _Text = "",
    details_url: _Text = "",
    token: _Text = "",
    private_key: Annotated[str, Form(max_length=20000)] = "",
    webhook_secret: _Text = "",
) -> Response:
    settings: dict[str, Any] = {"repo": repo.strip()}
    for name, value in (
        ("api_url", api_url),
        ("app_id", app_id),
        ("installation_id", installation_id),
        ("details_url", details_url),
    ):
        if value.strip():
            settings[name] = value.strip()
    branches = [b.strip() for b in protected_branches.split(",") if b.strip()]
    if branches:
        settings["protected_branches"] = branches
    service = integrations_of(server)
    existing = service.store.get(project, kind)
    if existing is not None and "user_map" in existing.settings:
        settings["user_map"] = dict(existing.settings["user_map"])  # kept: set by CLI/API
    secrets = {
        name: value.strip()
        for name, value in (
            ("token", token),
            ("private_key", private_key),
            ("webhook_secret", webhook_secret),
        )
        if value.strip()
    }
    service.configure(project, kind, settings, secrets, actor=principal.actor())
    return _back(project)


@router.post("/projects/{project}/integrations/{kind}/test")
def test_integration(project: str, kind: Host, principal: ProjectAdmin, server: Server) -> Response:
    outcome = integrations_of(server).send_test(project, kind, actor=principal.actor())
    return _back(project, tested=f"{kind}-{'ok' if outcome['ok'] else 'failed'}")


@router.post("/projects/{project}/integrations/{kind}/remove")
def remove_integration(
    project: str, kind: Host, principal: ProjectAdmin, server: Server
) -> Response:
    integrations_of(server).remove(project, kind, actor=principal.actor())
    return _back(project)
