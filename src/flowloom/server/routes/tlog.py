"""The tile API: each project's log in the C2SP tlog-tiles layout, for any tiles client.

Under /api/v1/projects/{project}/tlog: ``checkpoint`` (the latest signed checkpoint,
with the witnesses' cosignature lines appended), ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``. Reading needs ledger.read on the project, unless the
project's log is public (``PUT .../tlog/settings``, project.admin, recorded in the
ledger as ``auth.project_settings``); then anyone may read, signed in or not. Full
tiles never change: they are served with a year's immutable cache lifetime; partial
tiles and the checkpoint change as the log grows and are cached for seconds. Reads
never sign: a log that has never been checkpointed has no checkpoint here yet.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from flowloom.auth.principals import Principal
from flowloom.errors import NotFoundError
from flowloom.ledger.tileread import read_tile
from flowloom.ledger.tiles import parse_tile_path
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.deps import authorize, get_server, server_of
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.tlog.book import TlogBook

__all__ = ["router", "tlog_book"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/tlog", tags=["tlog"], responses=ERROR_RESPONSES
)

IMMUTABLE_SECONDS = 365 * 24 * 3600
"""Cache lifetime of a full tile: it never changes."""
SHORT_SECONDS = 5
"""Cache lifetime of a partial tile and of the checkpoint: they move as the log grows."""

_read = authorize("ledger.read")


class TlogSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: bool


class TlogSettingsOut(BaseModel):
    public: bool


class CosignatureOut(BaseModel):
    witness: str
    timestamp: int
    line: str


class CosignaturesOut(BaseModel):
    size: int
    root: str
    cosignatures: list[CosignatureOut]
    failed: list[dict[str, str]] = []


def tlog_book(server: ServerState) -> TlogBook:
    """The server's tile API book (built with the server)."""
    if server.tlog is None:
        raise NotFoundError("the tile API is not enabled on this server")
    return server.tlog


def tlog_reader(request: Request) -> Principal | None:
    """Who reads: None for anyone when the project's log is public, else a ledger reader."""
    server = server_of(request)
    project = request.path_params["project"]
    if project != INSTANCE_PROJECT and tlog_book(server).is_public(project):
        server.directory.get_project(project)  # a public setting outlives no project
        return None
    return _read(request)


Reader = Annotated[Principal | None, Depends(tlog_reader)]
Server = Annotated[ServerState, Depends(get_server)]


def _cache(public: bool, seconds: int, *, immutable: bool = False) -> dict[str, str]:
    scope = "public" if public else "private"
    value = f"{scope}, max-age={seconds}" + (", immutable" if immutable else "")
    return {"Cache-Control": value}


@router.get(
    "/checkpoint",
    response_class=Response,
    summary="The latest signed checkpoint, with witness cosignatures (tlog-tiles)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def checkpoint(project: str, reader: Reader, server: Server) -> Response:
    ledger = server.ledger(project)
    latest = ledger.store.latest_checkpoint(ledger.log)
    if latest is None:
        raise NotFoundError(
            "this log has no signed checkpoint yet",
            hint="sign one: POST /api/v1/projects/{project}/ledger/checkpoint",
        )
    lines = tlog_book(server).cosignatures(project, latest.size, latest.root)
    note = latest.note + "".join(c.line for c in lines)
    return Response(
        note.encode("utf-8"),
        media_type="text/plain; charset=utf-8",
        headers=_cache(reader is None, SHORT_SECONDS),
    )


@router.get(
    "/tile/{path:path}",
    response_class=Response,
    summary="A hash tile or entry bundle (tlog-tiles)",
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
def tile(project: str, path: str, reader: Reader, server: Server) -> Response:
    coord = parse_tile_path("tile/" + path)
    ledger = server.ledger(project)
    data = read_tile(ledger.store, ledger.log, coord, ledger.size())
    full = coord.width is None
    headers = _cache(reader is None, IMMUTABLE_SECONDS if full else SHORT_SECONDS, immutable=full)
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/cosignatures",
    response_model=CosignaturesOut,
    summary="The witnesses' cosignatures on the latest signed checkpoint",
)
def cosignatures(project: str, reader: Reader, server: Server) -> CosignaturesOut:
    ledger = server.ledger(project)
    latest = ledger.store.latest_checkpoint(ledger.log)
    if latest is None:
        return CosignaturesOut(size=0, root="", cosignatures=[])
    found = tlog_book(server).cosignatures(project, latest.size, latest.root)
    return CosignaturesOut(
        size=latest.size,
        root=latest.root.hex(),
        cosignatures=[
            CosignatureOut(witness=c.witness, timestamp=c.signed_at, line=c.line) for c in found
        ],
    )


@router.post(
    "/cosignatures",
    response_model=CosignaturesOut,
    summary="Sign a checkpoint and collect the configured witnesses' cosignatures",
)
def collect(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.checkpoint"))],
    server: Server,
) -> CosignaturesOut:
    from flowloom.server.tlog.witnesses import collect_cosignatures

    done = collect_cosignatures(
        server.ledger(project), tlog_book(server), project, server.settings.witnesses
    )
    return CosignaturesOut(
        size=done.size,
        root=done.root,
        cosignatures=[
            CosignatureOut(witness=c["witness"], timestamp=c["timestamp"], line=c["line"])
            for c in done.cosigned
        ],
        failed=done.failed,
    )


@router.get("/settings", response_model=TlogSettingsOut, summary="Whether the log is public")
def get_settings(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Server,
) -> TlogSettingsOut:
    return TlogSettingsOut(public=tlog_book(server).is_public(project))


@router.put(
    "/settings", response_model=TlogSettingsOut, summary="Publish the log to anyone, or stop"
)
def put_settings(
    project: str,
    body: TlogSettingsIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Server,
) -> TlogSettingsOut:
    if project == INSTANCE_PROJECT and body.public:
        from flowloom.errors import PermissionDeniedError

        raise PermissionDeniedError(f"{INSTANCE_PROJECT} holds the server's security events")
    book = tlog_book(server)
    before = book.is_public(project)
    refs: dict[str, Any] = {"project": project, "setting": "tlog.public"}
    refs.update({"from": before, "to": body.public, "auth_via": principal.via})
    if principal.key_id:
        refs["key_id"] = principal.key_id
    server.audit(
        "auth.project_settings",
        project,
        {"actor": principal.actor(), "subject": project, "refs": refs},
    )  # recorded first: a change the ledger does not hold never takes effect
    book.set_public(project, body.public)
    return TlogSettingsOut(public=body.public)
