"""Electronic signature routes: sign with re-authentication, read a signature, verify it.

Under /api/v1/projects/{project}/signatures. Signing needs decision.approve and the
signer's credentials in the request (flowloom.auth.signatures says which); reading and
verifying need decision.read. A signature's id is the index of its ``signature.apply``
ledger entry.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.principals import Principal
from flowloom.auth.signatures import (
    ReauthCredentials,
    SignatureRecord,
    SignatureService,
    SignatureVerdict,
    SigningPolicy,
)
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState

__all__ = [
    "CredentialsIn",
    "SignIn",
    "SignatureOut",
    "VerdictOut",
    "credentials_of",
    "router",
    "signature_out",
    "signature_service",
    "verdict_out",
]

MAX_SIGNATURE_ID = 2**62

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/signatures",
    tags=["signatures"],
    responses=ERROR_RESPONSES,
)

Meaning = Literal["authored", "reviewed", "approved", "responsible"]


def signature_service(server: ServerState) -> SignatureService:
    """The signature service over the server's directory and ledgers.

    The segregation-of-duties policy is the server's ``signing_policy`` when it has one
    (the defaults otherwise: both rules on, SSO re-authentication within 5 minutes).
    ``tree:`` and ``commit:`` subjects are checked against the project's configured
    repository; without one their binding is reported ``unchecked``. Approvals and
    signatures count only when this server's keys attest them (`ServerState.trust`).
    """
    from flowloom.auth.reviews import SUBJECT_TYPE, AccessReviews
    from flowloom.server.routes.reports import git_subject_resolvers, project_repository

    policy = getattr(server, "signing_policy", None)
    subjects = git_subject_resolvers(lambda project: project_repository(server, project))
    subjects[SUBJECT_TYPE] = AccessReviews(server.directory, server.ledger).resolve
    return SignatureService(
        server.directory,
        server.ledger,
        policy=policy if isinstance(policy, SigningPolicy) else SigningPolicy(),
        subjects=subjects,
        trust_for=server.trust,
    )


class CredentialsIn(BaseModel):
    """Re-authentication for one signing; the password is checked and forgotten."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Your password. Not needed in a single sign-on session that "
        "re-authenticated at the identity provider within the last few minutes.",
    )
    email: str | None = Field(
        default=None,
        min_length=3,
        max_length=320,
        description="Your email: required at the first signing in a session and "
        "with every API-key signing; the password alone suffices later in a session.",
    )


class SignIn(CredentialsIn):
    subject: str = Field(
        min_length=3,
        max_length=240,
        description="What is signed, '<type>:<ref>'",
        examples=["decision:D-0123456789"],
    )
    content_digest: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="The digest of the content signed (a decision's content_digest)",
    )
    meaning: Meaning


class SignatureOut(BaseModel):
    id: int = Field(description="The index of the signature.apply ledger entry")
    project: str
    signer: str
    printed_name: str
    email: str | None
    meaning: Meaning
    statement: str
    subject: str
    content_digest: str
    signed_at: str
    method: str
    components: list[str]
    auth_session: str | None
    auth_key: str | None
    leaf_hash: str


class CheckOut(BaseModel):
    name: str
    status: Literal["pass", "fail", "unchecked"]
    detail: str


class VerdictOut(BaseModel):
    ok: bool
    signature: SignatureOut
    checks: list[CheckOut]
    reasons: list[str]
    current_digest: str | None
    receipt: str | None = Field(description="c2sp.org/tlog-proof@v1 of the signature entry")
    vkey: str | None = Field(description="The log's verifier key, to check the receipt")


def signature_out(record: SignatureRecord) -> SignatureOut:
    return SignatureOut.model_validate(record.to_json())


def verdict_out(verdict: SignatureVerdict) -> VerdictOut:
    return VerdictOut.model_validate(verdict.to_json())


def credentials_of(body: CredentialsIn, request: Request) -> ReauthCredentials:
    client = request.client.host if request.client is not None else "unknown"
    return ReauthCredentials(password=body.password, email=body.email, client=client)


SignatureId = Annotated[int, Path(ge=0, le=MAX_SIGNATURE_ID)]


@router.post(
    "",
    status_code=201,
    response_model=SignatureOut,
    summary="Apply an electronic signature (re-authentication required)",
)
def sign(
    project: str,
    body: SignIn,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("decision.approve"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> SignatureOut:
    record = signature_service(server).sign(
        principal,
        project,
        subject=body.subject,
        content_digest=body.content_digest,
        meaning=body.meaning,
        credentials=credentials_of(body, request),
    )
    return signature_out(record)


@router.get("/{sig_id}", response_model=SignatureOut, summary="Read one signature")
def get_signature(
    project: str,
    sig_id: SignatureId,
    principal: Annotated[Principal, Depends(authorize("decision.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> SignatureOut:
    return signature_out(signature_service(server).get(project, sig_id))


@router.get(
    "/{sig_id}/verify",
    response_model=VerdictOut,
    summary="Verify a signature: in the log, bound to the current content, valid signer",
)
def verify_signature(
    project: str,
    sig_id: SignatureId,
    principal: Annotated[Principal, Depends(authorize("decision.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> VerdictOut:
    return verdict_out(signature_service(server).verify(project, sig_id))
