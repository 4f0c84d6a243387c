"""`flowloom retention …`: legal holds, the purge plan, and the purge of expired bodies.

A thin command line over flowloom.compliance.retention: holds and releases are
``retention.set`` events, a purge appends an ``erasure.tombstone`` per data subject before
its key and bodies go. Retention periods come from the committed ``[compliance.retention]``
table of the repository around the current directory (defaults outside one), so the
periods a purge obeys are the reviewed ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.compliance.settings import RECORD_CLASSES
from flowloom.errors import ConflictError, InputError

if TYPE_CHECKING:
    from flowloom.compliance.retention import Hold, PurgeCandidate
    from flowloom.compliance.settings import ComplianceSettings
    from flowloom.ledger.log import Ledger
    from flowloom.ledger.provenance import Trust

__all__ = ["retention"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _ledger(ctx: click.Context) -> Ledger:
    app = AppContext.of(ctx)
    project = app.settings().project
    app.local_only(
        "the retention plan and purge",
        f"FLOWLOOM_HOME=<the server's home> flowloom --database <the server's database> "
        f"--project {project} retention ...",
    )
    return app.services().ledger


def _holds_path(project: str) -> str:
    from urllib.parse import quote

    return f"/api/v1/projects/{quote(project, safe='')}/compliance/holds"


def _server_hold(ctx: click.Context, body: dict[str, Any]) -> int:
    """Place or release a hold on the team server (its POST compliance/holds): the
    server appends and attests the retention.set itself, as the API key's user."""
    http, project = AppContext.of(ctx).server_http()
    answer = http.post_json(_holds_path(project), body)
    entry = answer.get("entry") if isinstance(answer, dict) else None
    if not isinstance(entry, int):
        from flowloom.errors import RemoteError

        raise RemoteError("the server answered a legal hold without its entry")
    return entry


def _trust(ctx: click.Context) -> Trust:
    """Whose holds and releases count (one appended by hand neither holds nor releases)."""
    return AppContext.of(ctx).trust()


def _settings(*, purging: bool = False, default_periods: bool = False) -> ComplianceSettings:
    """The committed [compliance] settings of the repository here (defaults without one).

    A purge destroys bodies for good, so it does not fall back to the default periods
    silently: outside a repository it needs `--default-periods`.
    """
    from flowloom.compliance.settings import load_compliance_settings
    from flowloom.repo.git import GitError, GitRepo

    try:
        top = GitRepo.discover(Path.cwd()).top()
    except GitError:
        top = None
    if top is None and purging and not default_periods:
        raise InputError(
            "not in a git repository: the project's committed retention periods are unknown",
            hint="run the purge in the project's repository, or pass --default-periods to "
            "purge by FlowLoom's default periods",
        )
    return load_compliance_settings(top)


def _pseudonym(ledger: Ledger, subject: str) -> str:
    """A data subject as the store knows it: pseudonyms pass through, names are hashed."""
    from flowloom.ledger.body import subject_pseudonym

    subject = subject.strip()
    if not subject:
        raise InputError("a data subject must not be empty")
    return subject if subject.startswith("subj:") else subject_pseudonym(ledger.log, subject)


def _hold_json(hold: Hold) -> dict[str, Any]:
    from flowloom.ledger.event import format_ts

    return {
        "id": hold.id,
        "scope": hold.scope,
        "reason": hold.reason,
        "placed_at": format_ts(hold.placed_at),
        "entry": hold.entry,
        "released_at": format_ts(hold.released_at) if hold.released_at else None,
        "release_entry": hold.release_entry,
    }


def _candidate_json(plan: PurgeCandidate) -> dict[str, Any]:
    from flowloom.ledger.event import format_ts

    return {
        "subject": plan.subject,
        "bodies": len(plan.digests),
        "classes": list(plan.classes),
        "due_at": format_ts(plan.due_at) if plan.due_at else None,
        "purgeable": plan.purgeable,
        "blocked": plan.blocked,
    }


