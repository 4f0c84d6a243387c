"""Compliance routes: the reports `flowloom report` writes, the catalogue, legal holds.

Under /api/v1/projects/{project}:

- ``GET  reports/frameworks`` the control catalogue (project.read: it says nothing about
  the project);
- ``POST reports`` assesses one framework over a period of the project's ledger
  (flowloom.compliance.assess) and returns the rendered file (audit.read: auditors,
  owners and admins hand evidence out; developers do not). Generation is CPU-heavy
  (a PDF is laid out by WeasyPrint), so it runs in a worker thread, one report at a
  time per process, over a bounded period and log; every report is recorded as an
  ``export.generate`` event whose SHA-256 is the one of the bytes returned;
- ``POST reports/responses`` records management's response to a report's exception
  (project.admin: owners and admins speak for management), as a ``compliance.response``
  event attested for the signed-in user; the next report shows it beside the exception;
- ``GET  compliance/holds`` the legal holds (audit.read) and ``POST compliance/holds``
  places or releases one (project.admin), as ``retention.set`` events. Only holds and
  releases this server's keys attest count (`ServerState.trust`); the listing shows the
  others apart, as unverified.

The server examines git only when a repository is configured for the project (the
server state's ``repositories``: project → path); otherwise the commit checks report
``not_assessed`` (saying what they need), as `flowloom report --no-git` does, and
signatures over ``tree:`` and ``commit:`` subjects verify as ``unchecked``.
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import anyio
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask

from flowloom.auth.principals import Principal
from flowloom.compliance.catalog import FRAMEWORKS, load_framework
from flowloom.compliance.changes import git_object_digest
from flowloom.compliance.model import DISCLAIMER
from flowloom.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.deps import authorize, get_server
from flowloom.server.errors import ERROR_RESPONSES, RequestTooLargeError
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState

if TYPE_CHECKING:
    from flowloom.auth.signatures import SubjectResolver
    from flowloom.compliance.history import LedgerView, Period
    from flowloom.compliance.retention import Hold
    from flowloom.ledger.log import Ledger
    from flowloom.repo.git import GitRepo

__all__ = [
    "MAX_LOG_ENTRIES",
    "MAX_PERIOD",
    "AssessmentOut",
    "FrameworksOut",
    "HoldIn",
    "HoldOut",
    "HoldsOut",
    "ReportIn",
    "ReportVerificationOut",
    "UnverifiedHoldOut",
    "git_subject_resolvers",
    "project_policy",
    "project_repository",
    "report_response",
    "router",
]

MAX_PERIOD: Final = timedelta(days=1096)
"""The longest period one report covers on the server (three years); longer: the CLI."""
MAX_LOG_ENTRIES: Final = 250_000
"""The largest log the server assesses in memory; larger logs: `flowloom report`."""

ReportFormat = Literal[
    "html", "pdf", "json", "csv", "zip", "exceptions-csv", "audit-trail-csv", "controls-csv"
]
"""The formats of `flowloom report --format` (flowloom.compliance.reports.FORMATS)."""

_MEDIA: Final[Mapping[str, str]] = {
    "html": "text/html",
    "pdf": "application/pdf",
    "json": "application/json",
    "csv": "text/csv",
    "zip": "application/zip",
    "exceptions-csv": "text/csv",
    "audit-trail-csv": "text/csv",
    "controls-csv": "text/csv",
}
_LIMITER_ATTR = "flowloom_report_limiter"
_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?$"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

router = APIRouter(
    prefix=API_PREFIX + "/projects/{project}", tags=["compliance"], responses=ERROR_RESPONSES
)


# -- the project's repository ------------------------------------------------------------


def _repositories(server: ServerState) -> Mapping[str, Any]:
    """The server's ``repositories``: project → repository path ([server.repositories])."""
    return server.repositories


def _configured(server: ServerState, project: str) -> bool:
    return project in _repositories(server)


