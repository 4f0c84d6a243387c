"""Outbound webhooks of a project: subscriptions, their deliveries, tests, redeliveries.

Every route is under /api/v1/projects/{project}/webhooks and needs project.admin: a
subscription sends the project's record out of the server, and its delivery history
names where. The secret comes back once, from POST (and from PATCH with
``rotate_secret``); every change is recorded in the project's ledger
(flowloom.webhooks.service).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.principals import Principal
from flowloom.errors import ConfigError
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import MAX_INDEX
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.webhooks.records import Attempt, Delivery, Subscription
from flowloom.webhooks.service import Created, Webhooks

__all__ = ["router"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/webhooks",
    tags=["webhooks"],
    responses=ERROR_RESPONSES,
)

Admin = Annotated[Principal, Depends(authorize("project.admin"))]
Server = Annotated[ServerState, Depends(get_server)]
WebhookId = Annotated[str, Path(max_length=100)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_INDEX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookIn(_Strict):
    url: str = Field(max_length=2000, description="An absolute http(s) URL")
    kinds: list[str] = Field(
        min_length=1, max_length=100, description="Event kinds, 'family.*' patterns, or '*'"
    )
    description: str = ""
    include_bodies: bool = Field(
        False, description="Send entries' stored (redacted) bodies; never erased ones"
    )
    format: Literal["cloudevents", "slack", "teams"] = Field(
        "cloudevents",
        description="CloudEvents JSON, or a Slack incoming webhook / Teams workflow webhook",
    )


class WebhookPatch(_Strict):
    url: str | None = Field(None, max_length=2000)
    kinds: list[str] | None = Field(None, min_length=1, max_length=100)
    description: str | None = None
    include_bodies: bool | None = None
    enabled: bool | None = None
    rotate_secret: bool = False


class WebhookOut(BaseModel):
    id: str
    project: str
    url: str
    kinds: list[str]
    description: str
    include_bodies: bool
    enabled: bool
    format: str
    created_by: str
    created_at: str
    updated_at: str
    secret: str | None = Field(
        None, description="The signing secret (whsec_...): only in the answer that made it"
    )


class AttemptOut(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    webhook: str
    message_id: str
    kind: str
    ledger_index: int | None
    status: str
    attempts: int
    next_attempt_at: float | None
    redelivery_of: int | None
    created_at: str
    finished_at: str | None
    history: list[AttemptOut] = []


def _webhooks(server: ServerState) -> Webhooks:
    if server.webhooks is None:
        raise ConfigError("this server was built without webhooks")
    return server.webhooks


def _out(sub: Subscription, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=sub.id,
        project=sub.project,
        url=sub.url,
        kinds=list(sub.kinds),
        description=sub.description,
        include_bodies=sub.include_bodies,
        enabled=sub.enabled,
        format=sub.format,
        created_by=sub.created_by,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
        secret=secret,
    )


def _delivery_out(d: Delivery, history: list[Attempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook=d.subscription_id,
        message_id=d.message_id,
        kind=d.kind,
        ledger_index=d.ledger_index,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        redelivery_of=d.redelivery_of,
        created_at=d.created_at,
        finished_at=d.finished_at,
        history=[
            AttemptOut(
                attempt=a.attempt,
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in history or []
        ],
    )


@router.get("", response_model=list[WebhookOut], summary="The project's webhooks")
def list_webhooks(project: str, principal: Admin, server: Server) -> list[WebhookOut]:
    return [_out(s) for s in _webhooks(server).subscriptions(project)]


@router.post(
    "",
    status_code=201,
    response_model=WebhookOut,
    summary="Subscribe a URL to the project's events (the secret is shown once)",
)
def create_webhook(project: str, body: WebhookIn, principal: Admin, server: Server) -> WebhookOut:
    made = _webhooks(server).create(
        project,
        url=body.url,
        kinds=body.kinds,
        by=principal,
        description=body.description,
        include_bodies=body.include_bodies,
        format=body.format,
    )
    return _out(made.subscription, made.secret)


@router.get("/{webhook_id}", response_model=WebhookOut, summary="One webhook")
def get_webhook(
    project: str, webhook_id: WebhookId, principal: Admin, server: Server
) -> WebhookOut:
    return _out(_webhooks(server).get(project, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change a webhook")
def update_webhook(
    project: str, webhook_id: WebhookId, body: WebhookPatch, principal: Admin, server: Server
) -> WebhookOut:
    result = _webhooks(server).update(
        project,
        webhook_id,
        by=principal,
        url=body.url,
        kinds=body.kinds,
        description=body.description,
        include_bodies=body.include_bodies,
        enabled=body.enabled,
        rotate_secret=body.rotate_secret,
    )
    if isinstance(result, Created):
        return _out(result.subscription, result.secret)
    return _out(result)


@router.delete(
    "/{webhook_id}", status_code=204, response_class=Response, summary="Delete a webhook"
)
def delete_webhook(
    project: str, webhook_id: WebhookId, principal: Admin, server: Server
) -> Response:
    _webhooks(server).delete(project, webhook_id, by=principal)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    summary="Queue a test event for the webhook",
)
def test_webhook(
    project: str, webhook_id: WebhookId, principal: Admin, server: Server
) -> DeliveryOut:
    return _delivery_out(_webhooks(server).send_test(project, webhook_id, by=principal))


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryOut],
    summary="The webhook's deliveries and their attempts, newest first",
)
def webhook_deliveries(
    project: str,
    webhook_id: WebhookId,
    principal: Admin,
    server: Server,
    limit: int = Query(100, ge=1, le=1000),
) -> list[DeliveryOut]:
    hooks = _webhooks(server)
    hooks.get(project, webhook_id)
    return [_delivery_out(d, h) for d, h in hooks.deliveries(project, webhook_id, limit=limit)]


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    summary="Queue a delivered or dead-lettered message again",
)
def redeliver(
    project: str, delivery_id: DeliveryId, principal: Admin, server: Server
) -> DeliveryOut:
    return _delivery_out(_webhooks(server).redeliver(project, delivery_id, by=principal))
