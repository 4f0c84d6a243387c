"""`flowloom init`, `uninstall`, `status`, `override`, `git-hook`: capture in a repository."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flowloom.capture.agents.common import locate, make_private
from flowloom.capture.agents.install import (
    HOOKED_AGENTS,
    agent_hook_setup,
    detect_agents,
    install_agent_hooks,
    install_mcp_server,
    uninstall_agent_hooks,
    uninstall_mcp_server,
)
from flowloom.capture.githooks.hooks import HookState, hook_status, hooks_dir, install_hooks
from flowloom.capture.githooks.hooks import uninstall_hooks as remove_hooks
from flowloom.capture.launch import INSTALL_HINT, where
from flowloom.cli.context import AppContext
from flowloom.client.status import server_warnings
from flowloom.errors import FlowLoomError, InputError
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import (
    OVERRIDE_TTL_S,
    Override,
    load_policy,
    policy_file,
    write_pending_override,
    write_policy,
)

__all__ = ["git_hook", "init", "override", "status", "uninstall"]

STALE_AFTER_S = 600
"""A commit this much newer than the last ledger event means capture missed it."""
LOW_LINKED_SHARE = 0.8
STATUS_COMMITS = 50


def _record_config_change(ctx: click.Context, repo: GitRepo, refs: dict[str, Any]) -> str:
    """Record the change (in the team's record when a server is configured); where it went."""
    services = AppContext.of(ctx).record_services()
    meta: dict[str, Any] = {"subject": str(policy_file(Path(".")).as_posix()), "refs": refs}
    git = {"branch": repo.branch(), "head": repo.head()}
    git = {k: v for k, v in git.items() if v}
    if git:
        meta["git"] = git
    ack = services.ledger.record("config.change", meta=meta)
    if ack.queued:
        return "queued for the team server (config.change)"
    return f"recorded in the ledger as entry {ack.index} (config.change)"


def _refresh_hook_cache(repo: GitRepo) -> None:
    from flowloom.capture.githooks.hookmain import refresh_cache
    from flowloom.config import load_settings

    top = repo.cwd
    refresh_cache(top, repo.common_dir(), load_settings(top), load_policy(top))


def _outside(path: Path, top: Path) -> bool:
    try:
        path.resolve().relative_to(top.resolve())
    except ValueError:
        return True
    return False


@click.command()
@click.option(
    "--agent",
    "agents",
    multiple=True,
    type=click.Choice([*HOOKED_AGENTS, "all", "none"]),
    help="Install hooks for this agent (repeatable; default: the agents detected here).",
)
@click.option(
    "--ci",
    type=click.Choice(["github", "gitlab", "jenkins", "bitbucket"]),
    help="Also write a CI job: tests recorded as evidence, and the gate on pushed commits.",
)
@click.option(
    "--ci-install",
    metavar="SPEC",
    help="The pip requirement the CI job installs (default: pinned to the FlowLoom "
    "running here: its git commit, or its version from the index it came from).",
)
@click.option(
    "--ci-test-command",
    metavar="CMD",
    help="The CI job's test command; it writes JUnit XML into test-results/.",
)
@click.pass_context
def init(
    ctx: click.Context,
    agents: tuple[str, ...],
    ci: str | None,
    ci_install: str | None,
    ci_test_command: str | None,
) -> None:
    """Set up capture here: policy file, git hooks, agent hooks (and a CI job)."""
    repo = GitRepo.discover(Path.cwd())
    top = repo.cwd
    changed: dict[str, Any] = {}
    ci_spec = None
    if ci:
        from flowloom.ci.templates import install_spec, job_script

        # Decided before anything is written: a job that cannot install is an error now.
        ci_spec = install_spec(ci_install)
        job_script(ci, ci_test_command)
    elif ci_install or ci_test_command:
        raise InputError("--ci-install and --ci-test-command go with --ci")

    policy_status = write_policy(top)
    click.echo(f"policy {policy_file(top).relative_to(top)}: {policy_status}")
    if policy_status != "unchanged":
        changed["policy"] = policy_status
    tightened = make_private(locate(str(top)).state_dir)
    if tightened:
        click.echo(
            f"capture state made private (0700 directories, 0600 ledger files): "
            f"{len(tightened)} paths"
        )
        changed["private"] = len(tightened)

    directory = hooks_dir(repo)
    click.echo(f"git hooks in {directory}:")
    for change in install_hooks(repo):
        click.echo(f"  {change.line()}")
        if change.action != "unchanged":
            changed.setdefault("hooks", {})[change.name] = change.action
    if _outside(directory, top):
        click.echo(
            f"  note: core.hooksPath points outside this repository; the hooks do nothing in "
            f"repositories without a [policy] in {policy_file(Path('.'))}"
        )
    if where() is None:
        click.echo(f"  warning: the hooks cannot find FlowLoom on this machine: {INSTALL_HINT}")
    if (top / ".pre-commit-config.yaml").exists():
        click.echo(
            "  note: pre-commit is configured; `pre-commit install` keeps FlowLoom's hooks"
            " running (it moves them to <hook>.legacy and runs them)"
        )

    agent_changes, mcp_change = _install_agents(top, agents)
    if agent_changes:
        changed["agents"] = agent_changes
    if mcp_change not in (None, "unchanged"):
        changed["mcp"] = mcp_change

    if ci and ci_spec is not None:
        from flowloom.ci.templates import write_ci

        for path, action in write_ci(top, ci, ci_spec, ci_test_command):
            click.echo(f"ci {path.relative_to(top)}: {action}")
            if action.startswith("created"):
                changed.setdefault("ci", []).append(str(path.relative_to(top)))
        click.echo(f"  CI installs {ci_spec.requirement} ({ci_spec.how})")
        if not ci_test_command:
            click.echo(
                "  next: put your test command in the job (it writes JUnit XML into "
                "test-results/), or run again with --ci-test-command CMD"
            )

    _refresh_hook_cache(repo)
    if changed:
        click.echo(_record_config_change(ctx, repo, {"action": "init", **changed}))
    else:
        click.echo("nothing to change: FlowLoom is set up here")
    if policy_status == "created":
        click.echo(
            "next: commit the policy file; that first commit has no decision, so give a reason:\n"
            f'  git add {policy_file(Path("."))} && FLOWLOOM_OVERRIDE="adopt FlowLoom" '
            'git commit -m "Adopt FlowLoom"'
        )


def _install_agents(top: Path, agents: Sequence[str]) -> tuple[list[str], str | None]:
    """Agent hooks for the chosen agents (and the MCP server entry for Claude Code)."""
    if "none" in agents:
        click.echo("agent hooks: skipped (--agent none)")
        return [], None
    if "all" in agents:
        chosen = list(HOOKED_AGENTS)
    elif agents:
        chosen = list(dict.fromkeys(agents))
    else:
        detected = detect_agents(top)
        chosen = [a for a in detected if a in HOOKED_AGENTS]
        if "aider" in detected:
            click.echo("agent hooks: aider has none; import its history with flowloom import aider")
    if not chosen:
        click.echo("agent hooks: no agent detected (use --agent claude-code|codex|cursor|all)")
        return [], None
    written = install_agent_hooks(top, chosen)
    where = f" (wrote {', '.join(written)})" if written else " (unchanged)"
    click.echo(f"agent hooks: {', '.join(chosen)}{where}")
    if "codex" in chosen:
        click.echo(
            "  note: Codex runs a project's hooks only once you trust them: start `codex` "
            "here, trust the project, and approve FlowLoom's hooks in /hooks (again after "
            "they change); unattended runs vetted by you: codex exec "
            "--dangerously-bypass-hook-trust"
        )
    mcp_change = None
    if "claude-code" in chosen:
        mcp_change = install_mcp_server(top)
        click.echo(f"mcp server: .mcp.json {mcp_change} (flowloom mcp, for Claude Code)")
    return written, mcp_change


@click.command()
@click.pass_context
def uninstall(ctx: click.Context) -> None:
    """Remove FlowLoom's hooks and restore the ones they chained; keep policy and ledger."""
    repo = GitRepo.discover(Path.cwd())
    top = repo.cwd
    click.echo(f"git hooks in {hooks_dir(repo)}:")
    removed: dict[str, str] = {}
    for change in remove_hooks(repo):
        click.echo(f"  {change.line()}")
        if change.action != "absent":
            removed[change.name] = change.action
    agents = uninstall_agent_hooks(top, HOOKED_AGENTS)
    click.echo("agent hooks: " + (f"removed from {', '.join(agents)}" if agents else "none"))
    if uninstall_mcp_server(top):
        agents.append(str(top / ".mcp.json"))
        click.echo("mcp server: removed from .mcp.json")
    common = repo.common_dir() / "flowloom"
    for name in ("hook-cache.json", "override.json"):
        (common / name).unlink(missing_ok=True)
    if removed or agents:
        refs: dict[str, Any] = {"action": "uninstall", "hooks": removed}
        if agents:
            refs["agents"] = agents
        click.echo(_record_config_change(ctx, repo, refs))
    click.echo(
        f"kept: the policy file ({policy_file(Path('.'))}), the ledger and any CI job;"
        " run flowloom init to set capture up again"
    )


@click.command()
@click.argument("reason")
@click.option("--approver", help="Who approved the override (required if the policy says so).")
def override(reason: str, approver: str | None) -> None:
    """Let the next commit through without a decision link, for REASON."""
    repo = GitRepo.discover(Path.cwd())
    policy = load_policy(repo.cwd)
    if not policy.configured:
        raise InputError(
            "FlowLoom is not set up in this repository", hint="run flowloom init first"
        )
    pending = Override(reason.strip(), (approver or "").strip() or None)
    problem = pending.problem(policy, str(repo.user()))
    if problem:
        raise InputError(problem)
    write_pending_override(repo.common_dir(), pending)
    if not policy.enforce:
        click.echo("note: the policy does not enforce links (enforce = false)")
    minutes = OVERRIDE_TTL_S // 60
    click.echo(
        f"the next commit may go without a decision link (within {minutes} minutes); "
        "the override is recorded in the ledger when that commit uses it"
    )


@click.command(
    "git-hook",
    hidden=True,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def git_hook(args: tuple[str, ...]) -> None:
    """Run a git hook (`python -m flowloom git-hook` does the same without click)."""
    from flowloom.capture.githooks.hookmain import main as hook_main

    raise SystemExit(hook_main(list(args)))


# -- status ------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 5400:
        return f"{int(seconds // 60)} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _hook_problem(state: HookState) -> str | None:
    if not state.installed:
        return "missing"
    if not state.executable:
        return "not executable"
    if not state.current:
        return "was written by an earlier FlowLoom: run flowloom init again"
    if not state.interpreter_ok:
        return f"cannot find FlowLoom here; {INSTALL_HINT}"
    if state.chained is not None and not state.chained_executable:
        return f"chained hook {state.chained.name} is not executable"
    return None


def _linked_share(ctx: click.Context, repo: GitRepo) -> dict[str, Any]:
    """How many commits since FlowLoom was adopted (the policy file added) are linked."""
    from flowloom.repo.links import LinkFinder, LinkIndex

    added = repo.run(
        "log", "--diff-filter=A", "--format=%H", "HEAD", "--", ".flowloom/config.toml", check=False
    ).split()
    if repo.head() is None or not added:
        return {"since": None, "commits": 0, "linked": 0, "share": None, "newest": None}
    adopted = added[-1]
    commits = repo.commits(f"{adopted}..HEAD", no_merges=True, limit=STATUS_COMMITS)
    ledger = AppContext.of(ctx).services("read").ledger
    finder = LinkFinder(repo, LinkIndex.from_store(ledger.store, ledger.log))
    linked = 0
    for commit in commits:
        link = finder.find(commit)
        if link is not None and link.linked and not link.missing:
            linked += 1
    return {
        "since": adopted,
        "commits": len(commits),
        "linked": linked,
        "share": linked / len(commits) if commits else None,
        "newest": max((c.committed_at for c in commits), default=None),
    }


def _check_writable(database: str) -> None:
    """StoreUnavailableError when a local ledger that does not exist yet could not be
    created where it is configured (status reads without creating it, the drainer would
    fail): say so now rather than when events pile up."""
    import os

    from flowloom.errors import StoreUnavailableError
    from flowloom.store.urls import sqlite_path

    try:
        path = sqlite_path(database)
    except ValueError:
        return
    if path is None or Path(path).exists():
        return
    parent = Path(path).parent
    if not parent.exists():  # made on first use, if its own parent allows it
        parent = next((p for p in parent.parents if p.exists()), parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StoreUnavailableError(f"cannot create {path}: {parent} is not a writable directory")


def _last_event(ctx: click.Context) -> dict[str, Any]:
    ledger = AppContext.of(ctx).services("read").ledger
    size = ledger.size()
    checkpoint = ledger.store.latest_checkpoint(ledger.log)
    database = AppContext.of(ctx).settings().database
    result: dict[str, Any] = {
        "database": database if "://" not in database else database.split("://", 1)[0] + "://…",
        "size": size,
        "checkpoint": checkpoint.size if checkpoint else None,
        "last_event": None,
        "last_check": None,
    }
    if size:
        event = json.loads(ledger.entry(size - 1).envelope)
        moment = datetime.fromisoformat(event["ts"])
        result["last_event"] = {
            "kind": event["kind"],
            "ts": event["ts"],
            "age_s": (datetime.now(UTC) - moment).total_seconds(),
            "unix": moment.timestamp(),
        }
    last_check = None
    for entry in ledger.store.entries(ledger.log, kind="ci.result"):
        last_check = json.loads(entry.envelope)
    if last_check is not None:
        refs = last_check.get("refs", {})
        result["last_check"] = {
            "ts": last_check["ts"],
            "ok": refs.get("ok"),
            "range": last_check.get("subject"),
            "failing": refs.get("failing"),
        }
    return result


def _last_verification(ctx: click.Context) -> dict[str, Any] | None:
    app = AppContext.of(ctx)
    try:
        data = json.loads(app.settings().last_verification_file.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _capture_health(
    ctx: click.Context, state_dir: str, local: bool, acknowledge: bool, ledger_ok: bool
) -> tuple[dict[str, Any], list[str]]:
    """The spool backlog and the capture errors since the last healthy state, and the
    warnings they call for (`flowloom.capture.health`)."""
    from flowloom.capture import health

    found = health.backlog(state_dir)
    warnings: list[str] = []
    if local and found.files and (found.stale or found.last_failure):
        why = f"; the drainer says: {found.last_failure}" if found.last_failure else ""
        warnings.append(
            f"{found.events} events in {found.files} spool files are waiting to be recorded, "
            f"the oldest since {found.oldest} ({_ago(found.oldest_age_s or 0)}){why}"
        )
    queue = health.commit_queue(state_dir)
    if queue.stuck:
        warnings.append(
            f"{queue.requests} auto-commit requests are waiting in {queue.directory}, the "
            f"oldest since {queue.oldest or 'an unreadable request'} "
            f"({_ago(queue.oldest_age_s or 0)}): no drainer is making them, so the agent's "
            "writes are not committed; the next prompt makes them, or see capture.log"
        )
    if found.fallback_in_use:
        why = found.outbox_unusable or "it could not be written when they were captured"
        warnings.append(
            f"capture is using its fallback outbox ({found.fallback_dir}, "
            f"{found.fallback_files} files waiting): the outbox cannot be used ({why}). "
            "Events are kept and recorded, but repair the outbox: make "
            f"{os.path.join(state_dir, 'spool')} a directory you can write"
        )
    if not ledger_ok:
        return {"spool": found.to_json(), "commits": queue.to_json(), "errors": None}, warnings
    ledger = AppContext.of(ctx).services("write" if acknowledge else "read").ledger
    through, errors = health.errors_since_healthy(ledger)
    acknowledged = None
    if acknowledge and errors:
        acknowledged = health.acknowledge(ledger, errors)
        click.echo(
            f"acknowledged {len(errors)} capture errors (through entry {errors[-1].index}), "
            f"recorded as entry {acknowledged} (config.change)",
            err=True,
        )
        errors = []
    if errors:
        since = f"entry {through}" if through is not None else "the ledger began"
        lines = "\n  ".join(health.describe(errors))
        warnings.append(
            f"{len(errors)} capture errors since the last acknowledgement ({since}):\n  {lines}"
            "\n  once dealt with: flowloom status --acknowledge"
        )
    data = {
        "spool": found.to_json(),
        "commits": queue.to_json(),
        "errors": {
            "acknowledged_through": through,
            "count": len(errors),
            "latest": [e.to_json() for e in errors[-5:]],
        },
    }
    return data, warnings


def _silent_agent_warnings(
    ctx: click.Context, setup: dict[str, str], state_dir: str, capture: dict[str, Any]
) -> list[str]:
    """Agent hooks installed here long enough ago that never recorded anything."""
    from flowloom.capture import health

    ledger = AppContext.of(ctx).services("read").ledger
    hooked = [agent for agent, how in setup.items() if how == "ok"]
    silent = health.silent_agents(ledger, hooked, state_dir)
    capture["silent_agents"] = [s.to_json() for s in silent]
    hints = {
        "codex": " (Codex runs them only once the project and its hooks are trusted: "
        "docs/capture.md)",
    }
    return [
        f"{s.agent} hooks were installed {_ago(s.age_s)} ({s.installed}) and have never "
        f"fired: nothing from {s.agent} is being recorded{hints.get(s.agent, '')}"
        for s in silent
    ]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--acknowledge",
    is_flag=True,
    help="Record that the capture errors shown were dealt with (a config.change).",
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, acknowledge: bool) -> None:
    """Say whether capture works here: hooks, agent hooks, spool, errors, ledger, links.

    Exits 1 when anything needs attention (each is a WARNING line), 0 otherwise.
    """
    repo = GitRepo.discover(Path.cwd())
    top = repo.cwd
    policy = load_policy(top)
    warnings: list[str] = []
    if not policy.configured:
        warnings.append("FlowLoom is not set up in this repository: run flowloom init")

    hooks = hook_status(repo)
    for state in hooks:
        problem = _hook_problem(state)
        if problem and policy.configured:
            warnings.append(f"capture is broken: git hook {state.name} {problem}")

    # Only the agents this repository was set up for: a program on PATH is no reason.
    setup = agent_hook_setup(top)
    agents = {agent: state == "ok" for agent, state in setup.items()}
    for agent, how in setup.items():
        if not policy.configured or how in ("ok", "absent"):
            continue
        if how == "broken":
            warnings.append(f"{agent} hooks cannot find FlowLoom here: {INSTALL_HINT}")
        elif how == "stale":
            warnings.append(
                f"{agent} hooks were written by an earlier FlowLoom (they name one machine's "
                "Python, in a file the team shares): run flowloom init again"
            )
        else:
            warnings.append(f"{agent} hooks are {how} here: run flowloom init again")

    settings = AppContext.of(ctx).settings()
    state_dir = locate(str(top)).state_dir
    warnings.extend(server_warnings(settings, state_dir))
    ledger: dict[str, Any] | None = None
    share: dict[str, Any] | None = None
    try:
        _check_writable(settings.database)
        ledger = _last_event(ctx)
        share = _linked_share(ctx, repo)
    except FlowLoomError as exc:
        warnings.append(
            f"the ledger cannot be used: {exc.message}; captured events wait in the spool"
        )
    capture, capture_warnings = _capture_health(
        ctx, state_dir, settings.server_url is None, acknowledge, ledger is not None
    )
    warnings.extend(capture_warnings)
    if ledger is not None and settings.server_url is None and policy.configured:
        warnings.extend(_silent_agent_warnings(ctx, setup, state_dir, capture))
    if ledger is not None and share is not None:
        warnings.extend(_ledger_warnings(ledger, share, settings.server_url is None))
    verification = _last_verification(ctx)
    if verification is not None and not verification.get("ok"):
        warnings.append(
            f"the last `flowloom log verify` ({verification.get('ts')}) FAILED: "
            f"{verification.get('problems')} problems"
        )

    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not warnings,
                    "repository": str(top),
                    "branch": repo.branch(),
                    "policy": {"configured": policy.configured, **policy.to_table()},
                    "hooks_dir": str(hooks_dir(repo)),
                    "hooks": [
                        {
                            "name": h.name,
                            "path": str(h.path),
                            "installed": h.installed,
                            "executable": h.executable,
                            "via": h.via,
                            "interpreter": h.interpreter,
                            "chained": str(h.chained) if h.chained else None,
                            "chained_executable": h.chained_executable,
                            "ok": h.healthy,
                        }
                        for h in hooks
                    ],
                    "agent_hooks": agents,
                    "agent_setup": setup,
                    "capture": capture,
                    "last_verification": verification,
                    "ledger": ledger,
                    "linked": share,
                    "warnings": warnings,
                },
                indent=2,
            )
        )
        ctx.exit(1 if warnings else 0)
    _print_status(
        repo, policy.configured, policy.enforce, hooks, setup, ledger, share, verification
    )
    _print_capture(capture)
    for warning in warnings:
        click.echo(f"WARNING: {warning}")
    if not warnings:
        click.echo("ok: capture is working")
    ctx.exit(1 if warnings else 0)