def project_repository(server: ServerState, project: str) -> GitRepo | None:
    """The git repository configured for `project`, or None (the usual case on a server).

    Read from the server state's optional ``repositories`` mapping (project → path); a
    configured path that is not a repository is an error, not a silent "no git".
    """
    from flowloom.repo.git import GitError, GitRepo

    path = _repositories(server).get(project)
    if path is None:
        return None
    repo = GitRepo(Path(path))
    if not repo.ok("rev-parse", "--git-dir"):
        raise GitError(
            f"the repository configured for {project} cannot be read",
            hint="check the server's repositories setting",
        )
    return repo


def git_subject_resolvers(
    repo_for: Callable[[str], GitRepo | None],
) -> dict[str, SubjectResolver]:
    """Digest resolvers for ``tree:<id>`` and ``commit:<sha>`` signature subjects.

    The git object id binds the content; the digest is SHA-256 of the id text
    (flowloom.compliance.changes.git_object_digest), once the object is found in the
    project's repository with the named type. Without a repository for the project the
    resolver answers None: the binding is then reported ``unchecked``, not passed.
    """

    def resolver(kind: str) -> SubjectResolver:
        def resolve(ledger: Ledger, ref: str) -> str | None:
            if not _OBJECT_ID.fullmatch(ref):
                raise InputError(
                    f"{kind}:{ref} does not name a full git object id",
                    hint="use the 40 (or 64) hex digit id git prints",
                )
            repo = repo_for(ledger.log)
            if repo is None:
                return None
            found = repo.run("cat-file", "-t", ref, check=False).strip()
            if found != kind:
                raise NotFoundError(
                    f"{kind}:{ref} is not in the repository configured for {ledger.log}",
                    hint="fetch the repository on the server, then try again",
                )
            return git_object_digest(ref)

        # SignatureService reports a None digest as "unchecked" (see docs/compliance.md).
        return resolve

    return {"tree": resolver("tree"), "commit": resolver("commit")}


def project_policy(repo: GitRepo | None) -> tuple[Any, Any]:
    """The committed [policy] and [compliance] of the repository's work tree, or defaults."""
    from flowloom.compliance.settings import ComplianceSettings, load_compliance_settings
    from flowloom.repo.git import GitError
    from flowloom.repo.policy import Policy, load_policy

    if repo is not None:
        try:
            top = repo.top()
        except GitError:  # a bare repository: no work tree holds the configuration
            top = None
        if top is not None:
            return load_policy(top), load_compliance_settings(top)
    return Policy(configured=False), ComplianceSettings()


# -- models ------------------------------------------------------------------------------


class ReportIn(BaseModel):
    """What to assess: a framework, a period (days, both included, or RFC 3339 times)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    framework: str = Field(
        json_schema_extra={"enum": list(FRAMEWORKS)}, description="The control framework"
    )
    start: str = Field(
        alias="from",
        pattern=_DATE,
        max_length=40,
        description="First day (YYYY-MM-DD, UTC) or an RFC 3339 time",
        examples=["2026-01-01"],
    )
    end: str = Field(
        alias="to",
        pattern=_DATE,
        max_length=40,
        description="Last day, included (YYYY-MM-DD), or an RFC 3339 time, excluded",
        examples=["2026-03-31"],
    )
    format: ReportFormat = Field(default="json", description="zip is the evidence pack")

    @field_validator("framework")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FRAMEWORKS:
            raise ValueError(f"unknown framework; use one of: {', '.join(FRAMEWORKS)}")
        return value


class AssessmentOut(BaseModel):
    """The assessment, schema flowloom-assessment/1 (docs/reports.md)."""

    model_config = ConfigDict(extra="allow")

    format: Literal["flowloom-assessment/1"]
    framework: str
    framework_title: str
    catalogue_version: str
    period_from: str
    period_to: str
    generated_at: str
    repository: str
    branches: list[str]
    project: str
    ledger: dict[str, Any]
    verifier_version: str
    statement: str
    summary: dict[str, int]
    controls: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    exceptions: list[dict[str, Any]]
    audit_trail: list[dict[str, Any]]


class ResponseIn(BaseModel):
    """Management's response to one exception of a report."""

    model_config = ConfigDict(extra="forbid")

    exception: str = Field(
        max_length=40, description="The exception's id, as a report prints it",
        examples=["SOX-1a2b3c4d5e"],
    )  # fmt: skip
    response: str = Field(min_length=1, max_length=4000, description="Response or remediation")
    owner: str | None = Field(default=None, max_length=200, description="Who remediates")
    due: str | None = Field(default=None, max_length=10, description="Due date, YYYY-MM-DD")


