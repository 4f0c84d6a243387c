"""`flowloom mcp`: serve the project's decisions and memory to AI assistants over MCP.

stdout belongs to the protocol on stdio, so everything this command says goes to stderr.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from flowloom.cli.context import AppContext
from flowloom.config import find_git_dirs
from flowloom.errors import InputError

__all__ = ["mcp"]


@click.command()
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: launched by an assistant (Claude Code); http: streamable HTTP with API keys.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="HTTP: port (0 picks a free one and says which on stderr).",
)
@click.pass_context
def mcp(ctx: click.Context, transport: str, host: str, port: int) -> None:
    """Run the MCP server (tools: why, search_memory, record_decision, ...).

    Over HTTP every request needs `Authorization: Bearer flk_...` (see
    `flowloom admin create-key`); the key's user needs ledger.read on the project, and
    ledger.append to record. Logs go to stderr.
    """
    from flowloom.mcp.app import run_http, run_stdio
    from flowloom.mcp.server import LogLevel

    level: LogLevel = "DEBUG" if os.environ.get("FLOWLOOM_DEBUG") else "WARNING"
    logging.basicConfig(level=level, format="flowloom mcp: %(levelname)s %(name)s: %(message)s")
    app = AppContext.of(ctx)
    settings = app.settings()
    cwd = Path.cwd()
    chosen = app.database is not None or "FLOWLOOM_DATABASE" in settings.sources
    if find_git_dirs(cwd) is None and not chosen:
        # Outside a repository the default ledger is the per-user one, which holds no
        # project's record: serving it would answer every question with nothing.
        raise InputError(
            f"flowloom mcp was started outside a git repository ({cwd}), so it has no "
            "project ledger to serve",
            hint="start it in the repository's work tree (the client entry's cwd), "
            "or name the ledger with --database/FLOWLOOM_DATABASE and --project",
        )
    if transport == "stdio":
        run_stdio(settings, cwd, log_level=level)
        return
    if not host.strip():
        raise InputError("--host is empty", hint="for example --host 127.0.0.1")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"flowloom mcp: note: listening on {host} without TLS; put it behind a TLS proxy",
            err=True,
        )
    run_http(settings, cwd, host=host, port=port, log_level=level)
