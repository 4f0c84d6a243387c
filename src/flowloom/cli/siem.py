"""`flowloom siem …`: SIEM destinations, their status, a test event, and forwarding.

The commands work on the database directly (no server needed), as the operating-system
user running them; configuration changes are recorded in the ledger (`config.change`)
of the project, or of the reserved project "flowloom-instance" with --instance, whose
destinations receive every project's security events. Tokens and API keys are read
from standard input and stored encrypted like the gateway's provider keys.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

if TYPE_CHECKING:
    from flowloom.siem.service import Siem

__all__ = ["siem"]

INSTANCE_PROJECT = "flowloom-instance"


@contextmanager
def _siem(ctx: click.Context) -> Iterator[Siem]:
    import socket

    from flowloom import __version__
    from flowloom.auth.schema import make_engine
    from flowloom.gateway.access.vault import ProviderKeyVault
    from flowloom.ledger.providers import open_key_providers
    from flowloom.server.settings import load_server_settings
    from flowloom.services import AuditLedgers, open_store
    from flowloom.siem.book import SiemBook
    from flowloom.siem.service import Siem

    settings = AppContext.of(ctx).settings()
    outbound = load_server_settings().outbound  # the same allow-list as `flowloom serve`
    audit = AuditLedgers(settings)
    providers = open_key_providers(settings.home, settings.keys)
    store = open_store(settings.database)
    engine = make_engine(settings.database)
    try:
        yield Siem(
            SiemBook(engine),
            store,
            sealer=ProviderKeyVault(lambda: providers.envelope(create=True)),
            audit=audit,
            instance_project=INSTANCE_PROJECT,
            hostname=socket.gethostname(),
            version=__version__,
            outbound=outbound,
        )
    finally:
        engine.dispose()
        store.close()
        audit.close()


def _project(ctx: click.Context, instance: bool) -> str:
    return INSTANCE_PROJECT if instance else AppContext.of(ctx).settings().project


_instance = click.option(
    "--instance", is_flag=True, help="The instance's destinations (every project's events)."
)


@click.group()
def siem() -> None:
    """Stream security events (sign-ins, roles, keys, overrides, failures) to a SIEM."""


@siem.command("configure")
@click.argument("name")
@click.option("--kind", type=click.Choice(["syslog", "hec", "elastic"]), required=True)
@click.option("--target", required=True, help="tcp://host:port, tls://host:port or a URL.")
@click.option("--format", "fmt", type=click.Choice(["rfc5424", "cef", "ocsf"]), default=None)
@click.option("--secret-stdin", is_flag=True, help="Read the HEC token / API key from stdin.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--server-name", default=None, help="The name on the receiver's certificate.")
@click.option("--index", default=None, help="Splunk index / Elastic index.")
@click.option("--sourcetype", default=None, help="Splunk sourcetype (default: ocsf).")
@_instance
@click.pass_context
def configure(
    ctx: click.Context,
    name: str,
    kind: str,
    target: str,
    fmt: str | None,
    secret_stdin: bool,
    ca_file: str | None,
    server_name: str | None,
    index: str | None,
    sourcetype: str | None,
    instance: bool,
) -> None:
    """Add or change destination NAME (recorded in the ledger)."""
    from pathlib import Path

    from flowloom.services import default_actor

    secret = sys.stdin.read().strip() if secret_stdin else None
    if secret_stdin and not secret:
        raise InputError("no secret on standard input", hint="pipe the token into the command")
    options: dict[str, Any] = {
        "ca_pem": Path(ca_file).read_text("utf-8") if ca_file else None,
        "server_name": server_name,
        "index": index,
        "sourcetype": sourcetype,
    }
    with _siem(ctx) as service:
        dest = service.configure(
            _project(ctx, instance),
            name,
            kind=kind,
            target=target,
            format=fmt,
            secret=secret,
            options={k: v for k, v in options.items() if v},
            actor=default_actor(),
        )
    click.echo(json.dumps(dest.public(), sort_keys=True))


@siem.command("remove")
@click.argument("name")
@_instance
@click.pass_context
def remove(ctx: click.Context, name: str, instance: bool) -> None:
    """Remove destination NAME and its cursors (recorded in the ledger)."""
    from flowloom.services import default_actor

    with _siem(ctx) as service:
        service.remove(_project(ctx, instance), name, actor=default_actor())
    click.echo(f"removed {name}")


@siem.command("status")
@_instance
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, instance: bool, as_json: bool) -> None:
    """Each destination: where its cursors stand, how far behind, the last error."""
    with _siem(ctx) as service:
        rows = service.status(_project(ctx, instance))
    out = [
        {
            **row.destination.public(),
            "cursors": {
                log: {
                    "next_index": c.next_index,
                    "delivered": c.delivered,
                    "last_error": c.last_error,
                }
                for log, c in row.cursors.items()
            },
            "behind": dict(row.behind),
        }
        for row in rows
    ]
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    if not out:
        click.echo("no SIEM destinations (add one: flowloom siem configure NAME ...)")
    for item in out:
        errors = [c["last_error"] for c in item["cursors"].values() if c["last_error"]]
        behind = sum(item["behind"].values())
        line = f"{item['name']}\t{item['kind']}/{item['format']}\t{item['target']}\t"
        click.echo(line + f"behind {behind}" + (f"\terror: {errors[0]}" if errors else ""))


@siem.command("send-test")
@click.argument("name")
@_instance
@click.pass_context
def send_test(ctx: click.Context, name: str, instance: bool) -> None:
    """Send one `siem.test` event to NAME now."""
    with _siem(ctx) as service:
        event = service.send_test(_project(ctx, instance), name)
    click.echo(f"sent {event.kind} {event.uid} to {name}")


@siem.command("forward")
@click.argument("name", required=False)
@_instance
@click.pass_context
def forward(ctx: click.Context, name: str | None, instance: bool) -> None:
    """One pass: deliver what each destination has not acknowledged yet (exit 9 on a
    delivery failure; the next pass resumes at the cursor)."""
    from flowloom.siem.transports import DeliveryError

    with _siem(ctx) as service:
        results = service.forward(_project(ctx, instance), name)
    for result in results:
        state = f"error: {result.error}" if result.error else "ok"
        click.echo(f"{result.name}\tdelivered {result.delivered}\t{state}")
    failed = [r for r in results if r.error]
    if failed:
        raise DeliveryError(f"{len(failed)} destination(s) did not take their events")


@siem.command("run")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option("--passes", type=click.IntRange(min=1), default=None, help="Stop after N.")
@_instance
@click.pass_context
def run(ctx: click.Context, interval: float, passes: int | None, instance: bool) -> None:
    """Forward continuously: a pass every INTERVAL seconds, backing off while a
    receiver is down (up to 5 minutes), until interrupted."""
    stop = threading.Event()
    done, delay = 0, interval
    with _siem(ctx) as service:
        while not stop.is_set():
            results = service.forward(_project(ctx, instance))
            for result in results:
                if result.delivered or result.error:
                    state = f"error: {result.error}" if result.error else "ok"
                    click.echo(f"{result.name}\tdelivered {result.delivered}\t{state}")
            delay = min(delay * 2, 300.0) if any(r.error for r in results) else interval
            done += 1
            if passes is not None and done >= passes:
                break
            stop.wait(delay)