class ResponseOut(BaseModel):
    exception: str
    entry: int = Field(description="The compliance.response entry")
    by: str = Field(description="The signed-in user it is recorded for")


class ControlOut(BaseModel):
    id: str
    clause: str
    title: str
    requirement: str = Field(description="Paraphrased; the regulation's own text governs")
    checks: list[str] = Field(description="The automated checks that give evidence for it")
    automated: str = Field(description="What exactly the automated checks evidence")
    manual: str = Field(description="What the organisation must show itself")
    requests: list[str] = Field(description="That evidence, item by item")
    coverage: Literal["automated", "partly automated", "manual"]


class FrameworkOut(BaseModel):
    name: str
    title: str
    version: str = Field(description="The catalogue version")
    controls: list[ControlOut]


class CheckOut(BaseModel):
    id: str
    title: str
    needs_git: bool = Field(description="not_assessed without a repository")
    limits: str


class FrameworksOut(BaseModel):
    frameworks: list[FrameworkOut]
    checks: list[CheckOut]
    formats: list[str]
    statement: str = Field(description="What every report is and is not")
    max_period_days: int
    git: bool = Field(description="Whether a repository is configured for this project")


class HoldIn(BaseModel):
    """Place a legal hold (over everything, a record class or one data subject) or release one."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["hold", "release"]
    id: str = Field(
        min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", examples=["LH-1"]
    )
    reason: str = Field(min_length=1, max_length=2000, description="The matter; kept in the log")
    scope: str | None = Field(
        default=None,
        max_length=60,
        pattern=r"^(all|class:[a-z]+|subject:subj:[0-9a-f]{32})$",
        description="hold only: all (default), class:<record class> or subject:<pseudonym>",
    )
    data_subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=320,
        description="hold only: the person whose bodies are held (stored as a pseudonym)",
    )


class HoldOut(BaseModel):
    id: str
    scope: str
    reason: str
    placed_at: str
    entry: int
    released_at: str | None
    release_entry: int | None
    active: bool


class UnverifiedHoldOut(BaseModel):
    entry: int
    ts: str
    action: str | None
    id: str | None
    note: str = Field(description="Why it does not count: it holds or releases nothing")


class HoldsOut(BaseModel):
    holds: list[HoldOut]
    unverified: list[UnverifiedHoldOut] = Field(
        default_factory=list,
        description="retention.set events whose origin is not proven: not counted",
    )


def _hold_out(hold: Hold) -> HoldOut:
    from flowloom.ledger.event import format_ts

    return HoldOut(
        id=hold.id,
        scope=hold.scope,
        reason=hold.reason,
        placed_at=format_ts(hold.placed_at),
        entry=hold.entry,
        released_at=format_ts(hold.released_at) if hold.released_at is not None else None,
        release_entry=hold.release_entry,
        active=hold.released_at is None,
    )


def _view(server: ServerState, project: str) -> LedgerView:
    from flowloom.compliance.history import LedgerView

    ledger = server.ledger(project)
    return LedgerView.load(ledger.store, ledger.log, server.trust(project))


def _holds(server: ServerState, project: str) -> list[Hold]:
    from flowloom.compliance.retention import holds

    return holds(_view(server, project))


# -- the catalogue -----------------------------------------------------------------------


@router.get(
    "/reports/frameworks",
    response_model=FrameworksOut,
    summary="The control catalogue: frameworks, controls, checks, formats",
)
def list_frameworks(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> FrameworksOut:
    from flowloom.compliance.checks import CHECKS

    frameworks = []
    for name in FRAMEWORKS:
        spec = load_framework(name)
        controls = [
            ControlOut(
                id=c.id,
                clause=c.clause,
                title=c.title,
                requirement=c.requirement,
                checks=list(c.checks),
                automated=c.automated,
                manual=c.manual,
                requests=list(c.requests),
                coverage=c.coverage,
            )
            for c in spec.controls
        ]
        frameworks.append(
            FrameworkOut(name=spec.name, title=spec.title, version=spec.version, controls=controls)
        )
    checks = [
        CheckOut(id=c.id, title=c.title, needs_git=c.needs_git, limits=c.limits)
        for c in CHECKS.values()
    ]
    return FrameworksOut(
        frameworks=frameworks,
        checks=checks,
        formats=list(_MEDIA),
        statement=DISCLAIMER,
        max_period_days=MAX_PERIOD.days,
        git=_configured(server, project),
    )


# -- generating a report -----------------------------------------------------------------


@dataclass(frozen=True)
class _Generated:
    path: Path
    sha256: str
    entry: int
    filename: str
    statement: bytes
    checkpoint: int


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """One report at a time per server process: a PDF takes a core while it renders.

    Kept on the application's state (created on first use, on the event loop, so no
    two requests race to create it).
    """
    limiter = getattr(request.app.state, _LIMITER_ATTR, None)
    if not isinstance(limiter, anyio.CapacityLimiter):
        limiter = anyio.CapacityLimiter(1)
        setattr(request.app.state, _LIMITER_ATTR, limiter)
    return limiter


def _period(body: ReportIn) -> Period:
    from flowloom.compliance.assess import parse_period

    period = parse_period(body.start, body.end)
    if period.end - period.start > MAX_PERIOD:
        raise InputError(
            f"the period is longer than the server's limit of {MAX_PERIOD.days} days",
            hint="split it into several reports, or run 'flowloom report' over the database",
        )
    return period


def _generate(
    server: ServerState,
    project: str,
    body: ReportIn,
    period: Period,
    principal: Principal,
    work: Path,
    via: str,
) -> _Generated:
    """One report run (flowloom.compliance.run) into `work`; runs in a worker thread.

    The run signs a checkpoint and assesses exactly the entries it covers (a pack exports
    the ledger first, so its bundle and report cover the same entries), signs a statement
    with the project log's key naming the authenticated principal, and records the
    export."""
    from flowloom.compliance.run import generate_report
    from flowloom.compliance.statement import Generator, TrustRecord

    ledger = server.ledger(project)
    if ledger.size() > MAX_LOG_ENTRIES:
        raise RequestTooLargeError(
            f"the log of {project} has more than {MAX_LOG_ENTRIES} entries: too large to "
            "assess on the server",
            hint="run 'flowloom report' against the database instead",
        )
    repo = project_repository(server, project)
    policy, settings = project_policy(repo)
    last_day = (period.end - timedelta(microseconds=1)).date()  # the end is excluded
    kind, _, extension = body.format.rpartition("-")  # exceptions-csv → exceptions, csv
    name = "-".join(p for p in (project, body.framework, kind) if p)
    filename = f"{name}-{period.start.date()}-{last_day}.{extension}"
    done = generate_report(
        ledger,
        framework=body.framework,
        period=period,
        fmt=body.format,
        out=work / filename,
        trust=TrustRecord.of_server(server.trust(project)),
        generator=Generator(principal.email or principal.user_id, "server"),
        repo=repo,
        policy=policy,
        settings=settings,
        repository=str(repo.cwd) if repo is not None else "",
        actor=principal.actor(),
        via=via,
    )
    return _Generated(
        done.path,
        done.sha256,
        done.entry,
        filename,
        done.statement_path.read_bytes(),
        done.snapshot.size,
    )


_REPORT_HEADERS: Final[dict[str, Any]] = {
    "X-FlowLoom-SHA256": {
        "description": "SHA-256 of the body, as recorded in the export.generate event",
        "schema": {"type": "string"},
    },
    "X-FlowLoom-Export-Entry": {
        "description": "The index of the export.generate event that records this report",
        "schema": {"type": "integer"},
    },
    "X-FlowLoom-Statement": {
        "description": "The report's signed statement (an in-toto Statement v1 in a DSSE "
        "envelope, one JSON line), base64; save it as <file>.intoto.jsonl",
        "schema": {"type": "string"},
    },
    "X-FlowLoom-Checkpoint": {
        "description": "The size of the signed checkpoint the report was computed at",
        "schema": {"type": "integer"},
    },
}
_BINARY: Final = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/reports",
    response_class=JSONResponse,
    summary="Generate a report: evidence for a framework's controls over a period",
    responses={
        200: {
            "model": AssessmentOut,
            "description": "The report: JSON for format json, else the file as an attachment",
            "headers": _REPORT_HEADERS,
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": _BINARY,
                "text/csv": {"schema": {"type": "string"}},
                "application/zip": _BINARY,
            },
        }
    },
)
async def generate_report(
    project: str,
    body: ReportIn,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    return await report_response(request, server, project, body, principal, via="api")


async def report_response(
    request: Request,
    server: ServerState,
    project: str,
    body: ReportIn,
    principal: Principal,
    *,
    via: str,
    download: bool = False,
) -> Response:
    """Generate the report `body` asks for (one at a time per process, within the server's
    limits), record the export, and answer with the file (`download`: JSON too). The API
    and the web pages both come here, so every report that leaves the server is in the
    ledger."""
    if project == INSTANCE_PROJECT:
        raise PermissionDeniedError(
            f"{INSTANCE_PROJECT} holds the server's own security events; report on a project",
            hint="its events are read by every project's access_revocation check",
        )
    period = _period(body)
    work = Path(tempfile.mkdtemp(prefix="flowloom-report-"))
    try:
        done = await anyio.to_thread.run_sync(
            partial(_generate, server, project, body, period, principal, work, via),
            limiter=_limiter(request),
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    headers = {
        "X-FlowLoom-SHA256": done.sha256,
        "X-FlowLoom-Export-Entry": str(done.entry),
        "X-FlowLoom-Statement": base64.b64encode(done.statement.strip()).decode("ascii"),
        "X-FlowLoom-Checkpoint": str(done.checkpoint),
    }
    if body.format == "json" and not download:  # the API answers JSON inline
        try:
            content = done.path.read_bytes()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Response(content, media_type=_MEDIA["json"], headers=headers)
    return FileResponse(
        done.path,
        media_type=_MEDIA[body.format],
        filename=done.filename,
        headers=headers,
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


# -- verifying a report ------------------------------------------------------------------


class ReportVerificationOut(BaseModel):
    """What checking a report found (flowloom.compliance.reperform)."""

    ok: bool = Field(description="No problem and no difference")
    problems: list[str] = Field(description="Integrity and signature problems, one line each")
    differences: list[str] = Field(
        description="Where re-performing the assessment from the pack's bundle gave another result"
    )
    notes: list[str] = Field(description="What was and was not checked")
    files_checked: int
    signed_by: str = Field(description="The key that signed the statement")
    generated_by: str
    reperformed: bool


_UPLOAD_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _upload_name(name: str | None, fallback: str) -> str:
    base = _UPLOAD_NAME.sub("_", (name or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    return base.lstrip(".") or fallback


def _verify(
    server: ServerState, project: str, work: Path, name: str, statement: bool
) -> ReportVerificationOut:
    """Check the uploaded report against this project's keys; runs in a worker thread."""
    from flowloom.compliance.reperform import verify_report
    from flowloom.ledger.keyring import log_keys

    trusted = list(log_keys(server.store, project).verifiers)
    target = work / "in" / name
    if statement:
        from flowloom.errors import FlowLoomError
        from flowloom.ledger.dsse import Envelope

        # The statement names the file it signs: check the upload under that name (a
        # statement that cannot be read is reported by the verification itself).
        signed = work / "statement.intoto.jsonl"
        try:
            named = [s["name"] for s in Envelope.parse(signed.read_bytes()).statement()["subject"]]
        except FlowLoomError:
            named = []
        if len(named) == 1:
            target = (work / "in" / name).rename(work / "in" / _upload_name(named[0], name))
        signed.rename(target.with_name(target.name + ".intoto.jsonl"))
    result = verify_report(target, trusted=trusted, repo=project_repository(server, project))
    return ReportVerificationOut(**result.to_json())


