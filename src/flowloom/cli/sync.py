"""`flowloom sync`: send the outbox to the server and check that its log kept its history.

Thin: `flowloom.client.link.ServerLink` does the work; this formats what it did. Exit 0
when everything was sent and the server's log extends the checkpoint kept before; 1
when it does not (the server rewrote history: docs/sync.md); 7/8/6 for a refused key,
a refused action or an unknown project; 9 when the server cannot be reached (the
events stay queued, in order).
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from flowloom.cli.context import AppContext
from flowloom.client.link import ServerLink
from flowloom.errors import RemoteError

__all__ = ["sync"]


def _state_dir() -> str:
    from flowloom.capture.agents.common import locate

    return locate(os.getcwd()).state_dir


def _link(ctx: click.Context, vkey: str | None, echo: bool) -> ServerLink:
    settings = AppContext.of(ctx).settings()
    if vkey is not None:
        settings = settings.with_overrides(server_vkey=vkey)
    observer = (lambda line: click.echo(line)) if echo else None
    return ServerLink.from_settings(settings, _state_dir(), observer=observer)


@click.group("sync", invoke_without_command=True)
@click.option("--check-only", is_flag=True, help="Only verify the server's log; send nothing.")
@click.option(
    "--vkey",
    metavar="VKEY",
    help="Pin this verifier key (name+id+key) instead of trusting the server's on first use.",
)
@click.option(
    "--repin",
    is_flag=True,
    help="First forget the pinned key, kept checkpoint and alarm (after investigating one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def sync(
    ctx: click.Context, check_only: bool, vkey: str | None, repin: bool, as_json: bool
) -> None:
    """Send queued events to the server, then verify its log against the kept checkpoint."""
    if ctx.invoked_subcommand is not None:
        return
    from flowloom.events.outbox import SpoolLock
    from flowloom.sinks.server import send_outbox

    link = _link(ctx, vkey, echo=not as_json)
    result: dict[str, Any] = {"server": link.server_url, "project": link.project}
    if repin:
        link.trust().repin()
        result["repinned"] = True
        if not as_json:
            click.echo(
                f"forgot the pinned key and checkpoint of {link.server_url} ({link.project})"
            )
    if not check_only:
        with SpoolLock(link.spool_dir, wait_s=30.0) as lock:
            if not lock.acquired:
                raise RemoteError(
                    "another FlowLoom process is sending the outbox",
                    hint="wait for it, then run 'flowloom sync' again",
                )
            report = send_outbox(link)
        result.update(
            sent=report.sent,
            files=report.files,
            replaced=report.replaced,
            waiting=report.remaining,
        )
        if report.error is not None:
            if not as_json:
                click.echo(
                    f"sent {report.sent} event(s); {report.remaining} spool file(s) "
                    "still queued, in order"
                )
            raise report.error
        if not as_json:
            click.echo(
                f"sent {report.sent} event(s) to {link.server_url} (project {link.project})"
                if report.sent
                else "nothing to send: the outbox is empty"
            )
    check = link.check()
    result.update(
        size=check.new_size,
        root=check.root_hex,
        previous_size=check.old_size,
        vkey=check.vkey,
        pinned_now=check.pinned,
    )
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    if check.pinned:
        how = (
            "as given" if link.given_vkey else "trust on first use: compare it with the operator's"
        )
        click.echo(f"pinned the log's key {check.vkey} ({how})")
    if check.old_size and check.new_size > check.old_size:
        click.echo(
            f"checkpoint {check.new_size} verified: consistent with checkpoint "
            f"{check.old_size} kept before"
        )
    elif check.old_size:
        click.echo(f"checkpoint {check.new_size} verified: the same tree as before")
    else:
        click.echo(f"checkpoint {check.new_size} verified and kept")


@sync.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the configured server, the pinned key, the kept checkpoint and the outbox."""
    from flowloom.client.trust import ServerTrust
    from flowloom.events.drain import waiting_total
    from flowloom.events.outbox import outbox_dirs

    settings = AppContext.of(ctx).settings()
    state_dir = _state_dir()
    spool_dir = os.path.join(state_dir, "spool")
    waiting = waiting_total(outbox_dirs(spool_dir))
    info: dict[str, Any] = {
        "server": settings.server_url,
        "project": settings.project,
        "waiting": waiting,
    }
    if settings.server_url is not None:
        if settings.api_key:
            info["api_key"] = "FLOWLOOM_API_KEY"
        elif settings.api_key_file is not None:
            info["api_key"] = str(settings.api_key_file)
        else:
            info["api_key"] = None
        state = ServerTrust(state_dir, settings.server_url, settings.project).load()
        info.update(
            vkey=state.vkey,
            pinned_by=state.data.get("pinned_by"),
            pinned_at=state.data.get("pinned_at"),
            size=state.size if state.checkpoint else None,
            checked_at=state.data.get("checked_at"),
            last_error=state.last_error,
            alarm=state.alarm,
        )
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    if settings.server_url is None:
        click.echo("server: none configured (events go to the local ledger)")
        click.echo(f"spool: {waiting} file(s) waiting for the local drainer")
        return
    key = info["api_key"]
    click.echo(f"server: {settings.server_url} (project {settings.project})")
    click.echo(f"API key: {'from ' + key if key else 'MISSING (set FLOWLOOM_API_KEY)'}")
    if info["vkey"]:
        click.echo(f"pinned key: {info['vkey']} ({info['pinned_by']}, {info['pinned_at']})")
    else:
        click.echo("pinned key: none yet (the next 'flowloom sync' pins it)")
    if info["size"] is not None:
        click.echo(f"kept checkpoint: size {info['size']}, verified {info['checked_at']}")
    else:
        click.echo("kept checkpoint: none yet")
    click.echo(f"outbox: {waiting} spool file(s) waiting" if waiting else "outbox: empty")
    if info["last_error"]:
        click.echo(f"last error: {info['last_error']}")
    if info["alarm"]:
        click.echo(f"ALARM: {info['alarm']} (see docs/sync.md)")
