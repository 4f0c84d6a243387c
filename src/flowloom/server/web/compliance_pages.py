"""The compliance dashboard: each framework's controls over a period, exceptions, reports.

Assessments come from `flowloom.compliance.assess.assess` over the project's ledger and,
as for the API's reports, the repository configured for the project when there is one
(with its committed [policy] and [compliance]). Without one, the checks that need git are
not assessed and say what they need; the dashboard and `flowloom report` then give the
same statuses as `flowloom report --no-git`, never a pass the commits were not examined
for. A framework page shows the report's scope, completeness (git and the ledger
reconciled, pre-adoption commits apart) and sampling sections, rendered by the report's
own template from the page's one assessment. Every control shows one of the five statuses
(pass, flag, manual, not_applicable, not_assessed) with its reason. A page never writes,
so it never signs a checkpoint: it assesses the entries the latest signed checkpoint
covers, the same snapshot a report run there reads, and caches it per (framework, period,
checkpoint: size and root). The dashboard computes missing assessments in the background
(`flowloom.server.web.background`) and shows "computing", reloading itself until they are
there; it never shows a log with data as not assessed for want of a visit. Reports are
written by the API's report route (`report_response`: the same limits, and each download
is recorded as an export.generate event). As in the API's report routes, all of this needs
audit.read (owners, admins, auditors).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import ValidationError

from flowloom.auth.principals import Principal
from flowloom.compliance.assess import assess, parse_period
from flowloom.compliance.catalog import load_catalog
from flowloom.compliance.model import CONTROL_STATUSES, Assessment
from flowloom.compliance.reports.html import auditmeta_html
from flowloom.compliance.snapshot import Snapshot, latest_snapshot
from flowloom.errors import InputError, NotFoundError
from flowloom.server.deps import authorize, get_server
from flowloom.server.routes.reports import (
    ReportIn,
    project_policy,
    project_repository,
    report_response,
    verify_uploaded_report,
)
from flowloom.server.state import ServerState
from flowloom.server.web.charts import bar_chart
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state

__all__ = ["REFRESH_SECONDS", "REPORT_FORMATS", "router"]

REFRESH_SECONDS = 3
"""How soon a dashboard still computing an assessment reloads itself."""

router = APIRouter(
    prefix=WEB_PREFIX + "/projects/{project}/compliance",
    route_class=WebRoute,
    include_in_schema=False,
)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
Reader = Annotated[Principal, Depends(authorize("audit.read"))]

REPORT_FORMATS: dict[str, tuple[str, str, str]] = {
    "html": ("HTML report", "html", "text/html"),
    "pdf": ("PDF report", "pdf", "application/pdf"),
    "json": ("JSON assessment", "json", "application/json"),
    "csv": ("Changes (CSV)", "csv", "text/csv"),
    "exceptions-csv": ("Exceptions (CSV)", "csv", "text/csv"),
    "audit-trail-csv": ("Audit trail (CSV)", "csv", "text/csv"),
    "controls-csv": ("Controls (CSV)", "csv", "text/csv"),
    "zip": ("Evidence pack (ZIP, with the ledger bundle)", "zip", "application/zip"),
}
"""Format → (label, file extension, media type) offered for download."""


def _period(start: str | None, end: str | None) -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (start or (today - timedelta(days=90)).isoformat(), end or today.isoformat())


def _snapshot(server: ServerState, project: str) -> tuple[Snapshot | None, object]:
    """The latest signed checkpoint (a page never signs one: reads never write), and the
    cache key it gives; a log without a checkpoint is assessed as it is, keyed by size."""
    ledger = server.ledger(project)
    try:
        snapshot = latest_snapshot(ledger)
    except NotFoundError:
        return None, ("unsigned", ledger.size())
    return snapshot, (snapshot.size, snapshot.root)


def _assessment(
    server: ServerState, web: WebState, project: str, framework: str, start: str, end: str
) -> Assessment:
    """The assessment at the latest checkpoint: the same snapshot a report would read
    there, cached per checkpoint."""
    key, compute = _assessor(server, project, framework, start, end)
    return web.assessments.get(key, compute)


def _assessor(
    server: ServerState, project: str, framework: str, start: str, end: str
) -> tuple[tuple[object, ...], Callable[[], Assessment]]:
    """The cache key of an assessment (the checkpoint's size and root) and how to make it."""
    ledger = server.ledger(project)
    period = parse_period(start, end)
    snapshot, at = _snapshot(server, project)
    key = ("assessment", project, framework, start, end, at)
    trust = server.trust(project)

    def compute() -> Assessment:
        repo = project_repository(server, project)
        policy, settings = project_policy(repo)
        return assess(
            ledger,
            framework=framework,
            period=period,
            trust=trust,
            repo=repo,
            policy=policy,
            settings=settings,
            repository=str(repo.cwd) if repo is not None else "",
            snapshot=snapshot,
        )

    return key, compute


@router.get("", response_class=HTMLResponse)
def dashboard(
    project: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    start: str | None = Query(None, alias="from", max_length=40),
    end: str | None = Query(None, alias="to", max_length=40),
) -> Response:
    start, end = _period(start, end)
    parse_period(start, end)
    frameworks = []
    for name, spec in sorted(load_catalog().items()):
        key, compute = _assessor(server, project, name, start, end)
        state, value = web.background.progress(key, compute)
        frameworks.append(
            {
                "name": name,
                "title": spec.title,
                "controls": len(spec.controls),
                "state": state,
                "counts": value.counts() if state == "ready" else None,
                "reason": value if state == "failed" else "",
            }
        )
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — compliance",
        nav="compliance",
        frameworks=frameworks,
        start=start,
        end=end,
        git=project in server.repositories,
        refresh=REFRESH_SECONDS if any(f["state"] == "computing" for f in frameworks) else 0,
    )
    return html(web.render("web/compliance.html", context))


