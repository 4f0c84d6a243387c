"""`flowloom dev …`: developer tools; `dev mock-provider` runs the local provider simulator.

The simulator lets the gateway, its tests and its benchmarks run without network access
or provider keys, and makes failures (429, 5xx, 529, disconnects, slow streams)
reproducible on demand.
"""

from __future__ import annotations

import click

__all__ = ["dev"]


@click.group()
def dev() -> None:
    """Developer tools (the local provider simulator)."""


@dev.command("mock-provider")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8090, show_default=True, help="Port."
)
@click.option(
    "--faults",
    metavar="SPEC",
    help='Server-wide faults, e.g. "429:0.1,500:0.05,claude-opus*@529:1" (see docs).',
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault RNG.")
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Added before every answer (a provider's think time).",
)
@click.option("--region", help="Region reported in the x-mock-region response header.")
@click.option(
    "--context-window",
    type=click.IntRange(min=1),
    help="Context window (tokens) for every model; default: each provider's usual one.",
)
@click.option(
    "--log-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Requests kept for GET /_mock/requests.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
def mock_provider(
    host: str,
    port: int,
    faults: str | None,
    seed: int,
    latency_ms: float,
    region: str | None,
    context_window: int | None,
    log_size: int,
    log_level: str,
) -> None:
    """Run a fake Anthropic / OpenAI / Azure / Gemini API speaking each exact wire format."""
    from flowloom.gateway.mock import MockConfig, parse_fault_spec, serve

    parse_fault_spec(faults)  # an InputError (exit 3) now rather than at the first request
    config = MockConfig(
        faults=faults,
        seed=seed,
        latency_ms=latency_ms,
        region=region,
        context_window=context_window,
        log_size=log_size,
    )
    from flowloom.server.uvicorn_run import sigterm_exits_cleanly

    click.echo(f"flowloom mock provider on http://{host}:{port}", err=True)
    with sigterm_exits_cleanly():  # stopped by its pid: exit status 0, like the servers
        serve(config, host=host, port=port, log_level=log_level)
