"""Ledger routes: append (one or a batch), read, checkpoints, proofs, bundles.

Every route is under /api/v1/projects/{project}/ledger and passes `authorize()`:
ledger.append to write, ledger.checkpoint to sign, ledger.read for everything else.
Text formats are the interoperable ones: C2SP signed notes, tlog-proof receipts, the
tlog-witness consistency shape, and a tar of the tlog-tiles export bundle.
"""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.background import BackgroundTask

from flowloom.auth.principals import Principal
from flowloom.errors import InputError, NotFoundError
from flowloom.ledger import merkle
from flowloom.ledger.log import Ledger, consistency_text
from flowloom.server.appends import CIRules, SignedEventRefusedError, SignedRules, append_events
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES, RequestTooLargeError
from flowloom.server.models import (
    MAX_INDEX,
    AppendAck,
    BatchAck,
    BatchIn,
    EntriesOut,
    EntryBodyOut,
    EntryOut,
    EventIn,
)
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.store.interface import StoredEntry

__all__ = ["entry_out", "router"]

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}/ledger", tags=["ledger"], responses=ERROR_RESPONSES
)

_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}
_PAGE_MAX = 1000
_BODIES_PAGE_BYTES = 4 * 1024 * 1024
"""Base64 characters of bodies in one page of `GET /entries?bodies=true`."""


def entry_out(entry: StoredEntry) -> EntryOut:
    return EntryOut(
        index=entry.index,
        kind=entry.kind,
        envelope=json.loads(entry.envelope),
        leaf_hash=merkle.leaf_hash(entry.envelope).hex(),
    )


def _ledger(server: ServerState, project: str) -> Ledger:
    return server.ledger(project)


def ci_rules(server: ServerState) -> CIRules:
    """CI tokens from the issuers the operator trusts (`ci_issuers`), verified against
    each issuer's published keys (OIDC discovery) for the configured audience."""

    def verify(token: str, issuer: str) -> dict[str, Any]:
        import httpx

        from flowloom.ci.identity import verify_token

        with httpx.Client(timeout=15, follow_redirects=False) as http:
            return verify_token(
                token, issuer=issuer, audience=server.settings.ci_audience, http=http
            )

    return CIRules(issuers=server.settings.ci_issuers, verify=verify)


def signed_rules(server: ServerState, project: str) -> SignedRules:
    """The checks for person-signed events of `project`: its repository's committed
    allowed signers (default branch), and the decision rules' segregation of duties."""
    from flowloom.decisions.records import check_decision_id
    from flowloom.errors import FlowLoomError
    from flowloom.repo.signers import SignersCheck, allowed_signers_at
    from flowloom.server.routes.reports import project_repository
    from flowloom.server.routes.signatures import signature_service

    repo = project_repository(server, project)
    ssh = None
    missing = f"no clone of {project} is named in [server.repositories]"
    if repo is not None:
        base = repo.default_branch() or "HEAD"
        signers = allowed_signers_at(repo, base) if repo.resolve(base) else None
        ssh = SignersCheck(signers) if signers is not None else None
        missing = (
            f"the clone named for {project} in [server.repositories] has no "
            f".flowloom/allowed_signers on its default branch ({base}): commit it there "
            "and fetch it into that clone"
        )
    service = signature_service(server)

    def segregation(principal: Principal, envelope: dict[str, Any]) -> None:
        subject = envelope.get("subject")
        try:
            decision_id = check_decision_id(subject if isinstance(subject, str) else "")
            decision = service.book(project).get(decision_id)
            service.check_segregation(principal, project, decision)
        except FlowLoomError as exc:
            raise SignedEventRefusedError(
                f"signed {envelope.get('kind')} refused: {exc.message}", hint=exc.hint
            ) from None

    def identities(principal: Principal) -> set[str]:
        # Who the key's user is for an actor field: their user id or email, nothing looser.
        return {name for name in (principal.user_id, principal.email) if name}

    return SignedRules(
        ssh=ssh,
        identities=identities,
        segregation=segregation,
        missing=None if ssh is not None else missing,
    )


