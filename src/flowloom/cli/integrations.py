"""`flowloom integrations …`: code hosts (GitHub, GitLab, Bitbucket) per project.

Settings commands work on the server's database directly, like `flowloom gateway
providers`, as the operating-system user running them; each change is recorded in the
project's ledger. Secrets are read from a file or an environment variable, never from
the command line (where `ps` would show them). `publish` is the CI step: it sends the
`flowloom check --json` verdict to the team server, which queues it for the code host.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

if TYPE_CHECKING:
    from flowloom.integrations.service import Integrations

__all__ = ["integrations"]

_HOSTS = click.Choice(["github", "gitlab", "bitbucket"])


@contextmanager
def _integrations(ctx: click.Context) -> Iterator[Integrations]:

    from flowloom.auth.schema import make_engine
    from flowloom.gateway.access.vault import ProviderKeyVault
    from flowloom.integrations.delivery import HostClients
    from flowloom.integrations.service import Integrations
    from flowloom.integrations.store import IntegrationStore
    from flowloom.ledger.providers import open_key_providers
    from flowloom.outbound import guarded_client
    from flowloom.server.settings import load_server_settings
    from flowloom.services import AuditLedgers

    settings = AppContext.of(ctx).settings()
    outbound = load_server_settings().outbound  # the same allow-list as `flowloom serve`
    audit = AuditLedgers(settings)
    providers = open_key_providers(settings.home, settings.keys)
    engine = make_engine(settings.database)
    http = guarded_client(outbound, timeout=30)
    try:
        store = IntegrationStore(engine, ProviderKeyVault(lambda: providers.envelope(create=True)))
        yield Integrations(store, HostClients(http), audit, outbound=outbound)
    finally:
        http.close()
        engine.dispose()
        audit.close()


def _actor() -> dict[str, Any]:
    from flowloom.services import default_actor

    return default_actor()


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"{what} takes NAME=VALUE, got {value!r}")
        found[name] = rest
    return found


def _secrets(files: tuple[str, ...], envs: tuple[str, ...]) -> dict[str, str | None]:
    import os

    secrets: dict[str, str | None] = {}
    for name, path in _pairs(files, "--secret-file").items():
        try:
            secrets[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read the secret file {path}: {exc.strerror}") from exc
    for name, variable in _pairs(envs, "--secret-env").items():
        value = os.environ.get(variable)
        if not value:
            raise InputError(f"the environment variable {variable} is not set")
        secrets[name] = value
    return secrets


@click.group("integrations")
def integrations() -> None:
    """Code hosts: check runs, comments and statuses on pull requests; signed webhooks."""


@integrations.command("set")
@click.argument("kind", type=_HOSTS)
@click.argument("project")
@click.option("--repo", required=True, help="owner/name (GitLab: the project's full path).")
@click.option("--api-url", help="The API's base URL (GitHub Enterprise, self-managed GitLab).")
@click.option("--app-id", help="GitHub App id (with --installation-id and a private_key).")
@click.option("--installation-id", type=int, help="The GitHub App's installation id.")
@click.option("--protected-branch", "protected", multiple=True, help="Also post statuses here.")
@click.option("--map-user", "users", multiple=True, metavar="HOST_ID=USER_ID")
@click.option("--details-url", help="The link shown with the check run and statuses.")
@click.option(
    "--secret-file",
    "secret_files",
    multiple=True,
    metavar="NAME=PATH",
    help="token, private_key or webhook_secret, read from a file.",
)
@click.option(
    "--secret-env",
    "secret_envs",
    multiple=True,
    metavar="NAME=VAR",
    help="token, private_key or webhook_secret, read from an environment variable.",
)
@click.pass_context
def set_(
    ctx: click.Context,
    kind: str,
    project: str,
    repo: str,
    api_url: str | None,
    app_id: str | None,
    installation_id: int | None,
    protected: tuple[str, ...],
    users: tuple[str, ...],
    details_url: str | None,
    secret_files: tuple[str, ...],
    secret_envs: tuple[str, ...],
) -> None:
    """Set PROJECT's KIND integration (settings replaced; secrets not named are kept)."""
    settings: dict[str, Any] = {
        "repo": repo,
        "api_url": api_url,
        "app_id": app_id,
        "installation_id": installation_id,
        "details_url": details_url,
    }
    if protected:
        settings["protected_branches"] = list(protected)
    if users:
        settings["user_map"] = _pairs(users, "--map-user")
    settings = {k: v for k, v in settings.items() if v is not None}
    with _integrations(ctx) as service:
        config = service.configure(
            project, kind, settings, _secrets(secret_files, secret_envs), actor=_actor()
        )
    click.echo(json.dumps(config.public(), indent=2))


