"""Users and teams: instance administration ("*" grants only), and teams' roles on a
project (project.admin there, as for a person's roles).

Offboarding rules live in the Directory, so the API, the CLI and the web pages share
them: nobody disables or deletes their own account, only an instance owner acts on an
instance owner, and the last instance owner stays. Every change is an ``auth.*`` event
in the ledger with the caller as actor.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from flowloom.auth.principals import Principal
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import GrantOut, TeamIn, TeamOut, UserIn, UserOut
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.views import grant_out, team_out, user_out

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["people"], responses=ERROR_RESPONSES)

UserId = Annotated[str, Path(min_length=1, max_length=200)]
TeamName = Annotated[str, Path(min_length=1, max_length=200)]
InstanceAdmin = Annotated[Principal, Depends(authorize("instance.admin"))]
ProjectAdmin = Annotated[Principal, Depends(authorize("project.admin"))]
Server = Annotated[ServerState, Depends(get_server)]


@router.get("/users", response_model=list[UserOut], summary="Every user and service account")
def list_users(principal: InstanceAdmin, server: Server) -> list[UserOut]:
    """Deleted users are listed too: their id stays, their email and name are erased."""
    return [user_out(u) for u in server.directory.list_users()]


@router.post("/users", status_code=201, response_model=UserOut, summary="Create a user")
def create_user(body: UserIn, principal: InstanceAdmin, server: Server) -> UserOut:
    user = server.directory.create_user(
        body.email, body.name, password=body.password, kind=body.kind, by=principal
    )
    return user_out(user)


@router.post(
    "/users/{user_id}/disable",
    response_model=UserOut,
    summary="Disable a user: their sessions end and their API keys are revoked at once",
)
def disable_user(user_id: UserId, principal: InstanceAdmin, server: Server) -> UserOut:
    """Recorded as `auth.user_disabled`. Refused (403) for your own account and for an
    instance owner unless you are one, and (409) for the last instance owner."""
    before = server.directory.get_user(user_id)
    user = server.directory.disable_user(user_id, by=principal)
    if server.provisioning is not None:
        server.provisioning.run_cut_off(before, principal, "disabled")  # gateway keys too
    return user_out(user)


@router.post(
    "/users/{user_id}/enable",
    response_model=UserOut,
    summary="Enable a disabled user: sign-in works again; revoked API keys stay revoked",
)
def enable_user(user_id: UserId, principal: InstanceAdmin, server: Server) -> UserOut:
    """Recorded as `auth.user_enabled`. A deleted user cannot be enabled (409)."""
    return user_out(server.directory.enable_user(user_id, by=principal))


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a user: erase their personal data, keep their id for the ledger",
)
def delete_user(user_id: UserId, principal: InstanceAdmin, server: Server) -> Response:
    """Email, name, password and single sign-on link are erased, sessions end, API keys
    are revoked, roles and team memberships removed; the ledger is not edited, and its
    past events still name the id, which reads as a deleted user. Recorded as
    `auth.user_deleted` (and `auth.role_revoked` per role). Same refusals as disabling."""
    before = server.directory.get_user(user_id)
    server.directory.delete_user(user_id, by=principal)
    if server.provisioning is not None:
        server.provisioning.run_cut_off(before, principal, "deleted")  # gateway keys too
    return Response(status_code=204)


@router.get(
    "/users/{user_id}/grants",
    response_model=list[GrantOut],
    summary="A user's effective roles, direct and through teams",
)
def user_grants(user_id: UserId, principal: InstanceAdmin, server: Server) -> list[GrantOut]:
    return [grant_out(g) for g in server.directory.effective_grants(user_id)]


@router.get("/teams", response_model=list[TeamOut], summary="Every team")
def list_teams(principal: InstanceAdmin, server: Server) -> list[TeamOut]:
    return [team_out(t) for t in server.directory.list_teams()]


@router.post("/teams", status_code=201, response_model=TeamOut, summary="Create a team")
def create_team(body: TeamIn, principal: InstanceAdmin, server: Server) -> TeamOut:
    return team_out(server.directory.create_team(body.name, by=principal))


@router.put(
    "/teams/{team}/members/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Add a user to a team",
)
def add_team_member(
    team: TeamName, user_id: UserId, principal: InstanceAdmin, server: Server
) -> Response:
    server.directory.add_member(team, user_id, by=principal)
    return Response(status_code=204)


@router.get(
    "/teams/{team}/roles", response_model=list[GrantOut], summary="A team's roles, by project"
)
def team_roles(team: TeamName, principal: InstanceAdmin, server: Server) -> list[GrantOut]:
    return [grant_out(g) for g in server.directory.team_grants(team=team)]


@router.put(
    "/projects/{project}/teams/{team}/{role}",
    status_code=204,
    response_class=Response,
    summary="Grant a team a role on the project (every member gets it)",
)
def grant_team_role(
    project: str, team: TeamName, role: str, principal: ProjectAdmin, server: Server
) -> Response:
    """Recorded as `auth.role_granted` in the project's ledger. Idempotent."""
    server.directory.grant_team(team, project, role, by=principal)
    return Response(status_code=204)


@router.delete(
    "/projects/{project}/teams/{team}/{role}",
    status_code=204,
    response_class=Response,
    summary="Revoke a team's role on the project",
)
def revoke_team_role(
    project: str, team: TeamName, role: str, principal: ProjectAdmin, server: Server
) -> Response:
    """Recorded as `auth.role_revoked` in the project's ledger; 404 if not granted."""
    server.directory.revoke_team(team, project, role, by=principal)
    return Response(status_code=204)
