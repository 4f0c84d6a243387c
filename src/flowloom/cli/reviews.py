"""`flowloom access-review …`: open, list, show and close access review campaigns.

Like `flowloom admin`, these work on the server's database directly and name the
instance owner they act for with `--as` (a claim, kept as ``refs.claimed_by``: the
command line proves no one). Deciding a line is an electronic signature, which needs a
sign-in: reviewers decide on a team server (POST .../access-reviews/{id}/lines/{line}).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from flowloom.cli.admin import _acting
from flowloom.cli.context import AppContext
from flowloom.errors import InputError
from flowloom.services import AuditLedgers

__all__ = ["access_review"]

_AS_HELP = "Act as this instance owner (email or usr_ id); recorded as a claim."


class _Options:
    def __init__(self, database: str | None) -> None:
        self.database = database


@contextmanager
def _reviews(ctx: click.Context) -> Iterator[Any]:
    """The access reviews over the database's directory and ledgers (no signing here)."""
    from flowloom.auth.directory import Directory
    from flowloom.auth.reviews import CLI_ACTOR, AccessReviews
    from flowloom.services import default_actor

    app = AppContext.of(ctx)
    options = ctx.find_object(_Options)
    url = (options.database if options else None) or app.settings().database
    ledgers = AuditLedgers(app.settings().with_overrides(database=url))
    try:
        ledgers.require_key()
        actor = {**CLI_ACTOR, "name": f"flowloom access-review ({default_actor()['id']})"}
        directory = Directory(url, audit=ledgers, default_actor=actor)
        try:
            yield AccessReviews(directory, ledgers.ledger)
        finally:
            directory.close()
    finally:
        ledgers.close()


def _scope(project: str | None, instance: bool) -> str:
    if instance == (project is not None):
        raise InputError("name a PROJECT or pass --instance (one of them)")
    return "*" if instance else str(project)


def _now() -> datetime:
    return datetime.now(UTC)


@click.group("access-review")
@click.option(
    "--database",
    metavar="URL",
    help="SQLite path or postgresql:// URL of the server database (default: settings).",
)
@click.pass_context
def access_review(ctx: click.Context, database: str | None) -> None:
    """Periodic access reviews: who holds which role, certified or revoked with a signature."""
    ctx.obj = _Options(database)


@access_review.command("open")
@click.argument("project", required=False)
@click.option("--instance", is_flag=True, help="Review every role on every project.")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.option("--dormant-days", type=int, help="No activity for this many days: dormant.")
@click.option("--due-days", type=int, help="Due this many days after opening.")
@click.option("--period-days", type=int, help="The period covered, up to today.")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
@click.pass_context
def open_(
    ctx: click.Context,
    project: str | None,
    instance: bool,
    acting: str,
    dormant_days: int | None,
    due_days: int | None,
    period_days: int | None,
    as_json: bool,
) -> None:
    """Open a campaign over PROJECT's roles (or the instance's), one line per person x role."""
    scope = _scope(project, instance)
    with _reviews(ctx) as reviews:
        campaign = reviews.open(
            _acting(reviews.directory, acting),
            scope,
            dormant_days=dormant_days,
            due_days=due_days,
            period_days=period_days,
        )
    if as_json:
        click.echo(json.dumps(campaign.to_json(_now()), indent=2))
        return
    counts = campaign.counts()
    click.echo(
        f"opened {campaign.id} over {scope}: {counts['lines']} lines, {counts['dormant']} "
        f"dormant; due {campaign.due_at}"
    )


@access_review.command("list")
@click.argument("project", required=False)
@click.option("--instance", is_flag=True, help="The instance's campaigns.")
@click.option("--status", type=click.Choice(["open", "closed"]), help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(
    ctx: click.Context, project: str | None, instance: bool, status: str | None, as_json: bool
) -> None:
    """List campaigns, newest first (of PROJECT, of the instance, or all)."""
    scope = None if project is None and not instance else _scope(project, instance)
    with _reviews(ctx) as reviews:
        found = reviews.find(scope, status=status)
    now = _now()
    if as_json:
        click.echo(json.dumps([c.to_json(now, with_lines=False) for c in found], indent=2))
        return
    for campaign in found:
        flag = " OVERDUE" if campaign.overdue(now) else ""
        click.echo(
            f"{campaign.id}  {campaign.scope}  {campaign.status}{flag}  opened "
            f"{campaign.opened_at}  due {campaign.due_at}"
        )


@access_review.command("show")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, campaign: str, as_json: bool) -> None:
    """Show CAMPAIGN and its lines: person, role, last activity, keys, decision."""
    with _reviews(ctx) as reviews:
        found = reviews.get(campaign)
    now = _now()
    if as_json:
        click.echo(json.dumps(found.to_json(now), indent=2))
        return
    overdue = " (overdue)" if found.overdue(now) else ""
    click.echo(f"{found.id} over {found.scope}: {found.status}{overdue}, due {found.due_at}")
    for line in found.lines:
        facts = line.facts
        keys = len(facts.get("api_keys", ())) + len(facts.get("virtual_keys", ()))
        dormant = " DORMANT" if facts.get("dormant") else ""
        click.echo(
            f"  {line.line:>3}  {facts.get('email') or line.user_id}  {line.role} on "
            f"{line.project}{' via team ' + line.team if line.team else ''}  last active "
            f"{facts.get('last_activity') or 'never'}{dormant}  keys {keys}  "
            f"{line.decision or 'pending'}"
        )


@access_review.command("dormant")
@click.argument("project", required=False)
@click.option("--instance", is_flag=True, help="Everyone with a role anywhere.")
@click.option("--days", type=int, help="No activity for this many days (default 90).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dormant(
    ctx: click.Context, project: str | None, instance: bool, days: int | None, as_json: bool
) -> None:
    """List accounts with a role on PROJECT (or anywhere) and no activity for --days."""
    scope = _scope(project, instance)
    with _reviews(ctx) as reviews:
        found = reviews.dormant(scope, days=days)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for account in found:
        click.echo(
            f"{account['email'] or account['user_id']}  last active "
            f"{account['last_activity'] or 'never'}{'  (disabled)' if account['disabled'] else ''}"
        )


@access_review.command("close")
@click.argument("campaign")
@click.option("--as", "acting", required=True, metavar="OWNER", help=_AS_HELP)
@click.pass_context
def close(ctx: click.Context, campaign: str, acting: str) -> None:
    """Close CAMPAIGN once every line is certified or revoked."""
    with _reviews(ctx) as reviews:
        done = reviews.close(_acting(reviews.directory, acting), campaign)
    counts = done.counts()
    click.echo(f"closed {done.id}: {counts['certified']} certified, {counts['revoked']} revoked")
