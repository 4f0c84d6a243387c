"""GET /api/v1/me: who the credentials belong to, and what they were granted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from flowloom.auth.principals import Principal
from flowloom.server.deps import authenticated
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import MeOut
from flowloom.server.routes import API_PREFIX
from flowloom.server.views import me_out

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["identity"], responses=ERROR_RESPONSES)


@router.get("/me", response_model=MeOut, summary="The caller: user, grants, key scopes")
def me(principal: Annotated[Principal, Depends(authenticated)]) -> MeOut:
    return me_out(principal)