@click.group()
def retention() -> None:
    """Legal holds and the retention purge (only bodies are purged; the chain verifies)."""


@retention.command("hold")
@click.option("--id", "hold_id", required=True, help="The hold's id, e.g. LH-2026-1.")
@click.option("--reason", required=True, help="Why: the matter, the request, the case.")
@click.option(
    "--subject",
    "data_subject",
    help="Hold only this data subject's bodies (a name or its subj: pseudonym).",
)
@click.option(
    "--class",
    "record_class",
    type=click.Choice(list(RECORD_CLASSES)),
    help="Hold only bodies of this record class.",
)
@_JSON
@click.pass_context
def hold(
    ctx: click.Context,
    hold_id: str,
    reason: str,
    data_subject: str | None,
    record_class: str | None,
    as_json: bool,
) -> None:
    """Place a legal hold: nothing it covers is purged or erased until it is released."""
    from flowloom.compliance.history import LedgerView
    from flowloom.compliance.retention import holds, place_hold

    if data_subject is not None and record_class is not None:
        raise InputError("give --subject or --class, not both", hint="place two holds instead")
    if AppContext.of(ctx).team_server() is not None:
        scope = f"class:{record_class}" if record_class is not None else "all"
        if data_subject is not None:
            if not data_subject.startswith("subj:"):
                raise InputError(
                    "on a team server a data subject is named by the server's pseudonym",
                    hint="give --subject subj:<hex> as the server's records show it",
                )
            scope = f"subject:{data_subject}"
        body = {"action": "hold", "id": hold_id, "reason": reason, "scope": scope}
        index = _server_hold(ctx, body)
        if as_json:
            click.echo(json.dumps({"hold": hold_id, "scope": scope, "entry": index}))
        else:
            click.echo(f"legal hold {hold_id} placed over {scope} (entry {index})")
        return
    ledger = _ledger(ctx)
    view = LedgerView.load(ledger.store, ledger.log, _trust(ctx))
    if any(h.id == hold_id and h.released_at is None for h in holds(view)):
        raise ConflictError(
            f"legal hold {hold_id} is already in force",
            hint="choose another id, or release it first",
        )
    scope = "all"
    if data_subject is not None:
        scope = "subject:" + _pseudonym(ledger, data_subject)
    elif record_class is not None:
        scope = f"class:{record_class}"
    index = place_hold(ledger, hold_id, reason=reason, scope=scope)
    if as_json:
        click.echo(json.dumps({"hold": hold_id, "scope": scope, "entry": index}))
    else:
        click.echo(f"legal hold {hold_id} placed over {scope} (entry {index})")


@retention.command("release")
@click.option("--id", "hold_id", required=True, help="The hold to release.")
@click.option("--reason", required=True, help="Why it ends: case closed, request withdrawn.")
@_JSON
@click.pass_context
def release(ctx: click.Context, hold_id: str, reason: str, as_json: bool) -> None:
    """Release a legal hold; what it kept becomes subject to retention again."""
    from flowloom.compliance.retention import release_hold

    if AppContext.of(ctx).team_server() is not None:
        index = _server_hold(ctx, {"action": "release", "id": hold_id, "reason": reason})
    else:
        index = release_hold(_ledger(ctx), hold_id, reason=reason, trust=_trust(ctx))
    if as_json:
        click.echo(json.dumps({"hold": hold_id, "entry": index}))
    else:
        click.echo(f"legal hold {hold_id} released (entry {index})")


