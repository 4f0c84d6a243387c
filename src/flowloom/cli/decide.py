"""`flowloom decide` and `flowloom decision …`: record, show, list, approve, export."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from flowloom.capture.state import PendingLink, read_pending, write_pending
from flowloom.cli.context import AppContext
from flowloom.config import find_git_dirs
from flowloom.decisions.records import RISKS, Decision, DecisionBook
from flowloom.errors import InputError
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import Policy, load_policy
from flowloom.repo.signers import GitKeyApprover
from flowloom.services import Access, default_actor

__all__ = ["decide", "decision"]


def _book(ctx: click.Context, access: Access = "write") -> DecisionBook:
    git = find_git_dirs(Path.cwd())
    # Outside a repository there is no committed policy: the default (forbid) applies.
    policy = load_policy(git[0]) if git else Policy()
    app = AppContext.of(ctx)
    return DecisionBook(
        app.record_services(access).ledger,
        forbid_self_approval=policy.forbid_self_approval,
        forbid_approving_own_ai_session=policy.forbid_approving_own_ai_session,
        trust=app.trust(),
    )


@click.command()
@click.option("--title", required=True, help="What was decided, in a few words.")
@click.option("--context", default="", help="The question or problem behind it.")
@click.option("--option", "options", multiple=True, help="An option considered (repeatable).")
@click.option("--choice", default="", help="The option chosen.")
@click.option("--rationale", default="", help="Why it was chosen.")
@click.option("--ticket", "tickets", multiple=True, help="A ticket id like ABC-123 (repeatable).")
@click.option("--file", "files", multiple=True, help="A file the decision affects (repeatable).")
@click.option("--risk", type=click.Choice(RISKS), default="low", show_default=True)
@click.option("--session", help="The agent session the decision belongs to.")
@click.option("--model", help="The AI model involved.")
@click.option("--requested-by", help="Who asked for it (default: you).")
@click.option("--prompt-entry", type=click.IntRange(min=0), help="Ledger index of the prompt.")
@click.option("--response-entry", type=click.IntRange(min=0), help="Ledger index of the reply.")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded decision as JSON.")
@click.pass_context
def decide(
    ctx: click.Context,
    title: str,
    context: str,
    options: tuple[str, ...],
    choice: str,
    rationale: str,
    tickets: tuple[str, ...],
    files: tuple[str, ...],
    risk: str,
    session: str | None,
    model: str | None,
    requested_by: str | None,
    prompt_entry: int | None,
    response_entry: int | None,
    as_json: bool,
) -> None:
    """Record a decision; the next commit in this repository is linked to it."""
    recorded = _book(ctx).record(
        title=title,
        context=context,
        options=options,
        choice=choice,
        rationale=rationale,
        requested_by=requested_by or str(default_actor()["id"]),
        session=session,
        model=model,
        files=files,
        tickets=tickets,
        risk=risk,
        prompt_entry=prompt_entry,
        response_entry=response_entry,
    )
    queued = recorded.entry is not None and recorded.entry < 0  # a team server out of reach
    git = find_git_dirs(Path.cwd())
    if git is not None:
        previous = read_pending(git[1])
        keep = previous is not None and (session is None or previous.session == session)
        write_pending(
            git[1],
            PendingLink(
                decision=recorded.id,
                session=session or (previous.session if previous else None),
                entry=None if queued else recorded.entry,
                agent=previous.agent if keep and previous else None,
            ),
        )
    if as_json:
        click.echo(json.dumps(recorded.to_json(), ensure_ascii=False))
    else:
        click.echo(recorded.id)
    if git is None:
        click.echo("note: not in a git repository, so no commit will be linked to it", err=True)
    if queued:
        click.echo(
            "note: the team server is out of reach; the decision is queued in the "
            "outbox and 'flowloom sync' sends it",
            err=True,
        )


@click.group()
def decision() -> None:
    """Decision records: show, list, approve, export as MADR."""


def _show_text(d: Decision) -> None:
    def row(label: str, value: object) -> None:
        if value not in (None, "", ()):
            click.echo(f"{label + ':':<14}{value}")

    click.echo(f"{d.id}  {d.title}")
    row("status", d.status)
    row("risk", d.risk)
    row("requested by", d.requested_by)
    row("created", f"{d.created} (entry {d.entry})")
    row("amended", ", ".join(f"entry {at}" for at in d.amendments))
    row("session", d.session)
    row("model", d.model)
    row("tickets", ", ".join(d.tickets))
    row("files", ", ".join(d.files))
    if d.context:
        click.echo("context:")
        for line in d.context.splitlines():
            click.echo(f"  {line}")
    if d.options:
        click.echo("options:")
        for option in d.options:
            click.echo(f"  - {option}")
    row("choice", d.choice)
    row("rationale", d.rationale)
    row("prompt", None if d.prompt_entry is None else f"entry {d.prompt_entry}")
    row("reply", None if d.response_entry is None else f"entry {d.response_entry}")
    if d.approvals:
        click.echo("approvals:")
        for a in d.approvals:
            mark = "" if a.matches else "  (DIGEST MISMATCH: not an approval of this content)"
            if not a.verified:
                mark += f"  (does not count: {a.unverified_reason})"
            else:
                mark += f"  (verified: {a.via})"
            click.echo(f"  {a.describe()} at {a.ts} (entry {a.entry}){mark}")


@decision.command()
@click.argument("decision_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, decision_id: str, as_json: bool) -> None:
    """Show one decision with its approvals."""
    found = _book(ctx, "read").get(decision_id)
    if as_json:
        click.echo(json.dumps(found.to_json(), ensure_ascii=False))
    else:
        _show_text(found)


@decision.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List every decision, oldest first."""
    for d in _book(ctx, "read").list():
        if as_json:
            click.echo(json.dumps(d.to_json(), ensure_ascii=False))
        else:
            click.echo(f"{d.id}  {d.created[:10]}  {d.status:<8}  {d.risk:<6}  {d.title}")