@integrations.command("show")
@click.argument("project")
@click.pass_context
def show(ctx: click.Context, project: str) -> None:
    """PROJECT's integrations as JSON (which secrets are set, never their value)."""
    with _integrations(ctx) as service:
        found = [c.public() for c in service.store.of_project(project)]
    click.echo(json.dumps(found, indent=2))


@integrations.command("remove")
@click.argument("kind", type=_HOSTS)
@click.argument("project")
@click.pass_context
def remove(ctx: click.Context, kind: str, project: str) -> None:
    """Remove PROJECT's KIND integration and its secrets."""
    with _integrations(ctx) as service:
        if not service.remove(project, kind, actor=_actor()):
            raise InputError(f"project {project} has no {kind} integration")
    click.echo(f"removed the {kind} integration of {project}")


@integrations.command("test")
@click.argument("kind", type=_HOSTS)
@click.argument("project")
@click.pass_context
def test(ctx: click.Context, kind: str, project: str) -> None:
    """Call the code host now with PROJECT's stored credentials (exit 1 if it fails)."""
    with _integrations(ctx) as service:
        outcome = service.send_test(project, kind, actor=_actor())
    click.echo(json.dumps(outcome, indent=2))
    ctx.exit(0 if outcome["ok"] else 1)


@integrations.command("protection")
@click.argument("project")
@click.option("--branch", required=True)
@click.pass_context
def protection(ctx: click.Context, project: str, branch: str) -> None:
    """Read BRANCH's protection on GitHub and record it in PROJECT's ledger."""
    with _integrations(ctx) as service:
        settings = service.branch_protection(project, branch, actor=_actor())
    click.echo(json.dumps({"branch": branch, "protected": settings is not None}, indent=2))


@integrations.command("deliver")
@click.pass_context
def deliver(ctx: click.Context) -> None:
    """Send the queued calls that are due now (the server's worker does this too)."""
    with _integrations(ctx) as service:
        run = service.deliver_due()
    click.echo(json.dumps(run.to_json()))


@integrations.command("publish")
@click.argument("kind", type=_HOSTS)
@click.option(
    "--verdict",
    "verdict_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The output of 'flowloom check --json'.",
)
@click.option("--sha", required=True, help="The pull request's head commit.")
@click.option("--number", type=int, help="The pull request (GitHub) or merge request (GitLab).")
@click.option("--branch", help="The target branch.")
@click.option("--details-url", help="The link shown with the check run (the CI job).")
@click.pass_context
def publish(
    ctx: click.Context,
    kind: str,
    verdict_path: Path,
    sha: str,
    number: int | None,
    branch: str | None,
    details_url: str | None,
) -> None:
    """Send a verdict to the team server, which shows it on the pull request."""
    from flowloom.client.http import HttpClient

    settings = AppContext.of(ctx).settings()
    if settings.server_url is None:
        raise InputError(
            "publish sends the verdict to the team server, and none is set",
            hint="set FLOWLOOM_SERVER and FLOWLOOM_API_KEY (a service account's key)",
        )
    try:
        verdict = json.loads(verdict_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{verdict_path} is not the JSON of 'flowloom check --json'") from exc
    if not isinstance(verdict, dict) or "commits" not in verdict:
        raise InputError(f"{verdict_path} is not the JSON of 'flowloom check --json'")
    body: dict[str, Any] = {"verdict": verdict, "sha": sha, "files": _changed(verdict)}
    for name, value in (("number", number), ("branch", branch), ("details_url", details_url)):
        if value is not None:
            body[name] = value
    http = HttpClient(settings.server_url, settings.server_api_key())
    path = f"/api/v1/projects/{settings.project}/integrations/{kind}/verdicts"
    answer = json.loads(http.request("POST", path, body=body))
    click.echo(json.dumps(answer))


def _changed(verdict: dict[str, Any]) -> dict[str, list[str]]:
    """The files each failing commit changed, where the annotations go (local git)."""
    found: dict[str, list[str]] = {}
    for commit in verdict.get("commits") or []:
        sha = commit.get("sha") if isinstance(commit, dict) else None
        if not isinstance(sha, str) or commit.get("ok", True):
            continue
        try:
            out = subprocess.run(
                ["git", "diff-tree", "--no-commit-id", "--name-only", "-r", "--root", sha],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        files = [line for line in out.splitlines() if line]
        if files:
            found[sha] = files[:20]
    return found
