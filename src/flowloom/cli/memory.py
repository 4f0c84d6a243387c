"""`flowloom memory`: import, export and rebuild the project memory (knowledge graph)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from flowloom.cli.search import open_memory
from flowloom.errors import InputError

__all__ = ["memory"]


@click.group()
def memory() -> None:
    """The project memory: a knowledge graph projected from the ledger.

    Files use the MCP reference memory server's JSONL format, so memories move between
    the two.
    """


@memory.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def import_(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Import an MCP memory server JSONL file (- for standard input).

    Takes everything the reference server writes. A line it cannot take is skipped and
    named on standard error (exit 1), with anything taken differently (an entity given
    twice is merged); the rest of the file is imported all the same.
    """
    mem = open_memory(ctx, None, writes=True)
    source: Path | bytes = sys.stdin.buffer.read() if str(file) == "-" else file
    result = mem.import_jsonl(source)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        where = f" (ledger entry {result.entries[0]})" if result.entries else " (nothing new)"
        click.echo(
            f"imported {result.entities} entities, {result.relations} relations, "
            f"{result.observations} observations{where}"
        )
    for problem in result.problems:
        click.echo(f"flowloom memory import: {problem}", err=True)
    if result.problems:
        ctx.exit(1)


@memory.command("export")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout."
)
@click.pass_context
def export(ctx: click.Context, out: Path | None) -> None:
    """Export the whole graph as MCP memory server JSONL."""
    mem = open_memory(ctx, None)
    lines = mem.export_jsonl()
    if out is None:
        for line in lines:
            click.echo(line)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            count = 0
            for line in lines:
                fh.write(line + "\n")
                count += 1
        os.replace(tmp, out)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"wrote {count} lines to {out}", err=True)


@memory.command("rebuild")
@click.pass_context
def rebuild(ctx: click.Context) -> None:
    """Throw the index away and project the whole ledger again."""
    mem = open_memory(ctx, None)
    count = mem.rebuild()
    click.echo(f"projected {count} ledger entries")
