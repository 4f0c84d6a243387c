"""`flowloom gateway …`: run the LLM gateway (`serve`); key management lives in subcommands.

`serve` runs only the gateway: one uvicorn worker (httptools and uvloop when installed), recording
every exchange into the ledger database. Subcommands are imported when run, so
`flowloom gateway serve` loads neither the key tools nor anything else it does not use.
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

__all__ = ["gateway"]

# Subcommands other parts own, imported on use (name -> "module:attr").
# [access] adds its `gateway keys …` / `gateway providers …` groups here.
_LAZY_SUBCOMMANDS = {
    "keys": "flowloom.cli.gateway_keys:keys",
    "providers": "flowloom.cli.gateway_keys:providers",
}


class _GatewayGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        target = _LAZY_SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        found = getattr(importlib.import_module(module_name), attr)
        assert isinstance(found, click.Command)
        return found


@click.group(cls=_GatewayGroup)
def gateway() -> None:
    """The LLM gateway: provider-compatible endpoints that record every exchange."""


_KINDS = ("anthropic", "openai", "azure", "gemini", "openai_compatible")


@gateway.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Routing configuration (TOML, reloaded when it changes). Without it (and without "
    "--upstream), each provider's own model names go straight to it.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=int)
@click.option(
    "--record",
    type=click.Choice(["fail_closed", "spool"]),
    default="fail_closed",
    show_default=True,
    help="When the ledger is unavailable: refuse requests, or spool and keep serving.",
)
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Outbox directory for --record spool (default: gateway-outbox in FlowLoom's home).",
)
@click.option(
    "--upstream",
    metavar="KIND=URL",
    help="Without --config: send every call to one provider, e.g. anthropic=https://api.anthropic.com.",
)
@click.option(
    "--upstream-key-ref",
    metavar="NAME",
    help="With --upstream: the stored provider key to use (see `flowloom gateway providers`).",
)
@click.option(
    "--open-access",
    is_flag=True,
    help="Accept any caller key (no virtual keys, limits or budgets): local use only.",
)
@click.option("--otel", is_flag=True, help="Emit OpenTelemetry GenAI spans and metrics.")
@click.option(
    "--public-url",
    metavar="URL",
    help="Name project logs as the team server at URL does, to record into its database "
    "(with the same keys: FLOWLOOM_HOME).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None,
    host: str,
    port: int,
    record: str,
    spool_path: Path | None,
    upstream: str | None,
    upstream_key_ref: str | None,
    open_access: bool,
    otel: bool,
    public_url: str | None,
    log_level: str,
) -> None:
    """Run the gateway (one worker); point ANTHROPIC_BASE_URL / OPENAI_BASE_URL at it."""
    from flowloom.gateway.app import build_gateway
    from flowloom.gateway.providers.interface import ProviderConfig

    app_ctx = AppContext.of(ctx)
    settings = app_ctx.settings()
    provider = None
    if upstream is not None:
        kind, sep, url = upstream.partition("=")
        if not sep or kind not in _KINDS or not url:
            raise InputError(
                f"--upstream {upstream!r} is not KIND=URL",
                hint=f"KIND is one of {', '.join(_KINDS)}",
            )
        provider = ProviderConfig(
            name=kind,
            kind=kind,  # type: ignore[arg-type]
            base_url=url,
            api_key_ref=upstream_key_ref,
        )
    if open_access and host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(
            "--open-access lets anyone in: it is refused on a non-loopback host",
            hint="create virtual keys with `flowloom gateway keys create` instead",
        )
    gw = build_gateway(
        database=settings.database,
        config_path=config_path,
        record=record,
        spool_path=spool_path,
        project=settings.project,
        home=settings.home,
        provider=provider,
        access_database="none" if open_access else None,
        telemetry=otel,
        origin_prefix=_origin_prefix(public_url),
    )
    _run(gw, host, port, log_level)


def _run(app: object, host: str, port: int, log_level: str) -> None:
    import uvicorn

    # The recorder's thread must not hold the GIL for long while the event loop waits.
    sys.setswitchinterval(0.0005)
    # Everything loaded so far lives as long as the process: keep the collector off it, so
    # that a full collection does not walk every module while a request waits.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="auto",  # uvloop when installed (a dependency where it builds), else asyncio
        http="auto",  # httptools when installed, else h11
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    click.echo(f"flowloom: gateway serving on http://{host}:{port}", err=True)
    from flowloom.server.uvicorn_run import run_until_stopped

    run_until_stopped(config)


def _origin_prefix(public_url: str | None) -> str:
    """What the team server at `public_url` puts before '/<project>' in its log names."""
    if public_url is None:
        return "flowloom.local"
    from urllib.parse import urlsplit

    from flowloom.server.settings import origin_prefix_of

    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(
            f"--public-url {public_url!r} is not an http(s) URL",
            hint="give the team server's public URL, e.g. https://flowloom.example.com",
        )
    return origin_prefix_of(public_url)
