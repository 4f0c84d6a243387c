"""SIEM destination routes: list with status, add/change, remove, send a test event.

Under /api/v1/projects/{project}/siem for a project's destinations (its own log) and
/api/v1/siem for the instance's (every log; "*" grants only). Reading needs audit.read,
changing project.admin (instance.admin for the instance's). Secrets go in, never out:
the answer says only whether one is set. Every change is a config.change in the ledger,
with the authenticated principal as its actor.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.auth.principals import Principal
from flowloom.errors import StoreError
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES, ErrorBody
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.siem.service import DestinationStatus, Siem

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["siem"], responses=ERROR_RESPONSES)

P = "/projects/{project}/siem"
INST = "/siem"
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
_UNDELIVERED: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "The receiver did not take the test event."}
}


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["syslog", "hec", "elastic"]
    target: str = Field(max_length=2048, description="tcp://host:port, tls://host:port or a URL")
    format: Literal["rfc5424", "cef", "ocsf"] | None = None
    secret: str | None = Field(
        default=None,
        max_length=4096,
        description="HEC token or Elastic API key; omitted keeps the stored one, '' removes it",
    )
    ca_pem: str | None = Field(default=None, max_length=65536)
    server_name: str | None = Field(default=None, max_length=255)
    index: str | None = Field(default=None, max_length=255)
    sourcetype: str | None = Field(default=None, max_length=255)


def _siem(server: ServerState) -> Siem:
    if server.siem is None:
        raise StoreError("the SIEM feed is not set up on this server")
    return server.siem


def _out(row: DestinationStatus) -> dict[str, Any]:
    return {
        **row.destination.public(),
        "cursors": {
            log: {"next_index": c.next_index, "delivered": c.delivered, "last_error": c.last_error}
            for log, c in row.cursors.items()
        },
        "behind": dict(row.behind),
    }


def _list(server: ServerState, project: str) -> dict[str, Any]:
    return {"destinations": [_out(r) for r in _siem(server).status(project)]}


def _put(server: ServerState, project: str, name: str, body: DestinationIn, by: Principal) -> Any:
    options = {
        "ca_pem": body.ca_pem,
        "server_name": body.server_name,
        "index": body.index,
        "sourcetype": body.sourcetype,
    }
    dest = _siem(server).configure(
        project,
        name,
        kind=body.kind,
        target=body.target,
        format=body.format,
        secret=body.secret,
        options={k: v for k, v in options.items() if v},
        actor=by.actor(),
    )
    return dest.public()


def _test(server: ServerState, project: str, name: str) -> dict[str, Any]:
    event = _siem(server).send_test(project, name)
    return {"sent": event.kind, "uid": event.uid}


@router.get(P, summary="A project's SIEM destinations and where their cursors stand")
def list_destinations(
    project: str,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    return _list(server, project)


@router.put(P + "/{name}", summary="Add or change a SIEM destination (recorded)")
def put_destination(
    project: str,
    name: Name,
    body: DestinationIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Any:
    return _put(server, project, name, body, principal)


@router.delete(P + "/{name}", summary="Remove a SIEM destination (recorded)")
def delete_destination(
    project: str,
    name: Name,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    _siem(server).remove(project, name, actor=principal.actor())
    return {"removed": name}


@router.post(
    P + "/{name}/test",
    summary="Send a siem.test event to the destination now",
    responses=_UNDELIVERED,
)
def test_destination(
    project: str,
    name: Name,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    return _test(server, project, name)


@router.get(INST, summary="The instance's SIEM destinations (every project's events)")
def list_instance_destinations(
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    return _list(server, INSTANCE_PROJECT)


@router.put(INST + "/{name}", summary="Add or change an instance SIEM destination (recorded)")
def put_instance_destination(
    name: Name,
    body: DestinationIn,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Any:
    return _put(server, INSTANCE_PROJECT, name, body, principal)


@router.delete(INST + "/{name}", summary="Remove an instance SIEM destination (recorded)")
def delete_instance_destination(
    name: Name,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    _siem(server).remove(INSTANCE_PROJECT, name, actor=principal.actor())
    return {"removed": name}


@router.post(
    INST + "/{name}/test",
    summary="Send a siem.test event to the destination now",
    responses=_UNDELIVERED,
)
def test_instance_destination(
    name: Name,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> dict[str, Any]:
    return _test(server, INSTANCE_PROJECT, name)
