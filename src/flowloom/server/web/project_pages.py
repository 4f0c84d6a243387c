"""The pages of one project: overview, timeline, entries, decisions, why, ledger, usage.

Every route is under /ui/projects/{project} and passes the API's `authorize()`:
ledger.read to look at the record (and the gateway's budgets and keys of the project),
decision.read for decisions, decision.approve to approve one (a Part 11 signature with
re-authentication — a password, or a fresh single sign-on — as the API does it). Pages
read bounded slices of the log (see flowloom.server.web.timeline) or the incremental
summary (flowloom.server.web.summary), never the whole log per request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from flowloom.auth.principals import Principal
from flowloom.auth.records import Session
from flowloom.auth.signatures import ReauthCredentials, SignatureMeaning
from flowloom.decisions.records import APPROVAL_MEANINGS, Decision
from flowloom.errors import FlowLoomError, InputError, NotFoundError
from flowloom.ledger import merkle
from flowloom.ledger.event import KINDS, parse_ts
from flowloom.ledger.log import Ledger
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import retry_after_headers, status_of
from flowloom.server.models import MAX_INDEX
from flowloom.server.routes.signatures import signature_service
from flowloom.server.state import ServerState
from flowloom.server.web.charts import bar_chart
from flowloom.server.web.filewhy import file_why
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state
from flowloom.server.web.timeline import TimelineQuery, event_row, read_page
from flowloom.store.interface import StoredCheckpoint

__all__ = ["router"]

router = APIRouter(
    prefix=WEB_PREFIX + "/projects/{project}", route_class=WebRoute, include_in_schema=False
)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
Reader = Annotated[Principal, Depends(authorize("ledger.read"))]
DecisionReader = Annotated[Principal, Depends(authorize("decision.read"))]
DecisionId = Annotated[str, Path(pattern=r"^D-[0-9a-f]{10}$")]
_BODY_SHOWN = 20_000
_EXCERPT = 4_000


def _age(ts: str | None, now: datetime) -> str:
    if not ts:
        return "never"
    try:
        seconds = (now - parse_ts(ts)).total_seconds()
    except InputError:
        return "unknown"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _health(last_ts: str | None, now: datetime) -> tuple[str, str]:
    """(status word, explanation): silent capture is the failure people miss."""
    if not last_ts:
        return "silent", "nothing has been recorded yet: check that capture is installed"
    try:
        age = now - parse_ts(last_ts)
    except InputError:
        return "unknown", "the last event has an unreadable time"
    if age <= timedelta(days=1):
        return "active", "events arrived in the last 24 hours"
    if age <= timedelta(days=7):
        return "quiet", "no events for more than a day"
    return "silent", "no events for over a week: capture may have stopped"


@router.get("", response_class=HTMLResponse)
def overview(
    project: str, request: Request, principal: Reader, server: Server, web: Web
) -> Response:
    ledger = server.ledger(project)
    summary = web.summaries.current(project)
    now = datetime.now(UTC)
    latest = ledger.store.latest_checkpoint(project)
    days = [(now - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(13, -1, -1)]
    chart = bar_chart(
        "events-by-day",
        "Events per day, last 14 days",
        [(d, summary.days.get(d, 0)) for d in days],
        limit=0,
    )
    kinds = bar_chart("events-by-kind", "Events by kind", summary.kinds.items(), limit=10)
    status, why = _health(summary.last_ts, now)
    recent = read_page(ledger, TimelineQuery(limit=15), server.trust(project))
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — overview",
        nav="overview",
        summary=summary,
        size=summary.consumed,
        checkpoint=latest,
        last_age=_age(summary.last_ts, now),
        health=status,
        health_why=why,
        capture_errors=summary.kinds.get("capture.error", 0),
        chart=chart,
        kinds_chart=kinds,
        recent=recent.rows,
    )
    return html(web.render("web/overview.html", context))


def _date_bound(value: str | None, name: str, *, end: bool) -> str | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        if end:
            day += timedelta(days=1)
    except ValueError:
        raise InputError(f"{name} {value!r} is not a date", hint="use YYYY-MM-DD") from None
    except OverflowError:
        raise InputError(
            f"{name} {value!r} is out of range", hint="give a day before 9999-12-31"
        ) from None
    return day.strftime("%Y-%m-%dT%H:%M:%S")


@router.get("/timeline", response_class=HTMLResponse)
def timeline(
    project: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    kind: str | None = Query(None, max_length=200),
    actor: str | None = Query(None, max_length=200),
    since: str | None = Query(None, alias="from", max_length=10),
    until: str | None = Query(None, alias="to", max_length=10),
    q: str | None = Query(None, max_length=200),
    fulltext: bool = Query(False),
    before: int | None = Query(None, ge=0, le=MAX_INDEX),
) -> Response:
    ledger = server.ledger(project)
    summary = web.summaries.current(project)
    query = TimelineQuery(
        kind=kind or None,
        actor=(actor or "").strip() or None,
        since=_date_bound(since, "from", end=False),
        until=_date_bound(until, "to", end=True),
        text=(q or "").strip() or None,
        before=before,
    )
    hits = None
    page = None
    if fulltext and query.text:
        hits = _memory_search(ledger, query)
    else:
        page = read_page(ledger, query, server.trust(project))
    filters = {
        "kind": kind or "",
        "actor": actor or "",
        "from": since or "",
        "to": until or "",
        "q": q or "",
        "fulltext": fulltext,
    }
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — timeline",
        nav="timeline",
        page=page,
        hits=hits,
        filters=filters,
        kinds=sorted(set(summary.kinds) | ({kind} if kind else set())),
        all_kinds=KINDS,
        actors=sorted(summary.actors.items(), key=lambda a: a[1].lower())[:200],
        older_query=_query_string(filters, before=page.older if page else None),
        newest_query=_query_string(filters),
    )
    return html(web.render("web/timeline.html", context))


def _query_string(filters: dict[str, Any], **extra: Any) -> str:
    from urllib.parse import urlencode

    values = {k: v for k, v in {**filters, **extra}.items() if v not in (None, "", False)}
    if values.get("fulltext") is True:
        values["fulltext"] = "1"
    return urlencode(values)


def _memory_search(ledger: Ledger, query: TimelineQuery) -> list[Any]:
    from flowloom.memory.service import Memory

    with Memory(ledger) as memory:
        return list(
            memory.search(
                query.text or "",
                since=query.since[:10] if query.since else None,
                until=query.until[:10] if query.until else None,
                limit=50,
            )
        )


def _proof(ledger: Ledger, index: int, envelope: bytes) -> dict[str, Any]:
    """Whether entry `index` is proved in the latest signed checkpoint, checked here."""
    from flowloom.ledger.receipt import verify_receipt

    try:
        receipt = ledger.prove(index)
        checkpoint = verify_receipt(receipt, merkle.leaf_hash(envelope), ledger.verifier)
    except FlowLoomError as exc:
        return {"ok": False, "detail": exc.message, "size": None}
    return {
        "ok": True,
        "size": checkpoint.size,
        "detail": f"included in the signed checkpoint of size {checkpoint.size}; "
        "the inclusion proof and the checkpoint signature verify with the log's key",
    }


def _body_text(ledger: Ledger, digest: object, limit: int) -> tuple[str | None, str]:
    """(text shown, state): the body's text, cut at `limit` characters."""
    if not isinstance(digest, str):
        return None, "none"
    content = ledger.read_body(digest)
    if content is None:
        return None, "erased"
    text = content.decode("utf-8", "replace")
    if len(text) > limit:
        return text[:limit] + "\n…", "cut"
    return text, "ok"


