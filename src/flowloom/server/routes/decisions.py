"""Decision routes: list and read a project's decisions, approve one with a signature.

Under /api/v1/projects/{project}/decisions. Reading needs decision.read. Approving needs
decision.approve and is a 21 CFR Part 11 electronic signature: the approver re-enters
credentials, the server records ``signature.apply`` over the decision's content digest
and then ``decision.approve`` naming that signature. The project's segregation-of-duties
policy refuses (403) approving one's own decision or one's own AI session's. Only
approvals this server's keys attest count (`ServerState.trust`): one appended around the
endpoint is listed with ``verified: false`` and never makes a decision accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from flowloom.auth.principals import Principal
from flowloom.decisions.records import Decision
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.signatures import (
    CredentialsIn,
    SignatureOut,
    credentials_of,
    signature_out,
    signature_service,
)
from flowloom.server.state import ServerState

__all__ = ["ApprovalOut", "ApproveIn", "ApprovedOut", "DecisionOut", "DecisionsOut", "router"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/decisions",
    tags=["decisions"],
    responses=ERROR_RESPONSES,
)

DecisionId = Annotated[str, Path(pattern=r"^D-[0-9a-f]{10}$", examples=["D-0123456789"])]


class ApprovalOut(BaseModel):
    approver: str
    meaning: str
    ts: str
    entry: int
    content_digest: str
    matches: bool = Field(description="The approval is of the decision's recorded content")
    signature: int | None = Field(
        default=None, description="The signature.apply entry the approval was signed with"
    )
    verified: bool = Field(
        description="The approver is proven (this server's endpoint recorded it after "
        "authenticating them, or their own key signed it); an unverified approval never "
        "counts"
    )
    via: str = Field(description="How it is proven: server, ssh; log or none when it is not")
    unverified_reason: str | None = Field(
        default=None, description="Why an unverified approval is not believed"
    )
    tree: str | None = Field(default=None, description="The git tree the approver signed")


class DecisionOut(BaseModel):
    id: str
    title: str
    context: str | None = None
    options: list[str]
    choice: str | None = None
    rationale: str | None = None
    requested_by: str | None = None
    session: str | None = None
    model: str | None = None
    files: list[str]
    tickets: list[str]
    risk: str | None = None
    prompt_entry: int | None = None
    response_entry: int | None = None
    status: Literal["proposed", "accepted"] = Field(
        description="accepted once a verified approval of this exact content counts"
    )
    created: str
    entry: int | None
    recorded_by: dict[str, Any]
    content_digest: str = Field(description="What a signature of this decision must name")
    approvals: list[ApprovalOut]


class DecisionsOut(BaseModel):
    decisions: list[DecisionOut]


class ApproveIn(CredentialsIn):
    meaning: Literal["approved", "reviewed"] = "approved"


class ApprovedOut(BaseModel):
    signature: SignatureOut
    approval: ApprovalOut


def decision_out(decision: Decision) -> DecisionOut:
    return DecisionOut.model_validate(decision.to_json())


@router.get("", response_model=DecisionsOut, summary="List the project's decisions")
def list_decisions(
    project: str,
    principal: Annotated[Principal, Depends(authorize("decision.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    status: Literal["proposed", "accepted"] | None = Query(
        None, description="Only decisions with this status"
    ),
) -> DecisionsOut:
    decisions = signature_service(server).book(project).list()
    if status is not None:
        decisions = [d for d in decisions if d.status == status]
    return DecisionsOut(decisions=[decision_out(d) for d in decisions])


@router.get("/{decision_id}", response_model=DecisionOut, summary="Read one decision")
def get_decision(
    project: str,
    decision_id: DecisionId,
    principal: Annotated[Principal, Depends(authorize("decision.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> DecisionOut:
    return decision_out(signature_service(server).book(project).get(decision_id))


@router.post(
    "/{decision_id}/approve",
    status_code=201,
    response_model=ApprovedOut,
    summary="Approve (or review) a decision with an electronic signature",
)
def approve_decision(
    project: str,
    decision_id: DecisionId,
    body: ApproveIn,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("decision.approve"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> ApprovedOut:
    done = signature_service(server).approve_decision(
        principal,
        project,
        decision_id,
        credentials=credentials_of(body, request),
        meaning=body.meaning,
    )
    return ApprovedOut(
        signature=signature_out(done.signature),
        approval=ApprovalOut.model_validate(done.approval.to_json()),
    )
