"""Users and teams: instance administration ("*" grants only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from flowloom.auth.principals import Principal
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import TeamIn, TeamOut, UserIn, UserOut
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.views import team_out, user_out

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["people"], responses=ERROR_RESPONSES)


@router.get("/users", response_model=list[UserOut], summary="Every user and service account")
def list_users(
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> list[UserOut]:
    return [user_out(u) for u in server.directory.list_users()]


@router.post("/users", status_code=201, response_model=UserOut, summary="Create a user")
def create_user(
    body: UserIn,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> UserOut:
    user = server.directory.create_user(
        body.email, body.name, password=body.password, kind=body.kind, by=principal
    )
    return user_out(user)


@router.post("/teams", status_code=201, response_model=TeamOut, summary="Create a team")
def create_team(
    body: TeamIn,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> TeamOut:
    return team_out(server.directory.create_team(body.name, by=principal))


@router.put(
    "/teams/{team}/members/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Add a user to a team",
)
def add_team_member(
    team: str,
    user_id: str,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    server.directory.add_member(team, user_id, by=principal)
    return Response(status_code=204)
