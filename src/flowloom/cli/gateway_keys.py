"""`flowloom gateway keys …` and `flowloom gateway providers …`: virtual and upstream keys.

These commands work on the gateway's tables in the database directly (no gateway process
needed), as the operating-system user running them. Every security-relevant change is
recorded in the ledger: key events in the key's project log, provider-key events in the
log of the reserved project "flowloom-instance". Secrets are never printed, except a new
virtual key, once, on standard output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

if TYPE_CHECKING:
    from flowloom.gateway.access import Access, VirtualKey

__all__ = ["keys", "providers"]


@contextmanager
def _access(ctx: click.Context) -> Iterator[Access]:
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings
    from flowloom.ledger.providers import open_key_providers
    from flowloom.services import AuditLedgers, default_actor

    app = AppContext.of(ctx)
    settings = app.settings()
    audit = AuditLedgers(settings)
    providers = open_key_providers(settings.home, settings.keys)
    access = Access(
        settings.database,
        master_key_loader=lambda: providers.envelope(create=True),
        audit=audit,
        settings=AccessSettings(background=False),
        default_actor=default_actor(),
    )
    try:
        yield access
    finally:
        access.close()
        audit.close()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_json(key: VirtualKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "owner_kind": key.owner_kind,
        "owner": key.owner,
        "project": key.project,
        "models": list(key.models) if key.models is not None else None,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_usd": key.budget_usd,
        "period": key.period,
        "created_at": _when(key.created_at),
        "expires_at": _when(key.expires_at) if key.expires_at else None,
        "revoked_at": _when(key.revoked_at) if key.revoked_at else None,
    }


def _models(values: tuple[str, ...]) -> list[str] | None:
    patterns = [p.strip() for value in values for p in value.split(",") if p.strip()]
    return patterns or None


@click.group()
def keys() -> None:
    """Virtual keys callers use against the gateway (flv_…)."""


@keys.command("create")
@click.option("--name", help="A label for listings (default: the owner).")
@click.option("--owner-user", metavar="USER", help="The user who owns the key.")
@click.option("--owner-team", metavar="TEAM", help="The team that owns the key.")
@click.option(
    "--project",
    "key_project",
    metavar="PROJECT",
    help="Bind the key to a project (alone: the project owns the key).",
)
@click.option(
    "--models",
    multiple=True,
    metavar="GLOB",
    help="Allowed models, glob patterns ('claude-*'); repeat or separate with commas.",
)
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute.")
@click.option("--budget-usd", type=click.FloatRange(min=0), help="Budget in USD per period.")
@click.option("--period", type=click.Choice(["day", "month"]), default="month", show_default=True)
@click.option("--expires", metavar="DURATION", help="Expire after e.g. 90d, 24h, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the key).")
@click.pass_context
def create(
    ctx: click.Context,
    name: str | None,
    owner_user: str | None,
    owner_team: str | None,
    key_project: str | None,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    budget_usd: float | None,
    period: str,
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a virtual key; the key is printed once and cannot be shown again."""
    from flowloom.cli.admin import parse_duration

    expires_at = datetime.now(UTC) + parse_duration(expires) if expires else None
    with _access(ctx) as access:
        key, secret = access.create_key(
            name=name,
            owner_user=owner_user,
            owner_team=owner_team,
            project=key_project,
            models=_models(models),
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            period="day" if period == "day" else "month",
            expires_at=expires_at,
        )
    if as_json:
        click.echo(json.dumps({**_key_json(key), "key": secret}, indent=2))
        return
    click.echo(f"created virtual key {key.id} for {key.owner_kind} {key.owner}", err=True)
    click.echo("the key is shown once; store it now:", err=True)
    click.echo(secret)


@keys.command("list")
@click.option("--project", "key_project", help="Only keys bound to this project.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(
    ctx: click.Context, key_project: str | None, include_revoked: bool, as_json: bool
) -> None:
    """List virtual keys (never their secrets)."""
    with _access(ctx) as access:
        found = access.list_keys(project=key_project, include_revoked=include_revoked)
    if as_json:
        click.echo(json.dumps([_key_json(k) for k in found], indent=2))
        return
    if not found:
        click.echo("no virtual keys", err=True)
        return
    for k in found:
        limits = " ".join(
            part
            for part in (
                f"rpm={k.rpm}" if k.rpm else "",
                f"tpm={k.tpm}" if k.tpm else "",
                f"budget=${k.budget_usd:g}/{k.period}" if k.budget_usd is not None else "",
                "models=" + ",".join(k.models) if k.models else "",
                f"expires={_when(k.expires_at)}" if k.expires_at else "",
                "REVOKED" if k.revoked_at else "",
            )
            if part
        )
        click.echo(
            f"{k.id}\tflv_{k.prefix}_…\t{k.owner_kind}:{k.owner}\t{k.project or '-'}\t"
            f"{k.name}\t{limits}"
        )


