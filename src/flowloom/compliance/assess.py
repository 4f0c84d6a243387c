"""Assess one framework over one period: run its checks and assemble the `Assessment`.

`assess()` is the one entry point the CLI and the server call. It reads the log once
(`LedgerView`), builds the change population from git when a repository is given,
runs every check the framework's controls rely on, and derives each control's status
from its checks. It writes nothing: a report is evidence about the record, not part of
it (the caller may record an `export.generate` event for the report it writes).

The caller says what it trusts (`Trust`: the server's keys on the server, the log's
key and the allowed signers in a clone): only authority-bearing events whose origin
that trust proves count as approvals, signatures, holds, CI verdicts, anchors or audit
facts; the others are reported as unverified (flowloom.compliance.history).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from flowloom import __version__
from flowloom.compliance import minimise
from flowloom.compliance.auditmeta import with_ids
from flowloom.compliance.catalog import load_framework
from flowloom.compliance.changes import Change, Population
from flowloom.compliance.checks import (
    CHECKS,
    CheckContext,
    anchor_point,
    run_check,
    tested_tree_of,
)
from flowloom.compliance.history import Entry, LedgerView, Period, security_rows
from flowloom.compliance.model import (
    AnchorRow,
    ApprovalRow,
    Assessment,
    AuditTrailRow,
    ChangeRow,
    CheckResult,
    CheckStatus,
    Completeness,
    Control,
    ControlResult,
    ControlStatus,
    Finding,
    LedgerSummary,
    PopulationItem,
    Sampling,
)
from flowloom.compliance.responses import responses_of
from flowloom.compliance.sampling import default_seed, draw
from flowloom.compliance.settings import ComplianceSettings
from flowloom.compliance.snapshot import Snapshot
from flowloom.errors import InputError
from flowloom.ledger import merkle
from flowloom.ledger.event import format_ts
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust
from flowloom.ledger.verify import VerifyReport
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import Policy

__all__ = ["assess", "parse_period"]

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Periods stay far from the calendar's ends, so the checks' date arithmetic cannot
overflow (a period ending 9999-12-31 would)."""

_TRAIL_KINDS = (
    "decision.record",
    "decision.amend",
    "decision.approve",
    "signature.apply",
    "override.grant",
    "config.change",
    "erasure.tombstone",
    "retention.set",
    "commit.link",
)


def parse_period(start: str, end: str) -> Period:
    """A period from two dates (YYYY-MM-DD, the end day included) or RFC 3339 times."""
    begin = _moment(start, "--from", end_of_day=False)
    finish = _moment(end, "--to", end_of_day=True)
    if finish <= begin:
        raise InputError(f"the period is empty: {start} is not before {end}")
    return Period(
        begin,
        finish,
        first=_as_requested(start, begin),
        last=_as_requested(end, finish),
        last_included=len(end) == 10,
    )


def _as_requested(text: str, moment: datetime) -> str:
    """A bound as the person gave it: the day, or the time in UTC (stated as such)."""
    if len(text) == 10:
        return text
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "")
        + "Z"
    )


