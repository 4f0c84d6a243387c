"""Liveness, readiness and metrics: what load balancers and Prometheus ask."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from flowloom.server import INSTANCE_PROJECT
from flowloom.server.deps import get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.metrics import CONTENT_TYPE
from flowloom.server.state import ServerState

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database answers",
    responses={503: ERROR_RESPONSES[503]},
)
def readyz(server: Annotated[ServerState, Depends(get_server)]) -> Health:
    server.store.size(INSTANCE_PROJECT)  # StoreError → 503
    server.idempotency.ping()
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
)
def metrics(server: Annotated[ServerState, Depends(get_server)]) -> Response:
    return Response(server.metrics.render(), media_type=CONTENT_TYPE)
