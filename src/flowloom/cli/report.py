"""`flowloom report`: evidence for one framework's controls over a period, in a file.

The command runs one report (flowloom.compliance.run): it signs a checkpoint, assesses
exactly the entries it covers, renders the format, writes the signed statement beside
the file (``<file>.intoto.jsonl``) and records the export. Exit status 0 when the report
was written, even if checks flagged exceptions; 1 with --fail-on-flag when any check
flagged or could not look (not assessed), so CI can gate on it.

`flowloom report respond EXCEPTION_ID --response TEXT` records management's response to
an exception (a ``compliance.response`` event signed with the person's SSH key); the
next report shows it beside the exception.

`flowloom report verify PATH` checks a report's signature and digests and, for an
evidence pack, re-performs the assessment from the pack's ledger bundle (exit 1 on any
problem or difference).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowloom.cli.context import AppContext
from flowloom.compliance.catalog import FRAMEWORKS
from flowloom.errors import FlowLoomError, VerificationError

if TYPE_CHECKING:
    from flowloom.compliance.statement import Generator
    from flowloom.ledger.note import Verifier
    from flowloom.repo.git import GitRepo

__all__ = ["report"]


@click.group(invoke_without_command=True)
@click.option("--framework", type=click.Choice(FRAMEWORKS), help="The control framework.")
@click.option("--from", "start", metavar="DATE", help="First day (YYYY-MM-DD).")
@click.option("--to", "end", metavar="DATE", help="Last day, included.")
@click.option(
    "--format",
    "fmt",
    default="json",
    show_default=True,
    help="html, pdf, json, csv (change population), zip (evidence pack), exceptions-csv, "
    "audit-trail-csv or controls-csv.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Output file.")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The git repository to examine (default: the one around the current directory).",
)
@click.option(
    "--no-git", is_flag=True, help="Examine the ledger only (commit checks not assessed)."
)
@click.option(
    "--bundle-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="An exported ledger bundle to include in an evidence pack (zip); it must be cut at "
    "the checkpoint the report is computed at (default: the report exports the ledger).",
)
@click.option("--fail-on-flag", is_flag=True, help="Exit 1 when any check flags an exception.")
@click.option(
    "--sample-seed",
    metavar="SEED",
    help="Seed of the manual-testing sample (default: derived from the checkpoint's root).",
)
@click.pass_context
def report(
    ctx: click.Context,
    framework: str | None,
    start: str | None,
    end: str | None,
    fmt: str,
    out: Path | None,
    repo: Path | None,
    no_git: bool,
    bundle_dir: Path | None,
    fail_on_flag: bool,
    sample_seed: str | None,
) -> None:
    """Write evidence for FRAMEWORK's controls over a period (not a certification).

    Every report is signed (FILE.intoto.jsonl beside it); check one with
    'flowloom report verify FILE'.
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [
        name
        for name, value in (("--framework", framework), ("--from", start), ("--to", end))
        if value is None
    ] + (["--out"] if out is None else [])
    if missing:
        raise click.UsageError(f"missing option(s): {', '.join(missing)}")
    assert framework is not None and start is not None and end is not None and out is not None
    from flowloom.compliance.assess import parse_period
    from flowloom.compliance.reports import RENDERERS
    from flowloom.compliance.run import generate_report
    from flowloom.compliance.settings import load_compliance_settings
    from flowloom.errors import InputError
    from flowloom.repo.git import GitError, GitRepo
    from flowloom.repo.policy import Policy, load_policy

    if fmt not in RENDERERS:
        raise InputError(
            f"unknown report format {fmt!r}", hint=f"choose one of: {', '.join(RENDERERS)}"
        )
    period = parse_period(start, end)
    git: GitRepo | None = None
    if not no_git:
        try:
            git = GitRepo.discover(repo or Path.cwd())
        except GitError:
            if repo is not None:
                raise
            git = None
    policy = load_policy(git.top()) if git is not None else Policy(configured=False)
    settings = load_compliance_settings(git.top() if git is not None else None)
    app = AppContext.of(ctx)
    services = app.services()
    # The report is signed and its use recorded (export.generate, attested by the log's
    # key): without that key fail now, before any file is written.
    services.ledger.require_signer()
    done = generate_report(
        services.ledger,
        framework=framework,
        period=period,
        fmt=fmt,
        out=out,
        trust=app.trust_record(),
        generator=_generator(git),
        repo=git,
        policy=policy,
        settings=settings,
        bundle_dir=bundle_dir,
        sample_seed=sample_seed,
    )
    assessment = done.assessment
    counts = assessment.counts()
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    click.echo(f"wrote {done.path} — evidence for {framework} controls: {summary}")
    click.echo(
        f"signed statement {done.statement_path.name} (checkpoint {done.snapshot.size}, "
        f"export recorded at entry {done.entry}; generated by {assessment.generated_by})"
    )
    for finding in assessment.exceptions:
        if finding.severity != "info":
            click.echo(f"  {finding.check}: {finding.message}", err=True)
    for result in assessment.checks:
        if result.status == "not_assessed":
            click.echo(f"  {result.check}: not assessed: {result.reason}", err=True)
    if fail_on_flag and assessment.flagged:
        ctx.exit(1)


