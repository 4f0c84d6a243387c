"""`flowloom why FILE:LINE`: the decision, prompt and AI reply behind a line of code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowloom.cli.context import AppContext
from flowloom.config import find_git_dirs
from flowloom.errors import InputError

if TYPE_CHECKING:
    from flowloom.decisions.why import EntryCheck, WhyAnswer

__all__ = ["why"]


def _location(text: str) -> tuple[str, int]:
    path, sep, line = text.rpartition(":")
    if not sep or not path or not line.isdigit() or int(line) < 1:
        raise InputError(f"{text!r} is not FILE:LINE", hint="for example src/app.py:42")
    return path, int(line)


def _evidence(check: EntryCheck | None, label: str) -> None:
    if check is None:
        click.echo(f"{label + ':':<10}not recorded")
        return
    status = "verified" if check.verified else "NOT VERIFIED"
    size = f" in checkpoint {check.checkpoint_size}" if check.checkpoint_size else ""
    body = {"unavailable": ", body erased or not stored", "mismatch": ", body altered"}
    click.echo(
        f"{label + ':':<10}entry {check.index} ({check.kind}), {status}{size}"
        f"{body.get(check.body, '')}"
    )
    if check.excerpt:
        click.echo(f"          “{check.excerpt}”")
    for problem in check.problems:
        click.echo(f"          ! {problem}")


def _print(answer: WhyAnswer) -> None:
    blame, d = answer.blame, answer.decision
    when = datetime.fromtimestamp(blame.author_time, UTC).strftime("%Y-%m-%d")
    click.echo(
        f"{answer.file}:{answer.line}  commit {blame.commit[:12]}  {when}  {blame.author}"
        f"  {blame.summary}"
    )
    via = {
        "trailer": "its FlowLoom-Decision trailer",
        "commit.link": f"commit.link entry {answer.link_entry}",
        "patch-id": f"patch-id (commit.link entry {answer.link_entry})",
    }[answer.linked_by]
    click.echo(f"decision: {d.id}  {d.title}  (linked by {via})")
    approvers = ", ".join(f"{a.meaning} by {a.approver}" for a in d.approvals) or "not approved"
    click.echo(f"          {d.status}, risk {d.risk}, requested by {d.requested_by}; {approvers}")
    for number, option in enumerate(d.options, 1):
        click.echo(f"{'options:' if number == 1 else '':<10}{number}. {option}")
    if d.choice:
        click.echo(f"choice:   {d.choice}")
    if d.rationale:
        click.echo(f"why:      {d.rationale}")
    if not (d.options or d.choice or d.rationale):
        click.echo("reasoning: not recorded")
    _evidence(answer.entry("decision"), "record")
    for check in answer.entries:
        if check.role == "amendment":
            _evidence(check, "amended")
    _evidence(answer.entry("prompt"), "prompt")
    _evidence(answer.entry("response"), "reply")


@click.command()
@click.argument("location", metavar="FILE:LINE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def why(ctx: click.Context, location: str, as_json: bool) -> None:
    """Why is this line here? The decision, prompt and reply behind it, verified.

    Exits 1 when an entry behind the answer does not verify, 6 when no decision is linked.
    """
    from flowloom.decisions.why import explain, index_path

    path, line = _location(location)
    app = AppContext.of(ctx)
    git = find_git_dirs(Path.cwd())
    if git is None:
        raise InputError("'flowloom why' needs a git repository; run it inside one")
    # "sign": a proof may sign a checkpoint with the log's key if it is here, nothing else.
    ledger = app.record_services("sign").ledger
    answer = explain(
        ledger, Path.cwd(), path, line, index_path=index_path(git[1]), trust=app.trust()
    )
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False))
    else:
        _print(answer)
    ctx.exit(0 if answer.verified else 1)