@router.get("/verify", response_class=HTMLResponse)
def verify_page(project: str, request: Request, principal: Reader, web: Web) -> Response:
    """The form to check a report (declared before /{framework}, which it would match)."""
    context = base_context(
        request, principal, project=project, title=f"{project} — verify a report",
        nav="compliance", result=None,
    )  # fmt: skip
    return html(web.render("web/report_verify.html", context))


@router.post("/verify", response_class=HTMLResponse)
async def verify_upload(
    project: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    file: Annotated[UploadFile, File()],
    statement: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """The API's verification (POST .../reports/verify), shown as a page."""
    result = await verify_uploaded_report(project, request, principal, server, file, statement)
    context = base_context(
        request, principal, project=project, title=f"{project} — verify a report",
        nav="compliance", result=result,
    )  # fmt: skip
    return html(web.render("web/report_verify.html", context))


@router.get("/{framework}", response_class=HTMLResponse)
def framework_page(
    project: str,
    framework: str,
    request: Request,
    principal: Reader,
    server: Server,
    web: Web,
    start: str | None = Query(None, alias="from", max_length=40),
    end: str | None = Query(None, alias="to", max_length=40),
    check: str | None = Query(None, max_length=100),
) -> Response:
    start, end = _period(start, end)
    assessment = _assessment(server, web, project, framework, start, end)
    counts = assessment.counts()
    chart = bar_chart(
        "controls-by-status",
        "Controls by status",
        [(s.replace("_", " "), float(counts[s])) for s in CONTROL_STATUSES],
        limit=0,
    )
    selected = None
    if check:
        selected = next((r for r in assessment.checks if r.check == check), None)
        if selected is None:
            raise InputError(f"no check {check!r} ran in this assessment")
    results = {r.check: r for r in assessment.checks}
    # Scope, completeness and sampling as the report prints them, from this assessment.
    auditmeta = Markup(auditmeta_html(assessment))  # autoescaped by its own template
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — {assessment.framework_title}",
        nav="compliance",
        assessment=assessment,
        counts=counts,
        chart=chart,
        results=results,
        selected=selected,
        start=start,
        end=end,
        formats=REPORT_FORMATS,
        framework=framework,
        auditmeta=auditmeta,
    )
    return html(web.render("web/framework.html", context))


@router.get("/{framework}/report")
async def report_download(
    project: str,
    framework: str,
    request: Request,
    principal: Reader,
    server: Server,
    start: str | None = Query(None, alias="from", max_length=40),
    end: str | None = Query(None, alias="to", max_length=40),
    format: str = Query("html", max_length=40),
) -> Response:
    """The API's report (same limits, recorded as an export), as a download."""
    if format not in REPORT_FORMATS:
        raise InputError(f"unknown report format {format!r}", hint=", ".join(REPORT_FORMATS))
    start, end = _period(start, end)
    try:
        body = ReportIn.model_validate(
            {"framework": framework, "from": start, "to": end, "format": format}
        )
    except ValidationError as exc:
        raise InputError(f"not a report this server makes: {exc.errors()[0]['msg']}") from None
    return await report_response(
        request, server, project, body, principal, via="web", download=True
    )
