"""A person's own notification preferences on a project (email over SMTP).

GET/PUT /api/v1/projects/{project}/notifications/me: who "me" is comes from the
authentication only, so nobody sets another person's preferences. Turning approval
requests on needs decision.read (the messages name decisions); each change is recorded
in the project's ledger (flowloom.webhooks.service).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from flowloom.auth.principals import Principal
from flowloom.errors import ConfigError
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.webhooks.digest import DIGEST
from flowloom.webhooks.service import Webhooks

__all__ = ["router"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/notifications",
    tags=["notifications"],
    responses=ERROR_RESPONSES,
)

Reader = Annotated[Principal, Depends(authorize("decision.read"))]
Server = Annotated[ServerState, Depends(get_server)]


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approval_requests: bool | None = None
    digest: bool | None = None


class PreferencesOut(BaseModel):
    approval_requests: bool
    """Email me when a decision is recorded that may need my approval."""
    digest: bool
    """Email me a digest of what the project recorded, once a period (default weekly)."""
    email: str | None
    """Where the emails go (the account's address, looked up at each send)."""


def _hooks(server: ServerState) -> Webhooks:
    if server.webhooks is None:
        raise ConfigError("this server was built without notifications")
    return server.webhooks


@router.get("/me", response_model=PreferencesOut, summary="My notification preferences")
def my_preferences(project: str, principal: Reader, server: Server) -> PreferencesOut:
    return _preferences(_hooks(server), project, principal)


def _preferences(hooks: Webhooks, project: str, principal: Principal) -> PreferencesOut:
    requests = hooks.email_subscription(project, principal.user_id)
    digest = hooks.email_subscription(project, principal.user_id, DIGEST)
    return PreferencesOut(
        approval_requests=requests is not None, digest=digest is not None, email=principal.email
    )


@router.put("/me", response_model=PreferencesOut, summary="Set my notification preferences")
def set_my_preferences(
    project: str, body: PreferencesIn, principal: Reader, server: Server
) -> PreferencesOut:
    hooks = _hooks(server)
    if body.approval_requests is not None:
        hooks.set_approval_emails(project, by=principal, enabled=body.approval_requests)
    if body.digest is not None:
        hooks.set_approval_emails(project, by=principal, enabled=body.digest, format=DIGEST)
    return _preferences(hooks, project, principal)