@router.post(
    "/reports/verify",
    response_model=ReportVerificationOut,
    summary="Verify a report: signature, digests, and re-perform an evidence pack",
)
async def verify_uploaded_report(
    project: str,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    file: Annotated[UploadFile, File(description="The evidence pack (zip) or a report file")],
    statement: Annotated[
        UploadFile | None,
        File(description="A single file's signed statement (<file>.intoto.jsonl)"),
    ] = None,
) -> ReportVerificationOut:
    """Checks the upload against this project's keys; re-performs an evidence pack's
    assessment from its ledger bundle (and the project's repository, when configured).
    The answer is 200 whatever it found: `ok` false lists every problem and difference."""
    if project == INSTANCE_PROJECT:
        raise PermissionDeniedError(f"{INSTANCE_PROJECT} has no reports")
    work = Path(tempfile.mkdtemp(prefix="flowloom-verify-"))
    try:
        name = _upload_name(file.filename, "report")
        (work / "in").mkdir()
        (work / "in" / name).write_bytes(await file.read())
        signed = await statement.read() if statement is not None else b""
        if signed:  # a browser sends an empty part for a file input left empty
            (work / "statement.intoto.jsonl").write_bytes(signed)
        return await anyio.to_thread.run_sync(
            partial(_verify, server, project, work, name, bool(signed)),
            limiter=_limiter(request),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- legal holds -------------------------------------------------------------------------


@router.post(
    "/reports/responses",
    status_code=201,
    response_model=ResponseOut,
    summary="Record management's response to a report's exception",
)
def record_response(
    project: str,
    body: ResponseIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> ResponseOut:
    from flowloom.compliance.responses import record_response as record

    actor = principal.actor()
    entry = record(
        server.ledger(project),
        body.exception,
        body.response,
        actor=actor,
        owner=body.owner,
        due=body.due,
    )
    return ResponseOut(exception=body.exception, entry=entry, by=str(actor["id"]))


@router.get("/compliance/holds", response_model=HoldsOut, summary="The legal holds")
def list_holds(
    project: str,
    principal: Annotated[Principal, Depends(authorize("audit.read"))],
    server: Annotated[ServerState, Depends(get_server)],
    active: bool = False,
) -> HoldsOut:
    from flowloom.compliance.retention import holds

    view = _view(server, project)
    found = holds(view)
    unverified = []
    for entry in view.unverified("retention.set"):
        refs = entry.event.refs
        action, hold_id = refs.get("action"), refs.get("hold")
        unverified.append(
            UnverifiedHoldOut(
                entry=entry.index,
                ts=entry.ts,
                action=action if isinstance(action, str) else None,
                id=hold_id if isinstance(hold_id, str) else None,
                note=view.note(entry),
            )
        )
    return HoldsOut(
        holds=[_hold_out(h) for h in found if not active or h.released_at is None],
        unverified=unverified,
    )


@router.post(
    "/compliance/holds",
    status_code=201,
    response_model=HoldOut,
    summary="Place or release a legal hold (a retention.set event)",
)
def change_hold(
    project: str,
    body: HoldIn,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Annotated[ServerState, Depends(get_server)],
) -> HoldOut:
    from flowloom.compliance.retention import place_hold, release_hold

    ledger = server.ledger(project)
    in_force = {h.id for h in _holds(server, project) if h.released_at is None}
    if body.action == "hold":
        if body.id in in_force:
            raise ConflictError(
                f"legal hold {body.id} is already in force",
                hint="choose another id, or release it first",
            )
        if body.scope is not None and body.data_subject is not None:
            raise InputError("give scope or data_subject, not both")
        place_hold(
            ledger,
            body.id,
            reason=body.reason,
            scope=body.scope or "all",
            data_subject=body.data_subject,
            actor=principal.actor(),
        )
    else:
        if body.scope is not None or body.data_subject is not None:
            raise InputError("a release names only the hold's id and a reason")
        if body.id not in in_force:
            raise NotFoundError(
                f"no legal hold {body.id} is in force in {project}",
                hint="GET .../compliance/holds lists them",
            )
        release_hold(
            ledger,
            body.id,
            reason=body.reason,
            trust=server.trust(project),
            actor=principal.actor(),
        )
    latest = [h for h in _holds(server, project) if h.id == body.id]
    return _hold_out(latest[-1])