@router.get("/entries/{index}", response_class=HTMLResponse)
def entry_page(
    project: str,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX)],
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
) -> Response:
    ledger = server.ledger(project)
    stored = ledger.entry(index)
    envelope = json.loads(stored.envelope)
    body, body_state = _body_text(ledger, envelope.get("body"), _BODY_SHOWN)
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — entry {index}",
        nav="timeline",
        index=index,
        row=event_row(index, stored.envelope, stored.kind, server.trust(project)),
        envelope=json.dumps(envelope, indent=2, ensure_ascii=False, sort_keys=True),
        leaf_hash=merkle.leaf_hash(stored.envelope).hex(),
        body=body,
        body_state=body_state,
        proof=_proof(ledger, index, stored.envelope),
    )
    return html(web.render("web/entry.html", context))


@router.get("/decisions", response_class=HTMLResponse)
def decisions_page(
    project: str,
    request: Request,
    principal: DecisionReader,
    server: Server,
    web: Web,
    status: str | None = Query(None, pattern="^(proposed|accepted)$"),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    size = server.ledger(project).size()
    book = signature_service(server).book(project)
    # Every decision with its approvals is a read of two kinds; kept per log size.
    found = list(web.assessments.get(("decisions", project, size), book.list))
    if status:
        found = [d for d in found if d.status == status]
    found.reverse()
    per_page = 50
    shown = found[(page - 1) * per_page : page * per_page]
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — decisions",
        nav="decisions",
        decisions=shown,
        status=status or "",
        page=page,
        more=len(found) > page * per_page,
        total=len(found),
    )
    return html(web.render("web/decisions.html", context))