def _moment(text: str, name: str, *, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            moment = day + timedelta(days=1) if end_of_day else day
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            moment = moment.astimezone(UTC)
    except ValueError:
        raise InputError(
            f"{name} {text!r} is not a date", hint="use YYYY-MM-DD or an RFC 3339 time"
        ) from None
    except OverflowError:
        raise _out_of_range(name, text) from None  # past the calendar's end
    if not _EARLIEST <= moment <= _LATEST:
        raise _out_of_range(name, text)
    return moment


def _out_of_range(name: str, text: str) -> InputError:
    last = (_LATEST - timedelta(days=1)).date()
    return InputError(
        f"{name} {text!r} is out of range: a period lies between {_EARLIEST.date()} and {last}",
        hint="give a date within that range",
    )


def assess(
    ledger: Ledger,
    *,
    framework: str,
    period: Period,
    trust: Trust,
    repo: GitRepo | None = None,
    policy: Policy | None = None,
    settings: ComplianceSettings | None = None,
    now: datetime | None = None,
    repository: str | None = None,
    checks: Iterable[str] | None = None,
    snapshot: Snapshot | None = None,
    instance: Iterable[tuple[int, bytes]] | None = None,
    verification: VerifyReport | None = None,
    generated_by: str = "",
    sample_seed: str | None = None,
) -> Assessment:
    """Check `framework`'s controls over `period` of `ledger` (and `repo`, when given).

    `trust` says whose attestations and signatures prove an authority-bearing event
    (nothing else counts); `policy` gives the protected branches (default: the capture
    defaults);
    `settings` the override window and retention classes; `now` the time the
    assessment is made (for windows still open); `checks` runs only those checks
    (the controls that need others are then reported as not assessed).

    `snapshot` confines the assessment to the entries its signed checkpoint covers (and
    the instance log's events before its `instance_size`), so what is appended meanwhile,
    the report's own ``export.generate`` included, changes nothing. Re-performing a
    report from an evidence pack passes the pack's `instance` events and the
    `verification` of its bundle (flowloom.compliance.reperform), and the report's
    `sample_seed` (by default derived from the checkpoint's root: `compliance.sampling`).
    """
    spec = load_framework(framework)
    policy = policy or Policy()
    settings = settings or ComplianceSettings()
    now = now or datetime.now(UTC)
    if instance is None and snapshot is not None and snapshot.instance_size is not None:
        instance = security_rows(ledger.store, snapshot.instance_size)
    elif instance is None and snapshot is not None:
        instance = ()
    size = snapshot.size if snapshot is not None else None
    view = LedgerView.load(ledger.store, ledger.log, trust, size=size, instance=instance)
    branches = settings.protected_branches or _protected(repo, policy)
    baseline = _baseline(view, settings)
    population = None
    if repo is not None:
        from flowloom.decisions.records import DecisionBook

        book = DecisionBook(ledger, trust=trust)
        population = Population(
            repo, view, book, branches=branches, period=period, baseline=baseline
        )
    ctx = CheckContext(
        ledger=ledger,
        view=view,
        period=period,
        now=now,
        policy=policy,
        settings=settings,
        repo=repo,
        population=population,
        checkpoint=snapshot.checkpoint if snapshot is not None else None,
        size=size,
        _verify=verification,
    )
    wanted = list(spec.checks if checks is None else checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise InputError(f"unknown check(s): {', '.join(unknown)}", hint=", ".join(CHECKS))
    results = [run_check(CHECKS[c], ctx) for c in CHECKS if c in wanted]
    results = with_ids(spec.name, results, ledger.origin)
    by_id = {r.check: r for r in results}
    controls = tuple(_control_result(c, by_id) for c in spec.controls)
    exceptions = tuple(f for r in results for f in r.findings)
    models = _session_models(view)
    summary = _ledger_summary(ctx, ledger, view, snapshot)
    seed = sample_seed or default_seed(
        spec.name, format_ts(period.start), format_ts(period.end), summary.root
    )
    ids = {f.id for f in exceptions}
    assessment = Assessment(
        framework=spec.name,
        framework_title=spec.title,
        catalogue_version=spec.version,
        period_from=format_ts(period.start),
        period_to=format_ts(period.end),
        generated_at=format_ts(now),
        repository=repository or (str(repo.cwd) if repo is not None else ""),
        branches=tuple(population.branches) if population is not None else tuple(branches),
        project=ledger.log,
        ledger=summary,
        verifier_version=f"flowloom {__version__}",
        controls=controls,
        checks=tuple(results),
        changes=tuple(_change_row(ctx, c, exceptions, models) for c in ctx.changes()),
        exceptions=exceptions,
        audit_trail=tuple(_trail(ctx.view, period)),
        period_label=period.label,
        generated_by=generated_by,
        completeness=_completeness(ctx, baseline, settings),
        sampling=_sampling(ctx, period, seed, exceptions),
        responses=tuple(r for r in responses_of(view) if r.exception in ids),
    )
    if spec.name in minimise.FRAMEWORKS:
        assessment = minimise.minimise(assessment, ledger.origin)
    return assessment


def _baseline(view: LedgerView, settings: ComplianceSettings) -> datetime | None:
    """When FlowLoom was adopted: configured, else the log's first entry (whole second,
    as git records commit times)."""
    if settings.baseline is not None:
        return settings.baseline
    if not view.entries:
        return None
    return view.entries[0].at.replace(microsecond=0)


def _completeness(
    ctx: CheckContext, baseline: datetime | None, settings: ComplianceSettings
) -> Completeness:
    """The population's definition, and git and the ledger reconciled over it."""
    source = "configured ([compliance] baseline)" if settings.baseline else "first ledger entry"
    when = format_ts(baseline) if baseline is not None else ""
    links = ctx.in_period(ctx.view.of("commit.link"))
    population = ctx.population
    if population is None:
        return Completeness(
            definition="the first-parent commits of the protected branches in the period",
            baseline=when,
            baseline_source=source,
            commits=0,
            linked=0,
            unlinked=0,
            ledger_links=0,
            links_elsewhere=len(links),
            needs="the repository (--repo), or a repository configured for the project on "
            "the server: without git the population cannot be reconciled",
        )
    changes = ctx.changes()
    members = {sha for change in changes for sha in change.links}
    members.update(change.commit.sha for change in changes)
    naming = [e for e in ctx.view.of("commit.link") if e.event.subject in members]
    elsewhere = [e for e in links if e.event.subject not in members]
    linked = sum(1 for change in changes if _link_how(change) is not None)
    branches = ", ".join(population.branches) or "none"
    definition = (
        f"every first-parent commit of {branches} committed (git committer time, UTC) in "
        "the period"
        + (f", from the baseline {when} on" if when else "")
        + "; a merge is one change that brings its second parent's commits"
    )
    return Completeness(
        definition=definition,
        baseline=when,
        baseline_source=source,
        commits=len(changes),
        linked=linked,
        unlinked=len(changes) - linked,
        ledger_links=len({e.event.subject for e in naming}),
        links_elsewhere=len(elsewhere),
        pre_adoption=tuple(
            PopulationItem(
                commit=commit.sha,
                branch=branch,
                committed_at=format_ts(population.repo_time(commit)),
                title=commit.subject,
            )
            for branch, commit in population.pre_adoption()
        ),
    )


def _sampling(
    ctx: CheckContext, period: Period, seed: str, exceptions: tuple[Finding, ...]
) -> Sampling | None:
    """The sample of the change population for manual testing (None without git)."""
    if ctx.population is None:
        return None
    commits = [change.commit.sha for change in ctx.changes()]
    population = set(commits)
    flagged = any(f.severity != "info" and f.commit in population for f in exceptions)
    return draw(commits, length=period.end - period.start, seed=seed, exceptions=flagged)


def _protected(repo: GitRepo | None, policy: Policy) -> tuple[str, ...]:
    """The local branches the policy protects (names and patterns such as release/*)."""
    if repo is None:
        return tuple(b for b in policy.protected_branches if not any(c in b for c in "*?["))
    names = repo.run("for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    return tuple(sorted(b for b in names if policy.is_protected(b)))


def _control_result(control: Control, results: dict[str, CheckResult]) -> ControlResult:
    """A control's status from its checks, never more than they show.

    Any flag flags the control; otherwise a check that could not look (no repository,
    not run, failed) leaves it not_assessed. A partly automated control is never
    ``pass``: unless its automated part flags or was not assessed, it stays ``manual``
    (the automated part's own status is `ControlResult.automated`)."""
    if not control.checks:
        return ControlResult(
            control=control,
            status="manual",
            checks=(),
            note="no automated check covers this control: the organisation provides "
            "the evidence requested",
        )
    ran = [results[c] for c in control.checks if c in results]
    missing = [c for c in control.checks if c not in results]
    flagged = [r for r in ran if r.status == "flag"]
    blind = [r for r in ran if r.status == "not_assessed"]
    passed = [r for r in ran if r.status == "pass"]
    automated: CheckStatus
    parts: list[str] = []
    if flagged:
        automated = "flag"
        parts.extend(f"{r.check} flagged {_exceptions(len(r.exceptions))}" for r in flagged)
    elif blind or missing:
        automated = "not_assessed"
    elif passed:
        automated = "pass"
        parts.append(f"{', '.join(r.check for r in passed)} found nothing to report")
    else:
        automated = "not_applicable"
        parts.extend(f"{r.check}: {r.reason}" for r in ran)
    parts.extend(f"{r.check} not assessed: {r.reason}" for r in blind)
    parts.extend(f"{c} not assessed: it was not run in this assessment" for c in missing)
    status: ControlStatus = automated
    if control.requests and automated in ("pass", "not_applicable"):
        status = "manual"
        parts.append(
            f"the automated part ({automated.replace('_', ' ')}) covers only: "
            f"{control.automated}; the rest needs the evidence requested"
        )
    return ControlResult(
        control=control,
        status=status,
        checks=tuple(r.check for r in ran),
        note="; ".join(parts),
        automated=automated,
    )


def _exceptions(count: int) -> str:
    return f"{count} exception{'s' if count != 1 else ''}"


def _ledger_summary(
    ctx: CheckContext, ledger: Ledger, view: LedgerView, snapshot: Snapshot | None
) -> LedgerSummary:
    report = ctx.verification()
    latest = ctx.latest_checkpoint()
    size = report.size
    if latest is not None and latest.size == size:
        root = latest.root
    else:
        root = merkle.root_at(size, ledger.lookup()) if size else merkle.EMPTY_ROOT
    anchors = []
    for entry in view.of("checkpoint.anchor"):
        anchored_size, _ = anchor_point(entry)
        kind = entry.event.refs.get("type")
        where = entry.event.refs.get("where")
        anchors.append(
            AnchorRow(
                entry=entry.index,
                ts=entry.ts,
                type=kind if isinstance(kind, str) else "unknown",
                checkpoint_size=anchored_size,
                detail=where if isinstance(where, str) else "",
            )
        )
    note = "full verification of every entry, checkpoint and body"
    if latest is not None and latest.size < size:
        note += f"; entries from {latest.size} on are not yet covered by a signed checkpoint"
    return LedgerSummary(
        project=ledger.log,
        origin=ledger.origin,
        size=size,
        root=root.hex(),
        checkpoint_size=latest.size if latest is not None else None,
        checkpoint_note=latest.note if latest is not None else None,
        checkpoints_checked=report.checkpoints_checked,
        vkey=snapshot.vkey if snapshot is not None else ledger.verifier.vkey,
        verified=report.ok,
        problems=tuple(p.line() for p in report.problems),
        anchors=tuple(anchors),
        note=note,
    )


def _session_models(view: LedgerView) -> dict[str, list[str]]:
    """The models (``model@version`` when the version is separate) each session used."""
    found: dict[str, list[str]] = {}
    for entry in view.of("session.start", "gateway.exchange"):
        model = entry.event.refs.get("model")
        if entry.event.session and isinstance(model, str) and model:
            version = entry.event.refs.get("model_version")
            named = f"{model}@{version}" if isinstance(version, str) else model
            models = found.setdefault(entry.event.session, [])
            if named not in models:
                models.append(named)
    return found


def _change_row(
    ctx: CheckContext,
    change: Change,
    findings: tuple[Finding, ...],
    session_models: dict[str, list[str]],
) -> ChangeRow:
    sha = change.commit.sha
    flags = tuple(dict.fromkeys(f.what for f in findings if f.commit == sha))
    models = [m for session in change.sessions for m in session_models.get(session, ())]
    models.extend(d.model for d in change.decisions if d.model)
    tests = "none"
    ci_entries: list[int] = []
    for entry in ctx.view.of("test.result"):
        if tested_tree_of(entry) == change.tree:
            ci_entries.append(entry.index)
            if entry.event.refs.get("ok") is True:
                tests = "pass"
            elif tests == "none":
                tests = "fail"
    override = change.overrides[0] if change.overrides else None
    override_entry = None
    link_entry = None
    for member_sha, entry in change.link_entries.items():
        link_entry = entry.index if member_sha == sha or link_entry is None else link_entry
        recorded = entry.event.refs.get("override")
        if isinstance(recorded, Mapping):
            grant = recorded.get("grant")
            if isinstance(grant, int) and not isinstance(grant, bool):
                override_entry = grant
    return ChangeRow(
        commit=sha,
        tree=change.tree,
        branch=change.branch,
        title=change.commit.subject,
        author=str(change.commit.author),
        committer=str(change.commit.committer),
        committed_at=format_ts(change.committed_at),
        link=_link_how(change),
        decisions=tuple(d.id for d in change.decisions),
        sessions=tuple(change.sessions),
        models=tuple(dict.fromkeys(models)),
        operators=tuple(_operators(ctx, change)),
        approvals=tuple(
            ApprovalRow(
                approver=a.approver,
                printed_name=a.printed_name,
                meaning=a.meaning,
                ts=a.ts,
                entry=a.entry,
                signature=a.signature,
                decision=a.decision,
                bound_to_tree=a.bound_to_tree,
                independent=not (a.identities & change.excluded.keys()),
            )
            for a in change.approvals
        ),
        tests=tests,
        ci_entries=tuple(ci_entries),
        override=override,
        override_entry=override_entry,
        link_entry=link_entry,
        flags=flags,
    )


def _operators(ctx: CheckContext, change: Change) -> list[str]:
    from flowloom.compliance.changes import session_operators

    found: list[str] = []
    for session in change.sessions:
        found.extend(sorted(session_operators(ctx.view, session)))
    return list(dict.fromkeys(found))


def _link_how(change: Change) -> str | None:
    hows = [link.how for link in change.links.values() if link is not None]
    if not change.links or len(hows) < len(change.links):
        return None
    return ",".join(dict.fromkeys(hows))


def _trail(view: LedgerView, period: Period) -> Iterable[AuditTrailRow]:
    """The Part 11 audit-trail view: who changed what, when, from what to what, and why."""
    for entry in view.within(period):
        if entry.kind not in _TRAIL_KINDS and not entry.kind.startswith(("auth.", "key.")):
            continue
        yield _trail_row(entry, None if view.counts(entry) else view.note(entry))


def _trail_row(entry: Entry, unverified: str | None) -> AuditTrailRow:
    event = entry.event
    refs = event.refs

    def text(*keys: str) -> str | None:
        for key in keys:
            value = refs.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None

    old = text("old", "previous")
    new = text("new", "value")
    why = text("reason", "rationale", "statement")
    kind = entry.kind
    if kind == "decision.record":
        new = new or text("title")
    elif kind == "decision.amend":
        new = new or text("choice", "response_entry")
    elif kind in ("decision.approve", "signature.apply"):
        new = new or text("meaning")
        why = why or text("content_digest")
    elif kind == "commit.link":
        new = event.subject
        why = why or text("decision")
    elif kind == "retention.set":
        new = text("action")
    elif kind.startswith("auth.role"):
        new = text("role")
    elif kind == "erasure.tombstone":
        bodies = refs.get("bodies")
        old = f"{len(bodies)} bodies" if isinstance(bodies, tuple | list) else old
        new = "erased"
    return AuditTrailRow(
        entry=entry.index,
        ts=entry.ts,
        actor=event.actor.id,
        actor_name=event.actor.name,
        action=kind,
        record=event.subject or text("subject") or "",
        old=old,
        new=new,
        why=why,
        unverified=unverified,
    )
