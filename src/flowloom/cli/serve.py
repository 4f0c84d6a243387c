"""`flowloom serve`: run the team server (HTTP API) under uvicorn.

SQLite by default, with no configuration (the same database the CLI uses); give a
postgresql:// URL for a team, and start as many processes as you like over it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext

if TYPE_CHECKING:
    from flowloom.gateway.app import Gateway
    from flowloom.server.state import ServerState

__all__ = ["serve"]


@click.command()
@click.option("--database", metavar="URL", help="SQLite path or postgresql:// URL.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default 8470).")
@click.option(
    "--public-url",
    metavar="URL",
    help="The URL clients use; it names every project's log (default http://HOST:PORT).",
)
@click.option(
    "--trusted-proxies",
    metavar="CIDR[,CIDR]",
    help="Reverse proxies whose X-Forwarded-For/-Proto are believed (default: none).",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the signing keys; share it between server processes.",
)
@click.option(
    "--create-admin",
    metavar="EMAIL",
    help="Create an instance owner with this email, print its API key once, and exit.",
)
@click.option(
    "--gateway",
    "gateway_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also serve the LLM gateway's provider routes (/v1/…, /v1beta/…, /openai/…) "
    "with this routing file; it records into the server's ledgers.",
)
@click.option(
    "--gateway-record",
    type=click.Choice(["fail_closed", "spool"]),
    default="fail_closed",
    show_default=True,
    help="With --gateway: refuse calls, or spool and keep serving, while the ledger is down.",
)
@click.option(
    "--gateway-project",
    metavar="PROJECT",
    help="With --gateway: the project recording exchanges of keys bound to none "
    "(default: the instance's own log).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.pass_context
def serve(
    ctx: click.Context,
    database: str | None,
    host: str | None,
    port: int | None,
    public_url: str | None,
    trusted_proxies: str | None,
    home: Path | None,
    create_admin: str | None,
    gateway_config: Path | None,
    gateway_record: str,
    gateway_project: str | None,
    log_level: str,
) -> None:
    """Run the FlowLoom server: projects, users, keys and each project's ledger over HTTP."""
    from flowloom.server.build import build_server
    from flowloom.server.settings import load_server_settings

    settings = load_server_settings().with_overrides(
        database=database or AppContext.of(ctx).database,
        host=host,
        port=port,
        public_url=public_url,
        trusted_proxies=trusted_proxies,
        home=home,
    )
    if gateway_config is not None:
        # The providers page shows the policy of the gateway served here.
        settings = settings.with_overrides(gateway=replace(settings.gateway, config=gateway_config))
    server = build_server(settings)
    try:
        if create_admin is not None:
            _create_admin(server, create_admin)
            return
        gateway = None
        if gateway_config is not None:
            gateway = _gateway(server, gateway_config, gateway_record, gateway_project)
            _forget_deprovisioned(server, gateway)
        _run(server, log_level, gateway)
    finally:
        server.close()


def _gateway(server: ServerState, config: Path, record: str, project: str | None) -> Gateway:
    """The gateway over the server's own ledgers and database (virtual keys included)."""
    from flowloom.gateway.app import GatewaySettings
    from flowloom.gateway.wiring import build
    from flowloom.server import INSTANCE_PROJECT

    default_project = project or INSTANCE_PROJECT
    if project is not None:
        server.directory.get_project(project)  # NotFoundError names it before start-up
    settings = server.settings
    return build(
        database=settings.database,
        config_path=config,
        record=record,
        spool_path=None,
        project=default_project,
        home=settings.home,
        settings=GatewaySettings(default_project=default_project),
        provider=None,
        access_database=None,
        telemetry=False,
        ledgers=server.ledgers,
    )


def _forget_deprovisioned(server: ServerState, gateway: Gateway) -> None:
    """Make the gateway served here refuse a deprovisioned user's keys on their next
    request: its key cache forgets them when the user is disabled or deleted."""
    from flowloom.gateway.access import Access
    from flowloom.server.deprovision import owners_of, record_revoked

    access = gateway.access
    if server.provisioning is None or not isinstance(access, Access):
        return

    def cut_off(user: Any, by: Any, why: str) -> None:
        record_revoked(server, access.revoke_owned_keys("user", owners_of(user)), user, by, why)

    server.provisioning.add_cut_off(cut_off)


def _create_admin(server: ServerState, email: str) -> None:
    from flowloom.auth.permissions import ALL_PROJECTS

    user = server.directory.create_user(email, email.split("@")[0] or email)
    server.directory.grant(user.id, ALL_PROJECTS, "owner")
    _, secret = server.directory.create_key(user.id, name="bootstrap")
    click.echo(f"created instance owner {email} (user {user.id}); API key, shown once:", err=True)
    click.echo(secret)


def _run(server: ServerState, log_level: str, gateway: Gateway | None = None) -> None:
    import uvicorn

    from flowloom.server.app import create_app

    settings = server.settings
    app: Any = create_app(server)
    if gateway is not None:
        from flowloom.server.gateway_mount import GatewayMount

        app = GatewayMount(app, gateway)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level == "debug",
        server_header=False,
        timeout_graceful_shutdown=10,
        # Proxy headers are the app's to judge (flowloom.server.edge, --trusted-proxies);
        # uvicorn's default would believe them from loopback.
        proxy_headers=False,
    )
    click.echo(
        f"flowloom: serving on http://{settings.host}:{settings.port} "
        f"(public URL {settings.public_url})",
        err=True,
    )
    from flowloom.server.uvicorn_run import run_until_stopped

    run_until_stopped(config)
