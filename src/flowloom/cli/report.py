"""`flowloom report`: evidence for one framework's controls over a period, in a file.

The command assesses (flowloom.compliance.assess) and hands the result to the renderer
registered for the format (flowloom.compliance.reports.RENDERERS). Exit status 0 when
the report was written, even if checks flagged exceptions; 1 with --fail-on-flag when
any check flagged or could not look (not assessed), so CI can gate on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from flowloom.cli.context import AppContext
from flowloom.compliance.catalog import FRAMEWORKS
from flowloom.errors import InputError

__all__ = ["report"]


@click.command()
@click.option(
    "--framework", required=True, type=click.Choice(FRAMEWORKS), help="The control framework."
)
@click.option("--from", "start", required=True, metavar="DATE", help="First day (YYYY-MM-DD).")
@click.option("--to", "end", required=True, metavar="DATE", help="Last day, included.")
@click.option(
    "--format",
    "fmt",
    default="json",
    show_default=True,
    help="html, pdf, json, csv (change population), zip (evidence pack), exceptions-csv, "
    "audit-trail-csv or controls-csv.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output file."
)
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
    help="An exported ledger bundle to include in an evidence pack (zip).",
)
@click.option("--fail-on-flag", is_flag=True, help="Exit 1 when any check flags an exception.")
@click.pass_context
def report(
    ctx: click.Context,
    framework: str,
    start: str,
    end: str,
    fmt: str,
    out: Path,
    repo: Path | None,
    no_git: bool,
    bundle_dir: Path | None,
    fail_on_flag: bool,
) -> None:
    """Write evidence for FRAMEWORK's controls over a period (not a certification)."""
    from flowloom.capture.git.repo import GitError, GitRepo
    from flowloom.capture.policy import Policy, load_policy
    from flowloom.compliance.assess import assess, parse_period
    from flowloom.compliance.reports import RENDERERS
    from flowloom.compliance.settings import load_compliance_settings

    renderer = RENDERERS.get(fmt)
    if renderer is None:
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
    # The report's use is recorded (export.generate, attested by the log's key): without
    # that key fail now, before any file is written.
    services.ledger.require_signer()
    assessment = assess(
        services.ledger,
        framework=framework,
        period=period,
        trust=app.trust(),
        repo=git,
        policy=policy,
        settings=settings,
    )
    written = renderer(assessment, out, bundle_dir=bundle_dir)
    digest = hashlib.sha256(written.read_bytes()).hexdigest() if written.is_file() else None
    refs = {
        "framework": framework,
        "from": assessment.period_from,
        "to": assessment.period_to,
        "format": fmt,
        "flagged": assessment.flagged,
    }
    if digest:
        refs["sha256"] = digest
    services.ledger.record("export.generate", meta={"subject": f"report:{framework}", "refs": refs})
    counts = assessment.counts()
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    click.echo(f"wrote {written} — evidence for {framework} controls: {summary}")
    for finding in assessment.exceptions:
        if finding.severity != "info":
            click.echo(f"  {finding.check}: {finding.message}", err=True)
    for result in assessment.checks:
        if result.status == "not_assessed":
            click.echo(f"  {result.check}: not assessed: {result.reason}", err=True)
    if fail_on_flag and assessment.flagged:
        ctx.exit(1)