@router.post("/entries", status_code=201, response_model=AppendAck, summary="Append one event")
def append_one(
    project: str,
    event: EventIn,
    principal: Annotated[Principal, Depends(authorize("ledger.append"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> AppendAck:
    ledger = _ledger(server, project)
    [done] = append_events(
        ledger,
        [event],
        principal,
        server.idempotency,
        batch=False,
        signed_rules=lambda: signed_rules(server, project),
        ci_rules=ci_rules(server),
    )
    server.metrics.appends.labels("entries").inc(0 if done.duplicate else 1)
    return AppendAck(index=done.index, leaf_hash=done.leaf_hash, duplicate=done.duplicate)


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchAck,
    summary="Append up to 1000 events in one transaction",
)
def append_batch(
    project: str,
    batch: BatchIn,
    principal: Annotated[Principal, Depends(authorize("ledger.append"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> BatchAck:
    limit = server.settings.max_batch_events
    if len(batch.events) > limit:
        raise RequestTooLargeError(
            f"a batch holds at most {limit} events, this one has {len(batch.events)}",
            hint="split it into several batches",
        )
    ledger = _ledger(server, project)
    done = append_events(
        ledger,
        batch.events,
        principal,
        server.idempotency,
        batch=True,
        signed_rules=lambda: signed_rules(server, project),
        ci_rules=ci_rules(server),
    )
    server.metrics.appends.labels("batch").inc(sum(1 for d in done if not d.duplicate))
    return BatchAck(
        indices=[d.index for d in done],
        leaf_hashes=[d.leaf_hash for d in done],
        duplicates=[d.duplicate for d in done],
    )


@router.get("/entries", response_model=EntriesOut, summary="Read entries, a page at a time")
def list_entries(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    start: int = Query(0, ge=0, le=MAX_INDEX),
    limit: int = Query(100, ge=1, le=_PAGE_MAX),
    kind: str | None = Query(None, min_length=1, max_length=200),
    bodies: bool = Query(
        False,
        description="Answer each entry's body (base64) and its commitment salt beside its "
        "envelope, as GET /entries/{index}/body would; a page ends early after "
        f"{_BODIES_PAGE_BYTES // (1024 * 1024)} MiB of bodies (always at least one entry).",
    ),
) -> EntriesOut:
    ledger = _ledger(server, project)
    size = ledger.size()
    if kind is None:
        end = min(size, start + limit)
        rows = list(ledger.store.entries(project, start, end)) if start < end else []
        following = end if end < size else None
    else:
        rows = []
        following = None
        for entry in ledger.store.entries(project, start, size, kind):
            if len(rows) == limit:
                following = entry.index
                break
            rows.append(entry)
    if not bodies:
        return EntriesOut(entries=[entry_out(e) for e in rows], size=size, next=following)
    out: list[EntryBodyOut | EntryOut] = []
    budget = _BODIES_PAGE_BYTES
    for entry in rows:
        row = _with_body(ledger, entry)
        spent = len(row.body or "")
        if out and spent > max(budget, 0):
            following = entry.index  # the page is full: the reader asks again from here
            break
        budget -= spent
        out.append(row)
    return EntriesOut(entries=out, size=size, next=following)


def _with_body(ledger: Ledger, entry: StoredEntry) -> EntryBodyOut:
    """The entry with its body under the single-body route's rules: none when the
    envelope names none, or the body was erased (content or subject key destroyed)."""
    base = entry_out(entry)
    digest = base.envelope.get("body")
    stored = ledger.store.body(digest) if isinstance(digest, str) else None
    plain = ledger.open_stored(stored) if stored is not None else None
    if stored is None or plain is None:
        return EntryBodyOut(**base.model_dump(), body=None, salt=None)
    return EntryBodyOut(
        **base.model_dump(),
        body=base64.b64encode(plain).decode("ascii"),
        salt=base64.b64encode(stored.salt).decode("ascii"),
    )


@router.get("/entries/{index}", response_model=EntryOut, summary="Read one entry")
def get_entry(
    project: str,
    index: int,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> EntryOut:
    return entry_out(_ledger(server, project).entry(_index(index)))


@router.get(
    "/entries/{index}/body",
    response_class=Response,
    summary="Read an entry's body (decrypted)",
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
def get_body(
    project: str,
    index: int,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    ledger = _ledger(server, project)
    entry = ledger.entry(_index(index))
    digest = json.loads(entry.envelope).get("body")
    if not isinstance(digest, str):
        raise NotFoundError(f"entry {index} has no body")
    content = ledger.read_body(digest)
    if content is None:
        raise NotFoundError(f"the body of entry {index} was erased or is not stored here")
    return Response(content, media_type="application/octet-stream")


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="The latest signed checkpoint (signed now if the log grew)",
)
def get_checkpoint(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> PlainTextResponse:
    return PlainTextResponse(_ledger(server, project).checkpoint_at(None).note)


@router.post(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="Sign a checkpoint over the durable log now",
)
def sign_checkpoint(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.checkpoint"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> PlainTextResponse:
    return PlainTextResponse(_ledger(server, project).checkpoint().note)


@router.get(
    "/vkey", response_class=PlainTextResponse, responses=_TEXT, summary="The log's verifier key"
)
def get_vkey(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> PlainTextResponse:
    return PlainTextResponse(_ledger(server, project).verifier.vkey + "\n")


@router.get(
    "/proof/inclusion",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="A C2SP tlog-proof receipt for one entry",
)
def inclusion_proof(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    index: int = Query(ge=0, le=MAX_INDEX),
    size: int | None = Query(None, ge=1, le=MAX_INDEX),
) -> PlainTextResponse:
    return PlainTextResponse(_ledger(server, project).prove(index, size).text())


@router.get(
    "/proof/consistency",
    response_class=PlainTextResponse,
    responses=_TEXT,
    summary="A consistency proof between two tree sizes (tlog-witness shape)",
)
def consistency_proof(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    old: int = Query(ge=0, le=MAX_INDEX),
    new: int | None = Query(None, ge=1, le=MAX_INDEX),
) -> PlainTextResponse:
    target, proof = _ledger(server, project).consistency(old, new)
    return PlainTextResponse(consistency_text(old, proof, target.note))


@router.get(
    "/bundle",
    response_class=FileResponse,
    summary="The whole log as a tar of the tlog-tiles export bundle",
    responses={200: {"content": {"application/x-tar": {"schema": {"type": "string"}}}}},
)
def get_bundle(
    project: str,
    principal: Annotated[Principal, Depends(authorize("ledger.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> FileResponse:
    from flowloom.ledger.bundle import export_bundle

    ledger = _ledger(server, project)
    work = Path(tempfile.mkdtemp(prefix="flowloom-bundle-"))
    try:
        export_bundle(ledger, work / "bundle", withhold_subject_bodies=False)
        archive = work / f"{project}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(work / "bundle", arcname=project)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/x-tar",
        filename=f"{project}-bundle.tar",
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


def _index(index: int) -> int:
    if index < 0:
        raise InputError("the index must not be negative")
    if index > MAX_INDEX:
        raise InputError(f"the index must be at most {MAX_INDEX}")
    return index
