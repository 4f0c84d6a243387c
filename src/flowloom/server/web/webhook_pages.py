"""The project's webhooks page: subscriptions, the latest deliveries and every attempt.

Under /ui/projects/{project}/webhooks, with the API's `authorize("project.admin")`, as
the API's webhook routes. Two actions post from it: send a test event, and redeliver a
delivered or dead-lettered message. Subscriptions are made with the API or the CLI,
where the secret can be shown once to the person who will configure the receiver.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flowloom.auth.principals import Principal
from flowloom.errors import ConfigError
from flowloom.server.deps import authorize, get_server
from flowloom.server.models import MAX_INDEX
from flowloom.server.state import ServerState
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state
from flowloom.webhooks.service import Webhooks

__all__ = ["router"]

router = APIRouter(
    prefix=WEB_PREFIX + "/projects/{project}/webhooks",
    route_class=WebRoute,
    include_in_schema=False,
)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
Admin = Annotated[Principal, Depends(authorize("project.admin"))]
_SHOWN = 50


def _hooks(server: ServerState) -> Webhooks:
    if server.webhooks is None:
        raise ConfigError("this server was built without webhooks")
    return server.webhooks


@router.get("", response_class=HTMLResponse)
def webhooks_page(
    project: str, request: Request, principal: Admin, server: Server, web: Web
) -> Response:
    hooks = _hooks(server)
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — webhooks",
        nav="webhooks",
        subscriptions=hooks.subscriptions(project),
        deliveries=hooks.deliveries(project, limit=_SHOWN),
    )
    return html(web.render("web/webhooks.html", context))


@router.post("/{webhook_id}/test")
def send_test(
    project: str,
    webhook_id: Annotated[str, Path(max_length=100)],
    principal: Admin,
    server: Server,
) -> Response:
    _hooks(server).send_test(project, webhook_id, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/webhooks", status_code=303)


@router.post("/deliveries/{delivery_id}/redeliver")
def redeliver(
    project: str,
    delivery_id: Annotated[int, Path(ge=1, le=MAX_INDEX)],
    principal: Admin,
    server: Server,
) -> Response:
    _hooks(server).redeliver(project, delivery_id, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/webhooks", status_code=303)
