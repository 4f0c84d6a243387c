"""The `flowloom` command: option parsing, and the one place errors become exit codes.

Commands are thin: they build services and format what the services return. Every
FlowLoomError is caught here once and printed as a single line; exit codes are listed
in docs/exit-codes.md.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from flowloom.__main__ import dispatch_light

# The console script imports this module before calling main(): hook commands
# (flowloom/__main__.py LIGHT_COMMANDS) run here, before click and the CLI are imported.
if os.path.basename(sys.argv[0]).removesuffix(".exe") == "flowloom":
    dispatch_light(sys.argv)

import click

from flowloom import __version__
from flowloom.cli.context import AppContext
from flowloom.errors import EXIT_USAGE, FlowLoomError

__all__ = ["cli", "main"]


class LazyGroup(click.Group):
    """A group whose commands are imported when run, so `flowloom X` loads only X."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowloom")
@click.option(
    "--database",
    envvar="FLOWLOOM_DATABASE",
    metavar="URL",
    help="SQLite path or postgresql:// URL (default: the repository's .git/flowloom/ledger.db).",
)
@click.option("--project", envvar="FLOWLOOM_PROJECT", help="Project (log) name.")
@click.pass_context
def cli(ctx: click.Context, database: str | None, project: str | None) -> None:
    """FlowLoom: a verifiable record of every AI-assisted change and the decision behind it."""
    app = AppContext(database=database, project=project)
    ctx.obj = app
    ctx.call_on_close(app.close)


_LAZY_COMMANDS = {
    "admin": "flowloom.cli.admin:admin",
    "access-review": "flowloom.cli.reviews:access_review",
    "anchor": "flowloom.cli.anchor:anchor",
    "log": "flowloom.cli.log:log",
    "demo": "flowloom.cli.demo:demo",
    "decide": "flowloom.cli.decide:decide",
    "decision": "flowloom.cli.decide:decision",
    "why": "flowloom.cli.why:why",
    "init": "flowloom.cli.init:init",
    "uninstall": "flowloom.cli.init:uninstall",
    "status": "flowloom.cli.init:status",
    "override": "flowloom.cli.init:override",
    "git-hook": "flowloom.cli.init:git_hook",
    "check": "flowloom.cli.check:check",
    "ci": "flowloom.cli.ci:ci",
    "hook": "flowloom.cli.hook:hook",
    "record": "flowloom.cli.hook:record",
    "import": "flowloom.cli.hook:import_",
    "search": "flowloom.cli.search:search",
    "memory": "flowloom.cli.memory:memory",
    "mcp": "flowloom.cli.mcp:mcp",
    "serve": "flowloom.cli.serve:serve",
    "sync": "flowloom.cli.sync:sync",
    "report": "flowloom.cli.report:report",
    "dev": "flowloom.cli.dev:dev",
    "gateway": "flowloom.cli.gateway:gateway",
    "retention": "flowloom.cli.retention:retention",
    "keys": "flowloom.cli.keys:keys",
    "integrations": "flowloom.cli.integrations:integrations",
    "webhooks": "flowloom.cli.webhooks:webhooks",
    "siem": "flowloom.cli.siem:siem",
    "scan": "flowloom.cli.scan:scan",
}


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="flowloom", standalone_mode=False)
    except FlowLoomError as exc:
        click.echo(f"flowloom: error: {exc.diagnostics()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("flowloom: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("flowloom: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # a bug: say so in one line, details only when asked
        click.echo(
            f"flowloom: internal error: {type(exc).__name__}: {exc} "
            "(set FLOWLOOM_DEBUG=1 for details; please report it)",
            err=True,
        )
        if os.environ.get("FLOWLOOM_DEBUG"):
            traceback.print_exc()
        sys.exit(70)
    sys.exit(result if isinstance(result, int) else 0)
