"""`flowloom gateway …`: run the LLM gateway (`serve`); key management lives in subcommands.

`serve` runs only the gateway (httptools and uvloop when installed), recording every exchange
into the ledger database: one process, or with `--workers N` N uvicorn worker processes on one
port, each building its own gateway from the same `ServeSpec` (limits and budgets are shared
through the database). Subcommands are imported when run, so `flowloom gateway serve` loads
neither the key tools nor anything else it does not use.
"""

from __future__ import annotations

import gc
import importlib
import os
import shutil
import sys
import tempfile
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
@click.option(
    "--otel",
    is_flag=True,
    help="Export OpenTelemetry GenAI spans and metrics over OTLP/HTTP (to the endpoint in "
    "OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes on the one port; rate limits and budgets hold across them.",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve Prometheus metrics at GET /metrics (aggregates only: no key, user, "
    "project or model labels).",
)
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
    workers: int,
    metrics: bool,
    public_url: str | None,
    log_level: str,
) -> None:
    """Run the gateway; point ANTHROPIC_BASE_URL / OPENAI_BASE_URL at it."""
    from flowloom.gateway.wiring import ServeSpec

    app_ctx = AppContext.of(ctx)
    settings = app_ctx.settings()
    kind = url = None
    if upstream is not None:
        kind, sep, url = upstream.partition("=")
        if not sep or kind not in _KINDS or not url:
            raise InputError(
                f"--upstream {upstream!r} is not KIND=URL",
                hint=f"KIND is one of {', '.join(_KINDS)}",
            )
    if open_access and host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(
            "--open-access lets anyone in: it is refused on a non-loopback host",
            hint="create virtual keys with `flowloom gateway keys create` instead",
        )
    spec = ServeSpec(
        database=settings.database,
        config_path=str(config_path) if config_path is not None else None,
        record=record,
        spool_path=str(spool_path) if spool_path is not None else None,
        project=settings.project,
        home=str(settings.home) if settings.home is not None else None,
        provider_kind=kind,
        provider_url=url,
        provider_key_ref=upstream_key_ref if upstream is not None else None,
        open_access=open_access,
        telemetry=otel,
        origin_prefix=_origin_prefix(public_url),
        metrics=metrics,
    )
    if workers == 1:
        from flowloom.gateway.wiring import build_served

        _run(build_served(spec), host, port, log_level)
    else:
        _run_workers(spec, workers, host, port, log_level)


def _run_workers(spec: object, workers: int, host: str, port: int, log_level: str) -> None:
    """N uvicorn workers on one socket, each building the gateway from `spec`.

    The spec is built once here first, so a bad configuration is a clear error before
    any worker starts (and the schema migrations run once). SIGTERM or Ctrl-C stops the
    workers gracefully: each finishes its requests, records what it owes, flushes its
    spend and gives back its leases. Metrics samples go to a directory made for this
    run (removed after), so any worker answers /metrics for all of them.
    """
    import asyncio

    import uvicorn

    from flowloom.gateway.metrics import MULTIPROC_ENV
    from flowloom.gateway.wiring import SPEC_ENV, ServeSpec, build_served

    assert isinstance(spec, ServeSpec)
    probe = build_served(spec)
    asyncio.run(_shutdown(probe))
    samples = tempfile.mkdtemp(prefix="flowloom-gateway-metrics-")
    os.environ[SPEC_ENV] = spec.to_json()
    os.environ[MULTIPROC_ENV] = samples
    click.echo(f"flowloom: gateway serving on http://{host}:{port} ({workers} workers)", err=True)
    try:
        uvicorn.run(
            "flowloom.gateway.wiring:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            loop="auto",
            http="auto",
            lifespan="on",
            log_level=log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
            # uvicorn kills a worker that does not answer its health ping in time (5 s by
            # default) and starts another: on a busy host a worker still importing would
            # be killed forever (LiteLLM's workers never come up so, bench_gateway.py).
            timeout_worker_healthcheck=60,
        )
    finally:
        shutil.rmtree(samples, ignore_errors=True)


async def _shutdown(app: object) -> None:
    """Close a gateway built only to check the configuration (behind /metrics or not)."""
    from flowloom.gateway.app import Gateway

    gateway = getattr(app, "app", app)
    assert isinstance(gateway, Gateway)
    await gateway.shutdown()


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
