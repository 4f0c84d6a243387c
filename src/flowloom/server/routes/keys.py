"""API keys: create, list, rotate and revoke one's own (key.self), or anyone's (key.admin).

Listing and revoking another user's keys needs key.admin instance-wide: keys belong to
users, not to projects. Making a secret for someone else (create, rotate) is narrower:
only for a service account, and only by an instance administrator, since whoever holds
the secret acts as its owner. The Directory also keeps a new key within the scopes of
the key that made it. The secret is in the response once and never again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.auth.principals import Principal
from flowloom.server.deps import authenticated, get_server, require
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import ApiKeyOut, KeyCreateIn, KeyRotateIn, KeySecretOut
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.views import key_out

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX + "/keys", tags=["keys"], responses=ERROR_RESPONSES)


def _require_minting(server: ServerState, principal: Principal, *, owner_id: str) -> None:
    require(server, principal, owner_id=owner_id)
    if owner_id != principal.user_id:
        server.authorizer.check(principal, "instance.admin", ALL_PROJECTS)


@router.get("", response_model=list[ApiKeyOut], summary="API keys (yours, or a user's)")
def list_keys(
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
    user_id: str | None = Query(None, min_length=1, max_length=200),
) -> list[ApiKeyOut]:
    owner = user_id or principal.user_id
    require(server, principal, owner_id=owner)
    return [key_out(k) for k in server.directory.list_keys(owner)]


@router.post("", status_code=201, response_model=KeySecretOut, summary="Create an API key")
def create_key(
    body: KeyCreateIn,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
) -> KeySecretOut:
    owner = body.user_id or principal.user_id
    _require_minting(server, principal, owner_id=owner)
    key, secret = server.directory.create_key(
        owner, name=body.name, scopes=body.scopes, expires_at=body.expires_at, by=principal
    )
    return KeySecretOut(key=key_out(key), secret=secret)


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=KeySecretOut,
    summary="Replace a key; the old one keeps working for the overlap",
)
def rotate_key(
    key_id: str,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
    body: KeyRotateIn | None = None,
) -> KeySecretOut:
    existing = server.directory.get_key(key_id)
    _require_minting(server, principal, owner_id=existing.user_id)
    overlap = timedelta(seconds=(body or KeyRotateIn()).overlap_seconds)
    key, secret = server.directory.rotate_key(key_id, overlap=overlap, by=principal)
    return KeySecretOut(key=key_out(key), secret=secret)


@router.delete("/{key_id}", status_code=204, response_class=Response, summary="Revoke a key")
def revoke_key(
    key_id: str,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    existing = server.directory.get_key(key_id)
    require(server, principal, owner_id=existing.user_id)
    server.directory.revoke_key(key_id, by=principal)
    return Response(status_code=204)