def _generator(git: GitRepo | None) -> Generator:
    """Who is generating the report, as far as the command line can prove it.

    With the repository's committed allowed-signers file and git's SSH signing key, the
    person's key signs the statement too, so the identity is proven by a signature.
    Otherwise nothing proves who ran the command: git's user.email is shown as a claim.
    """
    from flowloom.compliance.statement import Generator
    from flowloom.repo.signers import GitKeyApprover

    if git is not None:
        try:
            approver = GitKeyApprover(git)
            return Generator(
                approver.identity(),
                "ssh",
                ssh_sign=approver.sign_bytes,
                ssh_key=approver.fingerprint(),
            )
        except FlowLoomError:
            pass
    claimed = (git.config_get("user.email") or "") if git is not None else ""
    return Generator(claimed, "none")


@report.command("respond")
@click.argument("exception_id", metavar="EXCEPTION_ID")
@click.option("--response", "text", required=True, help="The response or remediation.")
@click.option("--owner", help="Who owns the remediation.")
@click.option("--due", metavar="YYYY-MM-DD", help="When the remediation is due.")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SSH key to sign with (default: git's user.signingkey, gpg.format ssh).",
)
@click.pass_context
def respond(
    ctx: click.Context,
    exception_id: str,
    text: str,
    owner: str | None,
    due: str | None,
    key: Path | None,
) -> None:
    """Record management's response to a report's exception, signed with your SSH key.

    EXCEPTION_ID is the id a report prints beside the exception (SOX-1a2b3c4d5e). The
    response is a compliance.response event in the ledger; the next report shows it.
    You are whoever the committed .flowloom/allowed_signers lists for the key.
    """
    from flowloom.compliance.responses import record_response
    from flowloom.config import find_git_dirs
    from flowloom.errors import InputError
    from flowloom.ledger.provenance import judge_bytes
    from flowloom.repo.git import GitRepo
    from flowloom.repo.signers import GitKeyApprover

    app = AppContext.of(ctx)
    if app.team_server() is not None:
        _respond_on_server(app, exception_id, text, owner, due, key)
        return
    if find_git_dirs(Path.cwd()) is None:
        raise InputError(
            "a response is signed with your git SSH key and checked against the "
            "repository's allowed signers: run it inside the repository"
        )
    approver = GitKeyApprover(GitRepo.discover(Path.cwd()), key=key)
    identity = approver.identity()
    ledger = app.services().ledger
    entry = record_response(
        ledger,
        exception_id,
        text,
        actor={"type": "human", "id": identity},
        owner=owner,
        due=due,
        sign=approver.sign,
    )
    proven = judge_bytes(ledger.entry(entry).envelope, app.trust())
    if not proven.proven_person:  # signed, yet not provable: say so rather than pretend
        raise InputError(
            f"the response was recorded (entry {entry}) but does not verify: {proven.reason}"
        )
    click.echo(f"response to {exception_id} by {identity} recorded (entry {entry})")


def _respond_on_server(
    app: AppContext,
    exception_id: str,
    text: str,
    owner: str | None,
    due: str | None,
    key: Path | None,
) -> None:
    """In server mode the response goes to the team's record: the server's POST
    reports/responses records it as the API key's user and attests it (it needs the
    project.admin role there), so the next report, made by the server, shows it."""
    from urllib.parse import quote

    from flowloom.errors import InputError, RemoteError

    if key is not None:
        raise InputError(
            "with a team server the response is recorded as your API key's user, not signed "
            "with an SSH key",
            hint="leave out --key",
        )
    http, project = app.server_http()
    body = {"exception": exception_id, "response": text, "owner": owner, "due": due}
    answer = http.post_json(
        f"/api/v1/projects/{quote(project, safe='')}/reports/responses",
        {k: v for k, v in body.items() if v is not None},
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("entry"), int):
        raise RemoteError("the server answered the response without its entry")
    click.echo(
        f"response to {exception_id} by {answer.get('by')} recorded on {http.base_url} "
        f"(entry {answer['entry']})"
    )


@report.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--vkey",
    "vkey_text",
    help="The log's verifier key (or a file holding it); default: the keys the log here pins.",
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The repository, to re-perform the commit checks as well.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify(
    ctx: click.Context, path: Path, vkey_text: str | None, repo: Path | None, as_json: bool
) -> None:
    """Check a report's signature and digests, and re-perform an evidence pack's assessment.

    Exit 0 when everything holds; 1 with every problem and difference listed.
    """
    import json

    from flowloom.compliance.reperform import verify_report
    from flowloom.repo.git import GitRepo

    trusted = _trusted(ctx, vkey_text)
    git = GitRepo.discover(repo) if repo is not None else None
    result = verify_report(path, trusted=trusted, repo=git, other_logs_fall_back=vkey_text is None)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        for line in result.problems:
            click.echo(f"problem: {line}")
        for line in result.differences:
            click.echo(f"difference: {line}")
        for line in result.notes:
            click.echo(f"note: {line}")
        if result.ok:
            what = "re-performed: no difference" if result.reperformed else "not re-performed"
            click.echo(
                f"{path}: signature by {result.signed_by} verifies, {result.files_checked} "
                f"files match; {what}; generated by {result.generated_by}"
            )
    if not result.ok:
        raise VerificationError(
            f"{path}: {len(result.problems)} problems, {len(result.differences)} differences",
            hint="do not rely on this report; obtain it again from its issuer",
        )


def _trusted(ctx: click.Context, vkey_text: str | None) -> list[Verifier]:
    """The keys to check signatures with: --vkey, else the keys the log here pins."""
    from flowloom.ledger.note import Verifier

    if vkey_text is not None:
        candidate = Path(vkey_text)
        text = candidate.read_text("utf-8") if candidate.is_file() else vkey_text
        return [Verifier.from_vkey(text.strip())]
    try:
        from flowloom.services import log_attesters

        return log_attesters(AppContext.of(ctx).services("read"))
    except FlowLoomError:
        return []