@retention.command("holds")
@click.option("--all", "show_all", is_flag=True, help="Include released holds.")
@_JSON
@click.pass_context
def list_holds(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List the legal holds in force (or every hold, with --all)."""
    from flowloom.compliance.history import LedgerView
    from flowloom.compliance.retention import holds

    if AppContext.of(ctx).team_server() is not None:
        _server_holds(ctx, show_all, as_json)
        return
    ledger = _ledger(ctx)
    found = [
        h
        for h in holds(LedgerView.load(ledger.store, ledger.log, _trust(ctx)))
        if show_all or h.released_at is None
    ]
    if as_json:
        click.echo(json.dumps([_hold_json(h) for h in found], indent=1))
        return
    if not found:
        click.echo("no legal hold is in force" if not show_all else "no legal holds recorded")
    for h in found:
        state = "in force" if h.released_at is None else f"released at entry {h.release_entry}"
        click.echo(f"{h.id}\t{h.scope}\t{state}\t{h.reason}")


def _server_holds(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """The holds as the team server counts them (its GET compliance/holds)."""
    http, project = AppContext.of(ctx).server_http()
    answer = http.get_json(_holds_path(project), {"active": "false" if show_all else "true"})
    found = answer.get("holds") if isinstance(answer, dict) else None
    if not isinstance(found, list):
        from flowloom.errors import RemoteError

        raise RemoteError("the server's answer about legal holds has no holds")
    if as_json:
        click.echo(json.dumps(found, indent=1))
        return
    if not found:
        click.echo("no legal hold is in force" if not show_all else "no legal holds recorded")
    for h in found:
        released = h.get("released_at")
        state = "in force" if released is None else f"released at entry {h.get('release_entry')}"
        click.echo(f"{h.get('id')}\t{h.get('scope')}\t{state}\t{h.get('reason')}")


@retention.command("plan")
@_JSON
@click.pass_context
def plan(ctx: click.Context, as_json: bool) -> None:
    """Show each data subject's stored bodies, when retention ends, and what blocks a purge."""
    from flowloom.compliance.retention import plan_purge

    plans = plan_purge(_ledger(ctx), _settings(), now=datetime.now(UTC), trust=_trust(ctx))
    if as_json:
        click.echo(json.dumps([_candidate_json(p) for p in plans], indent=1))
        return
    if not plans:
        click.echo("no bodies are stored with a data subject: nothing to purge")
    for p in plans:
        row = _candidate_json(p)
        state = "due" if p.purgeable else f"kept: {p.blocked}"
        click.echo(f"{p.subject}\t{row['bodies']} bodies\t{','.join(p.classes) or '-'}\t{state}")


@retention.command("purge")
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    help="Purge exactly this data subject (name or subj: pseudonym; repeatable). "
    "Refuses, purging nothing, if any is not due or is held.",
)
@click.option("--reason", required=True, help="Why, as recorded in each tombstone.")
@click.option(
    "--default-periods",
    is_flag=True,
    help="Outside a repository: purge by FlowLoom's default retention periods.",
)
@_JSON
@click.pass_context
def purge_command(
    ctx: click.Context,
    subjects: tuple[str, ...],
    reason: str,
    default_periods: bool,
    as_json: bool,
) -> None:
    """Purge the bodies whose retention ended and that no legal hold covers."""
    from flowloom.compliance.retention import purge

    ledger = _ledger(ctx)
    chosen = [_pseudonym(ledger, s) for s in subjects] if subjects else None
    settings = _settings(purging=True, default_periods=default_periods)
    result = purge(
        ledger,
        settings,
        now=datetime.now(UTC),
        trust=_trust(ctx),
        reason=reason,
        subjects=chosen,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "purged": [
                        {"subject": s, "tombstone": i, "bodies": list(d)}
                        for s, i, d in result.purged
                    ],
                    "kept": [_candidate_json(p) for p in result.refused],
                },
                indent=1,
            )
        )
        return
    for subject, index, digests in result.purged:
        click.echo(f"purged {subject}: {len(digests)} bodies (tombstone entry {index})")
    for kept in result.refused:
        click.echo(f"kept {kept.subject}: {kept.blocked}")
    if not result.purged:
        click.echo("nothing was due: nothing purged")
