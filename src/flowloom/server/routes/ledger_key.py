"""Rotating a project log's signing key: the one route that changes which key signs.

A log's key is pinned by its first ``key.generated`` event (`flowloom.ledger.keyring`);
only this route (and `flowloom log rotate-key`) changes it, by a ``key.rotated`` event
attested by the old key. It needs ``ledger.key`` (owners and admins). The instance's own
log is not rotated here: it is read-only over the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.principals import Principal
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState

__all__ = ["RotateIn", "RotateOut", "router"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/ledger", tags=["ledger"], responses=ERROR_RESPONSES
)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class RotateOut(BaseModel):
    old_vkey: str
    new_vkey: str
    index: int
    """The ``key.rotated`` entry."""
    checkpoint: int
    """The size of the checkpoint the new key signed, covering the rotation."""


@router.post(
    "/key/rotate",
    response_model=RotateOut,
    summary="Replace the log's signing key (key.rotated, attested by the old key)",
)
def rotate_key(
    project: str,
    body: RotateIn,
    principal: Annotated[Principal, Depends(authorize("ledger.key"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> RotateOut:
    rotation = server.ledger(project).rotate_key(reason=body.reason, actor=principal.actor())
    return RotateOut(
        old_vkey=rotation.old.vkey,
        new_vkey=rotation.new.vkey,
        index=rotation.index,
        checkpoint=rotation.checkpoint.size,
    )