@decision.command()
@click.argument("decision_id", metavar="ID")
@click.option(
    "--meaning",
    type=click.Choice(["approved", "reviewed"]),
    default="approved",
    show_default=True,
    help="What your signature means.",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SSH key to sign with (default: git's user.signingkey, gpg.format ssh).",
)
@click.pass_context
def approve(ctx: click.Context, decision_id: str, meaning: str, key: Path | None) -> None:
    """Approve (or mark reviewed) a decision, signed with your own SSH signing key.

    You are whoever the committed .flowloom/allowed_signers lists for the key; the
    approval names the decision's exact content and the tree at HEAD.
    """
    if find_git_dirs(Path.cwd()) is None:
        raise InputError(
            "an approval is signed with your git SSH key and checked against the "
            "repository's allowed signers: run it inside the repository"
        )
    repo = GitRepo.discover(Path.cwd())
    approver = GitKeyApprover(repo, key=key)
    identity = approver.identity()
    tree = repo.tree("HEAD") if repo.resolve("HEAD") else None
    approval = _book(ctx).approve(decision_id, identity, meaning, tree=tree, sign=approver.sign)
    if not approval.verified:  # signed, yet not provable: say so rather than pretend
        raise InputError(
            f"the approval was recorded (entry {approval.entry}) but does not verify: "
            f"{approval.unverified_reason}"
        )
    if approval.entry < 0:  # a team server out of reach: the signed approval waits
        click.echo(f"{decision_id} {meaning} by {approval.approver} (queued for the server)")
    else:
        click.echo(f"{decision_id} {meaning} by {approval.approver} (entry {approval.entry})")


@decision.command()
@click.argument("decision_id", metavar="ID")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to FILE (default: stdout).")
@click.option("--link-base", metavar="URL", help="Link ledger entries under this server URL.")
@click.pass_context
def export(ctx: click.Context, decision_id: str, out: str | None, link_base: str | None) -> None:
    """Export a decision as a MADR 4 Markdown record."""
    from flowloom.decisions.madr import to_madr

    book = _book(ctx, "read")
    found = book.get(decision_id)
    text = to_madr(
        found, origin=book.ledger.origin, commits=book.commits(found.id), link_base=link_base
    )
    if out is None:
        click.echo(text, nl=False)
        return
    target = Path(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {out}", err=True)
