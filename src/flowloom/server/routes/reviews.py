"""Access review routes: open a campaign, decide its lines with e-signatures, close it.

Under /api/v1/projects/{project}/access-reviews for a project's roles (reading needs
audit.read, opening/deciding/closing project.admin) and /api/v1/access-reviews for the
whole instance ("*" grants only: audit.read to read, instance.admin to act). Deciding a
line is an electronic signature: the reviewer is the authenticated principal and
re-enters their credentials as for any signature (flowloom.auth.signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.auth.principals import Principal
from flowloom.auth.reviews import AccessReviews, Campaign, ReviewPolicy, VirtualKeyInfo
from flowloom.errors import NotFoundError
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.signatures import CredentialsIn, credentials_of, signature_service
from flowloom.server.state import ServerState

__all__ = ["reviews_service", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["access reviews"], responses=ERROR_RESPONSES)

P = "/projects/{project}/access-reviews"
INST = "/access-reviews"
CampaignId = Annotated[str, Path(pattern=r"^AR-[0-9a-f]{10}$")]
LineNo = Annotated[int, Path(ge=1, le=1_000_000)]


class _GatewayKeys:
    """The gateway's virtual keys, as a review needs them (`VirtualKeyStore`)."""

    def __init__(self, server: ServerState) -> None:
        self._server = server

    def active_keys(self) -> list[VirtualKeyInfo]:
        gateway = self._server.gateway
        if gateway is None:
            return []
        return [
            VirtualKeyInfo(k.id, k.prefix, k.name, k.owner_kind, k.owner, k.project)
            for k in gateway.all_keys()
        ]

    def revoke(self, key_id: str, actor: Mapping[str, Any], refs: Mapping[str, Any]) -> None:
        if self._server.gateway is None:
            return
        key = self._server.gateway.revoke_key(key_id, actor)
        self._server.audit(
            "auth.vkey_revoked",
            key.project,
            {
                "actor": dict(actor),
                "subject": key.id,
                "refs": {"vkey_id": key.id, "prefix": key.prefix, "owner": key.owner, **refs},
            },
        )


def reviews_service(server: ServerState) -> AccessReviews:
    """Access reviews over the server's directory, ledgers, signatures and gateway keys.

    The defaults for new campaigns are the server's ``review_policy`` when it has one.
    """
    policy = getattr(server, "review_policy", None)
    return AccessReviews(
        server.directory,
        server.ledger,
        signature_service(server),
        policy=policy if isinstance(policy, ReviewPolicy) else ReviewPolicy(),
        vkeys=_GatewayKeys(server) if server.gateway is not None else None,
    )


class OpenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dormant_days: int | None = Field(
        default=None, ge=1, le=3660, description="No activity for this long: dormant"
    )
    due_days: int | None = Field(default=None, ge=1, le=3660, description="Due this many days on")
    period_days: int | None = Field(
        default=None, ge=1, le=3660, description="The period covered, up to today"
    )


class DecideIn(CredentialsIn):
    decision: Literal["certify", "revoke"]
    reason: str | None = Field(default=None, max_length=1000)


class LineOut(BaseModel):
    campaign: str
    line: int
    user_id: str
    project: str
    role: str
    team: str | None
    name: str
    email: str | None
    kind: str
    disabled: bool
    last_activity: str | None
    dormant: bool
    api_keys: list[dict[str, Any]]
    virtual_keys: list[dict[str, Any]]
    decision: Literal["certify", "revoke"] | None
    reason: str | None
    decided_by: str | None
    decided_at: str | None
    signature: int | None = Field(description="The signature.apply entry of the decision")
    entry: int | None = Field(description="The access.review_decided entry")


class CampaignOut(BaseModel):
    id: str
    scope: str = Field(description='A project, or "*" for the instance')
    status: Literal["open", "closed"]
    overdue: bool
    period_start: str
    period_end: str
    due_at: str
    dormant_days: int
    opened_by: str
    opened_at: str
    opened_entry: int | None
    closed_by: str | None
    closed_at: str | None
    closed_entry: int | None
    counts: dict[str, int]
    lines: list[LineOut] | None = None


class CampaignsOut(BaseModel):
    campaigns: list[CampaignOut]


class DormantOut(BaseModel):
    days: int
    accounts: list[dict[str, Any]]


def _out(reviews: AccessReviews, campaign: Campaign, *, with_lines: bool = True) -> CampaignOut:
    now = reviews.now()
    return CampaignOut.model_validate(campaign.to_json(now, with_lines=with_lines))


def _campaign(reviews: AccessReviews, scope: str, campaign_id: str) -> Campaign:
    """The campaign, when it belongs to `scope`: another scope's is not found here."""
    campaign = reviews.get(campaign_id)
    if campaign.scope != scope:
        raise NotFoundError(f"no access review campaign {campaign_id!r} of {scope!r}")
    return campaign