@keys.command("revoke")
@click.argument("key")
@click.pass_context
def revoke(ctx: click.Context, key: str) -> None:
    """Revoke a virtual key (by id or prefix); gateways refuse it within seconds."""
    with _access(ctx) as access:
        revoked = access.revoke_key(key)
    click.echo(f"revoked {revoked.id}")


@keys.command("budget")
@click.argument("key")
@click.option("--budget-usd", type=click.FloatRange(min=0), help="New budget in USD.")
@click.option("--none", "no_budget", is_flag=True, help="Remove the budget.")
@click.option("--period", type=click.Choice(["day", "month"]))
@click.pass_context
def budget(
    ctx: click.Context, key: str, budget_usd: float | None, no_budget: bool, period: str | None
) -> None:
    """Change a key's budget (recorded as config.change)."""
    if (budget_usd is None) == (not no_budget):
        raise InputError("give either --budget-usd or --none")
    with _access(ctx) as access:
        updated = access.set_budget(
            key,
            None if no_budget else budget_usd,
            period=None if period is None else ("day" if period == "day" else "month"),
        )
    shown = "none" if updated.budget_usd is None else f"${updated.budget_usd:g}/{updated.period}"
    click.echo(f"{updated.id} budget: {shown}")


@keys.command("usage")
@click.option(
    "--by",
    type=click.Choice(["model", "key", "day", "provider", "project"]),
    default="model",
    show_default=True,
)
@click.option("--project", "key_project", help="Only this project's usage.")
@click.option("--key", help="Only this key's usage (id or prefix).")
@click.option("--since", metavar="YYYY-MM-DD")
@click.option("--until", metavar="YYYY-MM-DD")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def usage(
    ctx: click.Context,
    by: str,
    key_project: str | None,
    key: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Requests, tokens and cost, grouped by model, key, day, provider or project."""
    with _access(ctx) as access:
        rows = access.usage(by=by, project=key_project, key=key, since=since, until=until)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        by: r.group,
                        "requests": r.requests,
                        "input_tokens": r.input_tokens,
                        "output_tokens": r.output_tokens,
                        "cache_read_tokens": r.cache_read_tokens,
                        "cache_write_tokens": r.cache_write_tokens,
                        "cost_usd": r.cost_usd,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    click.echo(f"{by}\trequests\tinput\toutput\tcache_read\tcache_write\tcost_usd")
    for r in rows:
        click.echo(
            f"{r.group}\t{r.requests}\t{r.input_tokens}\t{r.output_tokens}\t"
            f"{r.cache_read_tokens}\t{r.cache_write_tokens}\t{r.cost_usd:.6f}"
        )


@click.group()
def providers() -> None:
    """Upstream provider API keys, stored encrypted."""


@providers.command("set-key")
@click.argument("name")
@click.pass_context
def set_key(ctx: click.Context, name: str) -> None:
    """Store the key NAME (as the routing config's api_key_ref) read from standard input."""
    line = sys.stdin.readline()
    secret = line.rstrip("\r\n")
    if not secret.strip():
        raise InputError("no key on standard input", hint="pipe it: ... | flowloom gateway ...")
    with _access(ctx) as access:
        info = access.set_provider_key(name, secret)
    click.echo(f"stored provider key {info.name} (encrypted)")


@providers.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_providers(ctx: click.Context, as_json: bool) -> None:
    """List stored provider keys by name (never the keys)."""
    with _access(ctx) as access:
        found = access.list_provider_keys()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "created_at": _when(p.created_at),
                        "updated_at": _when(p.updated_at),
                    }
                    for p in found
                ],
                indent=2,
            )
        )
        return
    for p in found:
        click.echo(f"{p.name}\tset {_when(p.created_at)}\tupdated {_when(p.updated_at)}")


@providers.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Remove the stored provider key NAME."""
    with _access(ctx) as access:
        access.delete_provider_key(name)
    click.echo(f"deleted provider key {name}")