def _decision_context(
    request: Request, principal: Principal, server: ServerState, project: str, decision_id: str
) -> dict[str, Any]:
    service = signature_service(server)
    book = service.book(project)
    decision: Decision = book.get(decision_id)
    ledger = server.ledger(project)
    excerpts = []
    for role, index in (("Prompt", decision.prompt_entry), ("Response", decision.response_entry)):
        if index is None:
            continue
        stored = ledger.store.entry(project, index)
        if stored is None:
            excerpts.append({"role": role, "index": index, "text": None, "state": "missing"})
            continue
        digest = json.loads(stored.envelope).get("body")
        text, state = _body_text(ledger, digest, _EXCERPT)
        excerpts.append({"role": role, "index": index, "text": text, "state": state})
    signatures = []
    for approval in decision.approvals:
        record = verdict = None
        if approval.signature is not None:
            try:
                record = service.get(project, approval.signature)
                verdict = service.verify(project, approval.signature)
            except FlowLoomError:
                record = None
        signatures.append({"approval": approval, "record": record, "verdict": verdict})
    proof = None
    if decision.entry is not None:
        stored = ledger.store.entry(project, decision.entry)
        if stored is not None:
            proof = _proof(ledger, decision.entry, stored.envelope)
    can = server.authorizer.permissions(principal, project)
    signing: dict[str, Any] | None = None
    if "decision.approve" in can and principal.kind == "user":
        first = True
        sso = None
        if principal.via == "session" and principal.session_id:
            session = server.directory.get_session(principal.session_id)
            first = not session.signed_before
            if session.via in ("oidc", "saml"):
                here = f"{WEB_PREFIX}/projects/{project}/decisions/{decision.id}"
                sso = _sso_reauth(server, session, service.policy.sso_reauth_max_age, here)
        signing = {
            "printed_name": server.directory.get_user(principal.user_id).name,
            "email_needed": first,
            "sso": sso,
            "meanings": [
                {"value": m, "statement": SignatureMeaning(m).statement} for m in APPROVAL_MEANINGS
            ],
        }
    return base_context(
        request,
        principal,
        project=project,
        title=f"{decision.id} — {decision.title}",
        nav="decisions",
        decision=decision,
        excerpts=excerpts,
        commits=book.commits(decision.id),
        signatures=signatures,
        proof=proof,
        signing=signing,
        error=None,
        signed=None,
    )


def _sso_reauth(
    server: ServerState, session: Session, window: timedelta, here: str
) -> dict[str, Any]:
    """How a single sign-on session signs: no password, a fresh sign-in at the provider.

    The link runs the authorization-code flow with prompt=login and max_age=0 (OIDC) or
    sends an AuthnRequest with ForceAuthn (SAML) and comes back to this page; the callback
    marks the session re-authenticated, and the signature service accepts that mark for
    `window` (SigningPolicy.sso_reauth_max_age).
    """
    fresh_until = None
    if session.reauthenticated_at is not None:
        until = session.reauthenticated_at + window
        if until > datetime.now(UTC):
            fresh_until = until
    back = quote(here + "#sign-title", safe="/")
    method = "saml" if session.via == "saml" else "oidc"
    return {
        "configured": (server.saml if method == "saml" else server.oidc) is not None,
        "link": f"/api/v1/auth/{method}/login?reauth=1&redirect={back}",
        "fresh_until": fresh_until,
        "minutes": max(int(window.total_seconds() // 60), 1),
    }


@router.get("/decisions/{decision_id}", response_class=HTMLResponse)
def decision_page(
    project: str,
    decision_id: DecisionId,
    request: Request,
    principal: DecisionReader,
    server: Server,
    web: Web,
    signed: int | None = Query(None, ge=0, le=MAX_INDEX),
) -> Response:
    context = _decision_context(request, principal, server, project, decision_id)
    context["signed"] = signed
    return html(web.render("web/decision.html", context))


@router.post("/decisions/{decision_id}/approve", response_class=HTMLResponse)
def approve(
    project: str,
    decision_id: DecisionId,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("decision.approve"))],
    server: Server,
    web: Web,
    meaning: Annotated[str, Form(pattern="^(approved|reviewed)$")],
    password: Annotated[str | None, Form(max_length=1024)] = None,
    email: Annotated[str | None, Form(max_length=320)] = None,
) -> Response:
    """Sign and approve. Without a password, a single sign-on session signs on the strength
    of a recent re-authentication at the identity provider (the signature service decides)."""
    client = request.client.host if request.client is not None else "unknown"
    try:
        done = signature_service(server).approve_decision(
            principal,
            project,
            decision_id,
            credentials=ReauthCredentials(
                password=password or None, email=email or None, client=client
            ),
            meaning=meaning,
        )
    except FlowLoomError as exc:
        status, _ = status_of(exc)
        context = _decision_context(request, principal, server, project, decision_id)
        context["error"] = exc.message + (f" — {exc.hint}" if exc.hint else "")
        return html(web.render("web/decision.html", context), status, retry_after_headers(exc))
    target = f"{WEB_PREFIX}/projects/{project}/decisions/{decision_id}?signed={done.signature.id}"
    return RedirectResponse(target, status_code=303)