def _ledger_warnings(ledger: dict[str, Any], share: dict[str, Any], local: bool) -> list[str]:
    """Commits the ledger missed, and too few linked commits."""
    warnings = []
    last = ledger["last_event"]
    # With a server the events go there, so the local ledger's age says nothing.
    if share["newest"] is not None and local:
        since = last["unix"] if last else 0.0
        if share["newest"] > since + STALE_AFTER_S:
            when = _ago(last["age_s"]) if last else "never"
            warnings.append(
                f"commits were made after the last ledger event ({when}): capture is not recording"
            )
    if share["share"] is not None and share["commits"] >= 5 and share["share"] < LOW_LINKED_SHARE:
        warnings.append(
            f"only {share['linked']} of {share['commits']} recent commits are linked to a decision"
        )
    return warnings


def _print_capture(capture: dict[str, Any]) -> None:
    found = capture["spool"]
    if found["files"]:
        line = (
            f"spool: {found['events']} events in {found['files']} files waiting, the oldest "
            f"since {found['oldest']} ({_ago(found['oldest_age_s'] or 0)})"
        )
    else:
        line = "spool: empty (everything captured is recorded)"
    if found["bad"]:
        line += f"; {found['bad']} unreadable files set aside in spool/bad/"
    click.echo(line)
    queue = capture["commits"]
    if queue["requests"]:
        click.echo(
            f"commit queue: {queue['requests']} auto-commits waiting, the oldest since "
            f"{queue['oldest'] or '?'} ({_ago(queue['oldest_age_s'] or 0)})"
        )
    else:
        click.echo("commit queue: empty")
    errors = capture["errors"]
    if errors is None:
        click.echo("capture errors: unknown (the ledger cannot be read)")
        return
    through = errors["acknowledged_through"]
    since = f"since entry {through}" if through is not None else "ever"
    click.echo(f"capture errors: {errors['count']} {since}")


