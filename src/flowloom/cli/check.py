"""`flowloom check [REVS]…`: the CI gate over a range of commits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from flowloom.capture.check import CheckReport, check_commits, ci_branch, default_range
from flowloom.cli.context import AppContext
from flowloom.decisions.records import DecisionBook
from flowloom.errors import InputError
from flowloom.ledger.log import Ledger
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import load_policy
from flowloom.repo.signers import range_base, repo_trust
from flowloom.services import Services, log_attesters, server_keys

__all__ = ["check"]


@click.command()
@click.argument("revs", nargs=-1, metavar="[REV_RANGE]...")
@click.option("--all", "all_commits", is_flag=True, help="Check every commit on HEAD.")
@click.option(
    "--branch",
    help="The branch the commits go to (default: from CI variables, else the current branch).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--record", is_flag=True, help="Record the verdict in the ledger (ci.result).")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="PATH",
    help="Also write the verdict as JUnit XML (one test case per commit), for the CI's test view.",
)
@click.option(
    "--ledger-ref",
    metavar="REF",
    help="Judge against the log published in git at REF (refs/flowloom/log): CI without a server.",
)
@click.option(
    "--vkey",
    envvar="FLOWLOOM_VKEY",
    help="The verifier key the published log must verify with (with --ledger-ref).",
)
@click.pass_context
def check(
    ctx: click.Context,
    revs: tuple[str, ...],
    all_commits: bool,
    branch: str | None,
    as_json: bool,
    record: bool,
    junit_path: Path | None,
    ledger_ref: str | None,
    vkey: str | None,
) -> None:
    """Fail (exit 1) on any commit without a linked, approved decision.

    REV_RANGE is in git's syntax (origin/main..HEAD); the default is the commits on HEAD
    that are not on its upstream or the default branch.
    """
    repo = GitRepo.discover(Path.cwd())
    if all_commits and revs:
        raise InputError("give a range or --all, not both")
    if all_commits:
        selected, description = (["HEAD"] if repo.head() else []), "HEAD (all commits)"
    elif revs:
        selected, description = list(revs), " ".join(revs)
    else:
        selected, description = default_range(repo)
    policy = load_policy(repo.cwd)
    branch = branch or ci_branch() or repo.branch()
    services: Services | None = None
    if ledger_ref is not None:
        from flowloom.ledger.note import Verifier
        from flowloom.repo.replicate import load_published_log

        if not vkey:
            raise InputError("--ledger-ref needs the key to trust: --vkey or FLOWLOOM_VKEY")
        if record:
            raise InputError("a published log is read-only: --record needs the team ledger")
        trusted = Verifier.from_vkey(vkey.strip())
        ledger = load_published_log(repo.cwd, ledger_ref, trusted)
        attesters = [trusted]
    else:
        # With a team server: its record (docs/sync.md), read through the verified copy.
        services = AppContext.of(ctx).record_services()
        ledger, attesters = services.ledger, log_attesters(services)
    servers = server_keys(
        services.settings if services is not None else AppContext.of(ctx).settings()
    )
    # Approvals count when the approver's SSH key signed them, by the allowed-signers file
    # at the base of the range: a change never brings the key that approves it.
    book = DecisionBook(
        ledger,
        forbid_self_approval=policy.forbid_self_approval,
        forbid_approving_own_ai_session=policy.forbid_approving_own_ai_session,
        trust=repo_trust(
            attesters,
            repo,
            range_base(repo, selected),
            servers=servers,
        ),
    )
    report = check_commits(repo, book, policy, selected, description=description, branch=branch)
    if record:
        run, token = _run_identity(repo)
        _record(ledger, repo, report, run, token)
    if junit_path is not None:
        _write_junit(junit_path, report)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print(report)
    ctx.exit(0 if report.ok else 1)


def _print(report: CheckReport) -> None:
    for verdict in report.failing:
        for problem in verdict.problems:
            click.echo(f"{verdict.sha[:12]} {verdict.subject}: {problem.message}")
    where = f" for {report.branch}" if report.branch else ""
    protected = " (protected)" if report.protected else ""
    summary = (
        f"{len(report.commits)} commits in {report.range}{where}{protected}: "
        f"{report.linked} linked, {report.overridden} overridden"
    )
    if report.ok:
        click.echo(f"ok: {summary}")
    else:
        click.echo(f"FAILED: {summary}, {len(report.failing)} failing", err=True)


def _run_identity(repo: GitRepo) -> tuple[dict[str, Any], str | None]:
    """The CI run recording the verdict (`flowloom.ci.identity`): verified from its OIDC
    token when there is one, else what the environment claims; asked before recording."""
    import os

    import httpx

    from flowloom.ci.identity import DEFAULT_AUDIENCE, CIIdentityError, identify

    audience = os.environ.get("FLOWLOOM_CI_AUDIENCE") or DEFAULT_AUDIENCE
    with httpx.Client(timeout=30, follow_redirects=False) as http:
        identity = identify(None, http, audience=audience)
    head = repo.head()
    if identity.verified and identity.sha and head and identity.sha != head:
        raise CIIdentityError(
            f"the CI run's verified token is for commit {identity.sha[:12]}, but HEAD is "
            f"{head[:12]}: the verdict was not recorded"
        )
    return identity.to_json(), identity.token


def _record(
    ledger: Ledger, repo: GitRepo, report: CheckReport, run: dict[str, Any], token: str | None
) -> None:
    refs: dict[str, Any] = {
        "ok": report.ok,
        "checked": len(report.commits),
        "linked": report.linked,
        "overridden": report.overridden,
        "failing": len(report.failing),
        "commits": [v.sha for v in report.failing][:100],
    }
    if report.branch:
        refs["branch"] = report.branch
    refs["ci"] = run
    meta: dict[str, Any] = {"subject": report.range, "refs": refs}
    head = repo.head()
    git = {k: v for k, v in {"branch": repo.branch(), "head": head}.items() if v}
    if git:
        meta["git"] = git
    from flowloom.sinks.team import TeamLedger

    if isinstance(ledger, TeamLedger):
        # The server believes a CI verdict only with the run's OIDC token (docs/sync.md).
        if token is None:
            raise InputError(
                "the team server takes the gate's verdict only with the CI run's OIDC "
                "identity token, and this run has none: it was not recorded",
                hint="give the job an identity token (GitHub: permissions id-token: write)",
            )
        ledger.record_with_ci_token("ci.result", meta, token)
        return
    ledger.record("ci.result", meta=meta)


def _write_junit(path: Path, report: CheckReport) -> None:
    """The verdict as JUnit XML, marked as the gate's (`flowloom ci record` refuses it)."""
    from flowloom.ci.junit import Outcome, TestCase, write_junit

    cases = []
    for verdict in report.commits:
        outcome: Outcome = "passed" if verdict.ok else "failed"
        cases.append(
            TestCase(
                suite="flowloom check",
                classname=f"flowloom check {report.branch or report.range}",
                name=f"{verdict.sha[:12]} {verdict.subject}",
                outcome=outcome,
                message="\n".join(p.message for p in verdict.problems),
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(write_junit("flowloom check", cases, gate=True))
    temporary.replace(path)