def _list(server: ServerState, scope: str, status: str | None) -> CampaignsOut:
    reviews = reviews_service(server)
    found = reviews.find(scope, status=status)
    return CampaignsOut(campaigns=[_out(reviews, c, with_lines=False) for c in found])


def _open(server: ServerState, principal: Principal, scope: str, body: OpenIn) -> CampaignOut:
    reviews = reviews_service(server)
    campaign = reviews.open(
        principal,
        scope,
        dormant_days=body.dormant_days,
        due_days=body.due_days,
        period_days=body.period_days,
    )
    return _out(reviews, campaign)


def _decide(
    server: ServerState,
    principal: Principal,
    scope: str,
    campaign_id: str,
    line: int,
    body: DecideIn,
    request: Request,
) -> LineOut:
    reviews = reviews_service(server)
    _campaign(reviews, scope, campaign_id)
    decided = reviews.decide(
        principal,
        campaign_id,
        line,
        body.decision,
        credentials=credentials_of(body, request),
        reason=body.reason,
    )
    return LineOut.model_validate(decided.to_json())


def _close(server: ServerState, principal: Principal, scope: str, campaign_id: str) -> CampaignOut:
    reviews = reviews_service(server)
    _campaign(reviews, scope, campaign_id)
    return _out(reviews, reviews.close(principal, campaign_id))


Status = Annotated[Literal["open", "closed"] | None, Query()]
Days = Annotated[int | None, Query(ge=1, le=3660)]

# -- a project's roles -------------------------------------------------------------------


@router.get(P, response_model=CampaignsOut, summary="The project's access review campaigns")
def list_project(
    project: str,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    status: Status = None,
) -> CampaignsOut:
    return _list(server, project, status)


@router.post(P, status_code=201, response_model=CampaignOut, summary="Open an access review")
def open_project(
    project: str,
    body: OpenIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    return _open(server, principal, project, body)


@router.get(P + "/dormant", response_model=DormantOut, summary="Dormant accounts with a role")
def dormant_project(
    project: str,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    days: Days = None,
) -> DormantOut:
    reviews = reviews_service(server)
    chosen = days or reviews.policy.dormant_days
    return DormantOut(days=chosen, accounts=reviews.dormant(project, days=chosen))


@router.get(P + "/{campaign}", response_model=CampaignOut, summary="A campaign and its lines")
def show_project(
    project: str,
    campaign: CampaignId,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    reviews = reviews_service(server)
    return _out(reviews, _campaign(reviews, project, campaign))


@router.post(
    P + "/{campaign}/lines/{line}",
    response_model=LineOut,
    summary="Certify or revoke a line (e-signature; re-authentication required)",
)
def decide_project(
    project: str,
    campaign: CampaignId,
    line: LineNo,
    body: DecideIn,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> LineOut:
    return _decide(server, principal, project, campaign, line, body, request)


@router.post(P + "/{campaign}/close", response_model=CampaignOut, summary="Close a campaign")
def close_project(
    project: str,
    campaign: CampaignId,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    return _close(server, principal, project, campaign)


# -- the instance: every role on every project -----------------------------------------


@router.get(INST, response_model=CampaignsOut, summary="The instance's access review campaigns")
def list_instance(
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    status: Status = None,
) -> CampaignsOut:
    return _list(server, ALL_PROJECTS, status)


@router.post(INST, status_code=201, response_model=CampaignOut, summary="Open an instance review")
def open_instance(
    body: OpenIn,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    return _open(server, principal, ALL_PROJECTS, body)


@router.get(INST + "/dormant", response_model=DormantOut, summary="Dormant accounts, instance-wide")
def dormant_instance(
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    days: Days = None,
) -> DormantOut:
    reviews = reviews_service(server)
    chosen = days or reviews.policy.dormant_days
    return DormantOut(days=chosen, accounts=reviews.dormant(ALL_PROJECTS, days=chosen))


@router.get(INST + "/{campaign}", response_model=CampaignOut, summary="An instance campaign")
def show_instance(
    campaign: CampaignId,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    reviews = reviews_service(server)
    return _out(reviews, _campaign(reviews, ALL_PROJECTS, campaign))


@router.post(
    INST + "/{campaign}/lines/{line}",
    response_model=LineOut,
    summary="Certify or revoke an instance line (e-signature)",
)
def decide_instance(
    campaign: CampaignId,
    line: LineNo,
    body: DecideIn,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> LineOut:
    return _decide(server, principal, ALL_PROJECTS, campaign, line, body, request)


@router.post(
    INST + "/{campaign}/close", response_model=CampaignOut, summary="Close an instance one"
)
def close_instance(
    campaign: CampaignId,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> CampaignOut:
    return _close(server, principal, ALL_PROJECTS, campaign)
