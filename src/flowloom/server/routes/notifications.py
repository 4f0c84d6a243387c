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
    approval_requests: bool


class PreferencesOut(BaseModel):
    approval_requests: bool
    """Email me when a decision is recorded that may need my approval."""
    email: str | None
    """Where the emails go (the account's address, looked up at each send)."""


def _hooks(server: ServerState) -> Webhooks:
    if server.webhooks is None:
        raise ConfigError("this server was built without notifications")
    return server.webhooks


@router.get("/me", response_model=PreferencesOut, summary="My notification preferences")
def my_preferences(project: str, principal: Reader, server: Server) -> PreferencesOut:
    found = _hooks(server).email_subscription(project, principal.user_id)
    return PreferencesOut(approval_requests=found is not None, email=principal.email)


@router.put("/me", response_model=PreferencesOut, summary="Set my notification preferences")
def set_my_preferences(
    project: str, body: PreferencesIn, principal: Reader, server: Server
) -> PreferencesOut:
    enabled = _hooks(server).set_approval_emails(
        project, by=principal, enabled=body.approval_requests
    )
    return PreferencesOut(approval_requests=enabled, email=principal.email)
