"""`flowloom ci record`: test results (JUnit XML) recorded as evidence for the tested tree."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowloom.ci.evidence import TestEvidence
    from flowloom.config import Settings

__all__ = ["ci"]


@click.group()
def ci() -> None:
    """CI evidence: test results bound to the tested tree and the CI run's identity."""


def _paths(patterns: tuple[str, ...]) -> list[Path]:
    """Each pattern as a file, or the files its glob matches (a CI shell may not expand it)."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found.append(path)
            continue
        matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
        files = [m for m in matches if m.is_file()]
        if not files:
            raise InputError(
                f"no JUnit file at {pattern}: nothing was recorded",
                hint="give the path the test runner wrote its JUnit XML to",
            )
        found.extend(files)
    return list(dict.fromkeys(found))


@ci.command()
@click.option(
    "--junit",
    "patterns",
    multiple=True,
    required=True,
    metavar="PATH",
    help="A JUnit XML file or a glob ('test-results/*.xml'); repeatable.",
)
@click.option("--name", help="What these results are (unit, integration, ...).")
@click.option(
    "--branch",
    help="The branch the results are for (default: from CI variables, else the current branch).",
)
@click.option(
    "--issuer",
    envvar="FLOWLOOM_CI_ISSUER",
    metavar="URL",
    help="The OIDC issuer of the CI's identity token (default: the platform's own).",
)
@click.option(
    "--jwks-url",
    envvar="FLOWLOOM_CI_JWKS_URL",
    metavar="URL",
    help="The issuer's JWKS (default: found by OIDC discovery).",
)
@click.option(
    "--audience",
    envvar="FLOWLOOM_CI_AUDIENCE",
    default="flowloom",
    show_default=True,
    help="The audience the identity token must name.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was recorded as JSON.")
@click.pass_context
def record(
    ctx: click.Context,
    patterns: tuple[str, ...],
    name: str | None,
    branch: str | None,
    issuer: str | None,
    jwks_url: str | None,
    audience: str,
    as_json: bool,
) -> None:
    """Record test results (JUnit XML) for HEAD's tree as a test.result event.

    Every file is read and the CI run's identity verified before anything is written:
    a bad file or a token that does not verify records nothing. Exits 1 when a test
    failed (the results are recorded all the same), 0 when all passed.
    """
    import httpx

    from flowloom.capture.check import ci_branch
    from flowloom.ci.evidence import KIND, TestEvidence, tested_tree
    from flowloom.ci.identity import identify
    from flowloom.ci.junit import parse_junit
    from flowloom.repo.git import GitRepo

    settings = AppContext.of(ctx).settings()
    repo = GitRepo.discover(Path.cwd())
    files = []
    for path in _paths(patterns):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        files.append(parse_junit(data, str(path)))
    commit, tree = tested_tree(repo)
    with httpx.Client(timeout=30, follow_redirects=False) as http:
        identity = identify(None, http, issuer=issuer, audience=audience, jwks_url=jwks_url)
    evidence = TestEvidence.of(
        files,
        commit,
        tree,
        identity,
        branch=branch or ci_branch() or repo.branch(),
        name=name,
    )
    if settings.server_url is not None:
        index = _to_server(settings, evidence, identity.token)
    else:
        services = AppContext.of(ctx).services()
        index = services.ledger.record(
            KIND, meta=evidence.meta(), body=evidence.body(services.settings.max_body_bytes)
        ).index
    where = "queued for the team server" if index is None else f"recorded entry {index}"
    if as_json:
        click.echo(json.dumps({"entry": index, **evidence.meta()["refs"]}, indent=2))
    else:
        proof = "verified" if identity.verified else "unverified (no identity token)"
        click.echo(
            f"{where} (test.result) for tree {tree[:12]} of {commit[:12]}: "
            f"{evidence.tests} tests, {evidence.count('passed')} passed, "
            f"{evidence.count('failed')} failed, {evidence.count('error')} errors, "
            f"{evidence.count('skipped')} skipped; CI run {identity.platform}, {proof}"
        )
        for failed in evidence.failing()[:20]:
            click.echo(f"  failed: {failed}", err=True)
    ctx.exit(0 if evidence.ok else 1)


def _to_server(settings: Settings, evidence: TestEvidence, token: str | None) -> int | None:
    """Send the results through the outbox to the team server, with the run's OIDC token
    for the server to verify (docs/sync.md); its index, or None while it waits queued."""
    import os
    from datetime import UTC, datetime

    from flowloom.capture.agents.common import locate
    from flowloom.client.link import ServerLink
    from flowloom.errors import PermissionDeniedError
    from flowloom.ledger.event import format_ts
    from flowloom.sinks.record import record_via_server

    if token is None:
        raise InputError(
            f"the team server {settings.server_url} takes test results only with the CI "
            "run's OIDC identity token, and this run has none: nothing was recorded",
            hint="give the job an identity token (GitHub: permissions id-token: write; "
            "GitLab: id_tokens FLOWLOOM_CI_TOKEN with aud flowloom)",
        )
    link = ServerLink.from_settings(settings, locate(os.getcwd()).state_dir)
    now = format_ts(datetime.now(UTC))
    event = {
        "kind": "test.result",
        "ts": now,
        "meta": evidence.meta(),
        "body": evidence.body(settings.max_body_bytes).decode("utf-8"),
        "ci_token": token,
    }
    recorded = record_via_server(link, [event], "ci", created=now)
    if recorded.refused:
        raise PermissionDeniedError(
            recorded.refused[0].removeprefix("the server refused a ").strip(),
            hint="the refusal itself is in the team's record (a capture.error)",
        )
    return recorded.indices[0]
