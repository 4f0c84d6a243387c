"""Code-host integrations: per-project settings, verdicts to publish, signed webhooks.

Under /api/v1/projects/{project}/integrations: reading the settings (never a secret)
and the delivery queue needs project.read; changing them, the "send test" call and
reading branch protection need project.admin; queueing a `flowloom check` verdict for
the code host needs ledger.append (the CI's service account). The webhook receivers
under /api/v1/integrations/ take no API key: the code host's signature (GitHub's
X-Hub-Signature-256) or token (GitLab's X-Gitlab-Token) is the authentication, checked
against the secret of each project configured for the sending repository.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.principals import Principal
from flowloom.errors import AuthError, InputError, NotFoundError
from flowloom.integrations.publish import DecisionLine, Target
from flowloom.integrations.service import Integrations
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES, ErrorBody
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["integrations"], responses=ERROR_RESPONSES)

P = "/projects/{project}/integrations"
Host = Literal["github", "gitlab", "bitbucket"]
_MAX_DECISIONS = 200


class IntegrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(
        description="repo, api_url, app_id, installation_id, protected_branches, user_map, "
        "details_url (docs/integrations.md)"
    )
    secrets: dict[str, str | None] = Field(
        default_factory=dict,
        description="token, private_key, webhook_secret; null removes one, absent keeps it",
    )


class IntegrationOut(BaseModel):
    project: str
    kind: str
    settings: dict[str, Any]
    secrets: dict[str, bool] = Field(description="which secrets are set (never their value)")
    updated_at: str


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: dict[str, Any] = Field(description="the output of `flowloom check --json`")
    sha: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$", description="the head commit")
    number: int | None = Field(None, ge=1, description="the pull or merge request")
    branch: str | None = Field(None, max_length=255, description="the target branch")
    details_url: str | None = Field(None, max_length=2000)
    files: dict[str, list[str]] = Field(
        default_factory=dict, description="commit → files it changed (for annotations)"
    )


class QueuedOut(BaseModel):
    queued: list[int]


class DeliveryOut(BaseModel):
    id: int
    kind: str
    op: str
    dedupe: str
    state: str
    attempts: int
    next_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None


class ReceivedOut(BaseModel):
    event: str
    projects: list[str]
    recorded: str | None


def integrations_of(server: ServerState) -> Integrations:
    if server.integrations is None:
        raise NotFoundError("integrations are not set up on this server")
    return server.integrations


def _out(config: Any) -> IntegrationOut:
    return IntegrationOut(**config.public())


@router.get(P, response_model=list[IntegrationOut], summary="The project's integrations")
def list_integrations(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> list[IntegrationOut]:
    return [_out(c) for c in integrations_of(server).store.of_project(project)]


@router.put(P + "/{kind}", response_model=IntegrationOut, summary="Set an integration")
def put_integration(
    project: str,
    kind: Host,
    body: IntegrationIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> IntegrationOut:
    config = integrations_of(server).configure(
        project, kind, body.settings, body.secrets, actor=principal.actor()
    )
    return _out(config)


@router.delete(P + "/{kind}", status_code=204, response_class=Response, summary="Remove one")
def delete_integration(
    project: str,
    kind: Host,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    if not integrations_of(server).remove(project, kind, actor=principal.actor()):
        raise NotFoundError(f"project {project} has no {kind} integration")
    return Response(status_code=204)


@router.post(P + "/{kind}/test", summary="Send a test call to the code host")
def test_integration(
    project: str,
    kind: Host,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    return integrations_of(server).send_test(project, kind, actor=principal.actor())


@router.post(
    P + "/{kind}/verdicts",
    status_code=202,
    response_model=QueuedOut,
    summary="Queue a `flowloom check` verdict for the code host",
)
def publish_verdict(
    project: str,
    kind: Host,
    body: VerdictIn,
    principal: Annotated[Principal, Depends(authorize("ledger.append"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> QueuedOut:
    integrations = integrations_of(server)
    integrations.config(project, kind)  # 404 before reading the ledger
    lines = _decisions(server, project, body.verdict)
    target = Target(body.sha, body.number, body.branch)
    queued = integrations.publish(
        project, kind, body.verdict, target, lines, details_url=body.details_url, files=body.files
    )
    return QueuedOut(queued=queued)


def _decisions(server: ServerState, project: str, verdict: dict[str, Any]) -> list[DecisionLine]:
    """The decisions the verdict's commits name, as this server's ledger records them."""
    from flowloom.decisions.records import DecisionBook

    names: list[str] = []
    for commit in verdict.get("commits") or []:
        for name in commit.get("decisions") or [] if isinstance(commit, dict) else []:
            if isinstance(name, str) and name not in names:
                names.append(name)
    book = DecisionBook(server.ledger(project), trust=server.trust(project))
    lines: list[DecisionLine] = []
    for name in names[:_MAX_DECISIONS]:
        try:
            decision = book.get(name)
        except (NotFoundError, InputError):
            lines.append(DecisionLine(name, "(not in this project's ledger)", "unknown"))
            continue
        approvals = tuple(a.describe() for a in decision.approvals)
        lines.append(DecisionLine(decision.id, decision.title, decision.status, approvals))
    return lines


@router.get(
    P + "/{kind}/deliveries", response_model=list[DeliveryOut], summary="The outbound queue"
)
def list_deliveries(
    project: str,
    kind: Host,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    limit: int = Query(50, ge=1, le=500),
) -> list[DeliveryOut]:
    items = integrations_of(server).items(project, limit=limit)
    return [DeliveryOut(**i.to_json()) for i in items if i.kind == kind]


@router.post(
    P + "/github/protection",
    summary="Read a branch's protection on GitHub and record it",
    responses={502: {"model": ErrorBody, "description": "GitHub refused or did not answer."}},
)
def read_protection(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
    branch: str = Query(..., min_length=1, max_length=255),
) -> dict[str, Any]:
    settings = integrations_of(server).branch_protection(project, branch, actor=principal.actor())
    return {"branch": branch, "protected": settings is not None, "settings": settings}


async def _body(request: Request) -> bytes:
    return await request.body()


@router.post(
    "/integrations/github/webhook",
    response_model=ReceivedOut,
    summary="GitHub's webhook (signed with X-Hub-Signature-256)",
)
def github_webhook(
    request: Request,
    body: Annotated[bytes, Depends(_body)],
    server: Annotated[ServerState, Depends(get_server)],
) -> ReceivedOut:
    if not request.headers.get("x-hub-signature-256"):
        raise AuthError("a GitHub webhook needs X-Hub-Signature-256 (set a webhook secret)")
    received = integrations_of(server).receive_github(body, request.headers)
    return ReceivedOut(
        event=received.event, projects=list(received.projects), recorded=received.recorded
    )


@router.post(
    "/integrations/gitlab/webhook",
    response_model=ReceivedOut,
    summary="GitLab's webhook (authenticated by X-Gitlab-Token)",
)
def gitlab_webhook(
    request: Request,
    body: Annotated[bytes, Depends(_body)],
    server: Annotated[ServerState, Depends(get_server)],
) -> ReceivedOut:
    if request.headers.get("x-gitlab-token") is None:
        raise AuthError("a GitLab webhook needs X-Gitlab-Token (set a secret token)")
    received = integrations_of(server).receive_gitlab(body, request.headers)
    return ReceivedOut(
        event=received.event, projects=list(received.projects), recorded=received.recorded
    )
