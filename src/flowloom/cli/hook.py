"""`flowloom hook`, `flowloom record`, `flowloom import aider`: capture from agents.

`flowloom hook AGENT` normally never reaches click: `flowloom/__main__.py` and the
console script dispatch it to `flowloom.capture.agents.hookmain` first, so a hook does
not pay for importing the command line. The click command here is what `--help` lists,
and it runs the same code when options come before it (`flowloom --project p hook …`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from flowloom.capture.agents.aider import HISTORY_FILE, AiderImport, link_commits
from flowloom.capture.agents.common import Event, agent_actor, locate
from flowloom.capture.agents.hookmain import redact_event
from flowloom.cli.context import AppContext
from flowloom.errors import InputError
from flowloom.sinks.ledger import record_events

__all__ = ["hook", "import_", "record"]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def hook(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Record an agent hook payload (stdin): AGENT is claude-code, codex or cursor."""
    from flowloom.capture.agents.hookmain import main

    app = AppContext.of(ctx)  # top-level options reach the hook (and its drainer) as environment
    for variable, value in (("FLOWLOOM_DATABASE", app.database), ("FLOWLOOM_PROJECT", app.project)):
        if value:
            os.environ[variable] = value
    sys.exit(main(list(args)))


def _read_body(source: str) -> str:
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"body {source} is not valid UTF-8 (byte {exc.start})") from exc


def _report_redactions(event: Event) -> None:
    if event.redactions:
        counts = ", ".join(f"{kind} ×{n}" for kind, n in sorted(event.redactions.items()))
        click.echo(f"flowloom: redacted before storing: {counts}", err=True)


@click.command()
@click.option("--kind", required=True, help="Event kind from the catalogue (docs/events.md).")
@click.option("--body-file", metavar="FILE|-", help="Body text to store ('-': stdin).")
@click.option("--session", help="The session (conversation) the event belongs to.")
@click.option("--subject", help="What the event is about: a file, a ticket, a decision id.")
@click.option("--agent", help="Record it as done by this agent (default: you).")
@click.pass_context
def record(
    ctx: click.Context,
    kind: str,
    body_file: str | None,
    session: str | None,
    subject: str | None,
    agent: str | None,
) -> None:
    """Record an event from any other tool, with secrets redacted like the hooks do."""
    body = _read_body(body_file) if body_file is not None else None
    actor = agent_actor(agent) if agent else None
    event = Event(kind, body, actor=actor, session=session, subject=subject)
    redact_event(event)
    app = AppContext.of(ctx)
    settings = app.settings()
    if settings.server_url is not None:  # through the outbox: docs/sync.md
        from flowloom.capture.agents.common import now_ts
        from flowloom.client.link import ServerLink
        from flowloom.sinks.record import record_via_server

        link = ServerLink.from_settings(settings, locate(os.getcwd()).state_dir)
        done = record_via_server(link, [event.to_json()], agent or "cli", created=now_ts())
        _report_redactions(event)
        if done.indices[0] is None:
            why = f" ({done.why.message})" if done.why is not None else ""
            click.echo(
                f"flowloom: queued for {link.server_url}{why}; {done.waiting} spool file(s) "
                "waiting; 'flowloom sync' sends them",
                err=True,
            )
            return
        click.echo(str(done.indices[0]))
        return
    ledger = app.services().ledger
    index = record_events(ledger, [event.to_json()], agent or "cli", strict=True)[0]
    _report_redactions(event)
    click.echo(str(index))


@click.group("import")
def import_() -> None:
    """Import conversations that were not captured by hooks."""


@import_.command("aider")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def import_aider(ctx: click.Context, path: str | None) -> None:
    """Import Aider's chat history (default: .aider.chat.history.md in the repository)."""
    place = locate(str(Path.cwd()))
    history = Path(path) if path is not None else Path(place.top or place.cwd) / HISTORY_FILE
    if not history.is_file():
        raise InputError(
            f"no Aider chat history at {history}",
            hint="run it where Aider ran, or give the path to .aider.chat.history.md",
        )
    job = AiderImport(history, Path(place.state_dir))
    try:
        events = job.events(place)
    except OSError as exc:
        raise InputError(f"cannot read {history}: {exc.strerror}") from exc
    for event in events:
        redact_event(event)
    linked = 0
    notes: list[str] = []
    if events:
        ledger = AppContext.of(ctx).services().ledger
        indices = record_events(ledger, [e.to_json() for e in events], "aider")
        if place.top is not None and job.committed:
            linked, notes = link_commits(ledger, Path(place.top), job, events, indices)
    job.save()
    redacted = sum(sum(e.redactions.values()) for e in events)
    if not events:
        click.echo(f"nothing new in {history}")
        return
    note = f", {redacted} secrets redacted" if redacted else ""
    if linked:
        note += f", {linked} of Aider's commits linked to their decisions"
    click.echo(f"imported {job.exchanges} exchanges ({len(events)} events) from {history}{note}")
    for text in notes:
        click.echo(f"note: {text}", err=True)