@router.get("/why", response_class=HTMLResponse)
def why_page(
    project: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    path: str | None = Query(None, max_length=4096),
) -> Response:
    summary = web.summaries.current(project)
    answer = file_why(server.ledger(project), path.strip()) if path and path.strip() else None
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — why",
        nav="why",
        path=path or "",
        answer=answer,
        files=[f for f, _ in summary.files.most_common(300)],
    )
    return html(web.render("web/why.html", context))


def _checkpoint_status(ledger: Ledger) -> dict[str, Any]:
    """Cheap verification of the latest checkpoint: its signature, and the stored tree's
    root at its size (O(log n) node reads) against the signed root."""
    from flowloom.ledger.checkpoint import open_checkpoint

    latest = ledger.store.latest_checkpoint(ledger.log)
    if latest is None:
        return {"ok": None, "detail": "no checkpoint has been signed yet"}
    try:
        signed = open_checkpoint(latest.note, ledger.verifier)
        root = merkle.root_at(latest.size, ledger.lookup())
    except FlowLoomError as exc:
        return {"ok": False, "detail": exc.message}
    if signed.root != root or signed.size != latest.size:
        return {"ok": False, "detail": "the stored tree does not match the signed checkpoint"}
    return {
        "ok": True,
        "detail": f"the signature verifies with the log's key and the stored tree's root at "
        f"size {latest.size} matches the signed root",
    }


def _vkey_text(ledger: Ledger) -> str:
    verifier = ledger.current_verifier()
    return verifier.vkey if verifier is not None else "none yet: nothing has been recorded"


def _ledger_context(
    request: Request, principal: Principal, server: ServerState, web: WebState, project: str
) -> dict[str, Any]:
    ledger = server.ledger(project)
    size = ledger.size()
    latest = ledger.store.latest_checkpoint(project)
    full = web.verifications.peek((project, size))
    return base_context(
        request,
        principal,
        project=project,
        title=f"{project} — ledger",
        nav="ledger",
        size=size,
        origin=ledger.origin,
        checkpoint=latest,
        status=_checkpoint_status(ledger),
        vkey=_vkey_text(ledger),
        full=full,
        receipt_result=None,
        api=f"/api/v1/projects/{project}/ledger",
        cosignatures=_cosignatures(server, project, latest),
        tlog=f"/api/v1/projects/{project}/tlog",
    )


def _cosignatures(
    server: ServerState, project: str, latest: StoredCheckpoint | None
) -> list[dict[str, Any]]:
    """The witnesses' cosignatures collected on the latest checkpoint, for the page."""
    if latest is None or server.tlog is None:
        return []
    return [
        {"witness": c.witness, "at": datetime.fromtimestamp(c.signed_at, UTC), "line": c.line}
        for c in server.tlog.cosignatures(project, latest.size, latest.root)
    ]


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(
    project: str, request: Request, principal: Reader, server: Server, web: Web
) -> Response:
    return html(
        web.render("web/ledger.html", _ledger_context(request, principal, server, web, project))
    )


