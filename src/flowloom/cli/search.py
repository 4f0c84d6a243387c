"""`flowloom search QUERY`: ranked full-text search over decisions, prompts, replies and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowloom.cli.context import AppContext
from flowloom.config import find_git_dirs
from flowloom.memory.interface import HIT_KINDS

if TYPE_CHECKING:
    from flowloom.memory.interface import Hit
    from flowloom.memory.service import Memory

__all__ = ["open_memory", "search"]


def open_memory(ctx: click.Context, session: str | None, *, writes: bool = False) -> Memory:
    """The project memory for the command's repository (if any), closed with the command.

    The asking session is `session`, else the pending link's session (the one an agent
    is working in right now), so its unmerged items stay visible. Unless the command
    `writes` to the ledger, the ledger is opened read-only (the index is its own).
    """
    from flowloom.memory.service import Memory

    app = AppContext.of(ctx)
    git = find_git_dirs(Path.cwd())
    repo = git[0] if git is not None else None
    if session is None and git is not None:
        from flowloom.capture.state import read_pending

        pending = read_pending(git[1])
        session = pending.session if pending is not None else None
    services = app.record_services("write" if writes else "read")
    memory = Memory.configured(
        services.ledger, services.settings.sources, repo=repo, session=session
    )
    ctx.call_on_close(memory.close)
    return memory


def _print(hits: list[Hit]) -> None:
    for number, hit in enumerate(hits, start=1):
        click.echo(f"{number:>2}. {hit.kind:<11} {hit.id}  {hit.title}")
        details = [f"entry {hit.entry}", hit.ts[:10]]
        if hit.author:
            details.append(hit.author)
        if hit.commit:
            details.append(f"commit {hit.commit[:12]}")
        if hit.files:
            details.append("files: " + ", ".join(hit.files[:5]))
        details.append(f"score {hit.score:.3g}")
        click.echo("    " + "  ".join(details))
        if hit.snippet:
            click.echo(f"    {hit.snippet}")


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(HIT_KINDS),
    help="Only this kind of item (repeatable).",
)
@click.option("--author", help="Only items by this actor id or name (or decisions they asked for).")
@click.option("--file", "file", metavar="PATH", help="Only items about this file or folder.")
@click.option("--since", metavar="WHEN", help="Only items from this time on (ISO 8601).")
@click.option("--until", metavar="WHEN", help="Only items before this time (ISO 8601).")
@click.option(
    "--branch", metavar="REV", help="See memory as of this branch or commit (default: HEAD)."
)
@click.option("--all-branches", is_flag=True, help="Search every branch's items.")
@click.option(
    "--session", envvar="FLOWLOOM_SESSION", help="The asking session (its items stay visible)."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one per hit.")
@click.option(
    "--semantic/--no-semantic",
    default=None,
    help="Also rank by meaning (needs the 'semantic' extra; default: [memory] semantic).",
)
@click.pass_context
def search(
    ctx: click.Context,
    query: tuple[str, ...],
    kinds: tuple[str, ...],
    author: str | None,
    file: str | None,
    since: str | None,
    until: str | None,
    branch: str | None,
    all_branches: bool,
    session: str | None,
    limit: int,
    as_json: bool,
    semantic: bool | None,
) -> None:
    """Search decisions, prompts, replies and memory observations, best match first.

    Inside a git repository only items reachable from HEAD (or --branch) are searched,
    plus the current session's; --all-branches searches everything. Any text is a valid
    query. Exits 0, also when nothing matches; 5 when --semantic is asked for without
    the 'semantic' extra installed.
    """
    if branch is not None and all_branches:
        raise click.UsageError("--branch and --all-branches exclude each other")
    memory = open_memory(ctx, session)
    hits = memory.search(
        " ".join(query),
        kinds=kinds or None,
        author=author,
        file=file,
        since=since,
        until=until,
        branch=branch,
        all_branches=all_branches,
        limit=limit,
        semantic=semantic,
    )
    if as_json:
        for hit in hits:
            click.echo(json.dumps(hit.to_json(), ensure_ascii=False))
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    _print(hits)