def _print_status(
    repo: GitRepo,
    configured: bool,
    enforce: bool,
    hooks: list[HookState],
    agents: dict[str, str],
    ledger: dict[str, Any] | None,
    share: dict[str, Any] | None,
    verification: dict[str, Any] | None,
) -> None:
    echo: Callable[[str], None] = click.echo
    echo(f"repository: {repo.cwd} (branch {repo.branch() or 'detached'})")
    if configured:
        echo(f"policy: enforce = {'true' if enforce else 'false'}")
    else:
        echo("policy: none (not set up)")
    echo(f"git hooks in {hooks_dir(repo)}:")
    for state in hooks:
        problem = _hook_problem(state)
        chained = f", chains {state.chained.name}" if state.chained else ""
        via = f" via {state.via}" if state.via and state.via != "hooks dir" else ""
        echo(f"  {state.name:<19} {problem.upper() if problem else 'ok'}{via}{chained}")
    names = {"absent": "not set up", "ok": "ok"}
    echo("agent hooks: " + ", ".join(f"{a} {names.get(s, s)}" for a, s in agents.items()))
    if ledger is None or share is None:
        echo("ledger: cannot be used (see the warning below)")
    else:
        _print_ledger(ledger, share)
    if verification is None:
        echo("last verification: none (flowloom log verify)")
    else:
        verdict = "ok" if verification.get("ok") else "FAILED"
        echo(
            f"last verification: {verdict}, {verification.get('size')} entries, "
            f"at {verification.get('ts')}"
        )


def _print_ledger(ledger: dict[str, Any], share: dict[str, Any]) -> None:
    echo: Callable[[str], None] = click.echo
    last = ledger["last_event"]
    checkpoint = ledger["checkpoint"]
    echo(
        f"ledger: {ledger['size']} entries, "
        + (f"latest checkpoint at {checkpoint}" if checkpoint is not None else "no checkpoint")
        + (f"; last event {_ago(last['age_s'])} ({last['kind']})" if last else "; no events")
    )
    if share["share"] is None:
        echo("linked commits: none yet since FlowLoom was adopted")
    else:
        echo(
            f"linked commits: {share['linked']} of {share['commits']} since FlowLoom was adopted"
            f" ({share['share']:.0%})"
        )
    check = ledger["last_check"]
    if check is None:
        echo("last check: none recorded (flowloom check --record)")
    else:
        verdict = "ok" if check["ok"] else f"FAILED ({check['failing']} commits)"
        echo(f"last check: {verdict} on {check['range']} at {check['ts']}")