@router.get("/ledger/verify", response_class=HTMLResponse)
def verify_page(
    project: str, request: Request, principal: Reader, server: Server, web: Web
) -> Response:
    """Full verification of every entry and body (cached per log size: it reads it all)."""
    from flowloom.ledger.verify import verify_store

    ledger = server.ledger(project)
    size = ledger.size()

    def run() -> dict[str, Any]:
        started = datetime.now(UTC)
        report = verify_store(
            ledger.store, project, ledger.verifier, decrypt=lambda b: ledger.read_body(b.digest)
        )
        return {
            "ok": report.ok,
            "size": report.size,
            "problems": [p.line() for p in report.problems[:50]],
            "more": max(0, len(report.problems) - 50),
            "at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        }

    web.verifications.get((project, size), run)
    return html(
        web.render("web/ledger.html", _ledger_context(request, principal, server, web, project))
    )


@router.get("/ledger/receipt")
def receipt_download(
    project: str,
    principal: Reader,
    server: Server,
    index: int = Query(ge=0, le=MAX_INDEX),
) -> Response:
    receipt = server.ledger(project).prove(index)
    return Response(
        receipt.text(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{project}-entry-{index}.receipt"'},
    )


@router.post("/ledger/verify-receipt", response_class=HTMLResponse)
async def verify_receipt_upload(
    project: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    receipt: Annotated[UploadFile | None, File()] = None,
    text: Annotated[str | None, Form(max_length=200_000)] = None,
) -> Response:
    """Check an uploaded tlog-proof receipt against this log's key and entry."""
    raw = await receipt.read(200_001) if receipt is not None else b""
    if not raw and text:
        raw = text.encode()
    return await run_in_threadpool(
        _verify_receipt_page, request, principal, server, web, project, raw
    )


def _verify_receipt_page(
    request: Request,
    principal: Principal,
    server: ServerState,
    web: WebState,
    project: str,
    raw: bytes,
) -> Response:
    from flowloom.ledger.receipt import Receipt, verify_receipt

    ledger = server.ledger(project)
    result: dict[str, Any]
    status = 200
    try:
        if not raw.strip():
            raise InputError("no receipt was given", hint="choose a receipt file or paste one")
        if len(raw) > 200_000:
            raise InputError("the receipt is over 200 kB: that is not a receipt")
        parsed = Receipt.parse(raw)
        stored = ledger.store.entry(project, parsed.index)
        if stored is None:
            raise NotFoundError(f"this log has no entry {parsed.index}")
        checkpoint = verify_receipt(parsed, merkle.leaf_hash(stored.envelope), ledger.verifier)
        result = {
            "ok": True,
            "index": parsed.index,
            "kind": stored.kind,
            "detail": f"entry {parsed.index} ({stored.kind}) is in the tree of size "
            f"{checkpoint.size} signed by {ledger.verifier.vkey.split('+')[0]}",
        }
    except FlowLoomError as exc:
        status = 200 if not isinstance(exc, InputError) else 400
        result = {"ok": False, "detail": exc.message}
    context = _ledger_context(request, principal, server, web, project)
    context["receipt_result"] = result
    return html(web.render("web/ledger.html", context), status)


@router.get("/usage", response_class=HTMLResponse)
def usage_page(
    project: str, request: Request, principal: Reader, server: Server, web: Web
) -> Response:
    usage = web.summaries.current(project).usage
    days = sorted(usage.by_day)[-30:]
    charts = [
        bar_chart(
            "cost-by-day",
            "Cost per day (USD)",
            [(d, usage.by_day[d].cost_usd) for d in days],
            money=True,
            limit=0,
        ),
        bar_chart(
            "cost-by-provider",
            "Cost by provider (USD)",
            [(k, u.cost_usd) for k, u in usage.by_provider.items()],
            money=True,
        ),
        bar_chart(
            "cost-by-model",
            "Cost by model (USD)",
            [(k, u.cost_usd) for k, u in usage.by_model.items()],
            money=True,
        ),
        bar_chart(
            "cost-by-key",
            "Cost by key (USD)",
            [(k, u.cost_usd) for k, u in usage.by_key.items()],
            money=True,
        ),
        bar_chart(
            "tokens-by-model",
            "Tokens by model",
            [(k, float(u.tokens)) for k, u in usage.by_model.items()],
            unit="tokens",
        ),
    ]
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — usage and cost",
        nav="usage",
        usage=usage,
        charts=charts,
        tables=[
            ("Provider", usage.by_provider),
            ("Model", usage.by_model),
            ("Key", usage.by_key),
        ],
        gateway=_gateway_budgets(server, project),
    )
    return html(web.render("web/usage.html", context))


def _gateway_budgets(server: ServerState, project: str) -> dict[str, Any]:
    """The gateway's budgets and virtual keys of `project`, or why they cannot be shown.

    Only what is bound to this project: keys of other projects, and keys bound to none,
    are never read here. A gateway that cannot be read leaves the rest of the page as is.
    """
    view = server.gateway
    if view is None:
        return {"error": "this server was built without a gateway view", "budgets": [], "vkeys": []}
    try:
        budgets = view.budgets(project)
        keys = view.keys(project)
    except FlowLoomError as exc:
        return {"error": exc.diagnostics(), "budgets": [], "vkeys": []}
    now = datetime.now(UTC)
    return {
        "error": None,
        "budgets": budgets,
        "vkeys": [(k, k.expires_at is not None and k.expires_at <= now) for k in keys],
    }
