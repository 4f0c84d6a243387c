"""Running the MCP server: opening its backend and serving it over stdio or HTTP.

`open_backend` wires what the tools need from `build_services(settings)` (the ledger),
the project memory, the repository the server was started in and, over HTTP, the
Directory that checks API keys and the Authorizer. It runs on the `Worker` thread, which
owns everything it opens and closes it when the server stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowloom.config import Settings, find_git_dirs
from flowloom.mcp.server import Backend, LogLevel, build_server
from flowloom.mcp.tools import ProjectTools
from flowloom.mcp.worker import Worker

if TYPE_CHECKING:
    from flowloom.ledger.provenance import Trust
    from flowloom.memory.interface import MemoryService
    from flowloom.services import Services

__all__ = ["open_backend", "run_http", "run_stdio"]

_log = logging.getLogger("flowloom.mcp")


def _trust(services: Services, repo_top: Path | None) -> Trust:
    """Approvals proven by the log's keys and the repository's allowed signers."""
    from flowloom.repo.git import GitRepo
    from flowloom.repo.signers import repo_trust
    from flowloom.services import log_attesters, server_keys

    repo = GitRepo(repo_top) if repo_top is not None else None
    return repo_trust(log_attesters(services), repo, servers=server_keys(services.settings))


def open_backend(settings: Settings, cwd: Path, *, http: bool) -> Backend:
    """Build the backend for a server started in `cwd` (on the worker thread)."""
    from flowloom.decisions.why import index_path
    from flowloom.services import AuditLedgers, build_services

    git = find_git_dirs(cwd)
    repo_top, common = (git[0], git[1]) if git is not None else (None, None)
    refresh: Callable[[], None] | None = None
    if settings.server_url is not None:
        # The team's record (docs/sync.md): the tools read the server's log through this
        # clone's verified copy, brought up to date before each call, and record through
        # the outbox, like the CLI (over stdio and over HTTP alike).
        from flowloom.capture.agents.common import locate
        from flowloom.services import build_team_services

        services = build_team_services(settings, locate(str(cwd)).state_dir, agent="mcp")
        if services.notice:
            _log.warning("%s", services.notice)
        refresh = _team_refresh(services)
    else:
        services = build_services(settings)
    closers = [services.close]
    try:
        memory = _open_memory(services, repo_top)
        if memory is not None:
            closers.append(memory.close)
        tools = ProjectTools(
            ledger=services.ledger,
            memory=memory,
            repo_top=repo_top,
            index_path=index_path(common) if common is not None else None,
            git_common_dir=common,
            link_next_commit=not http,
            trust=_trust(services, repo_top),
            closers=closers,
        )
        if not http:
            return Backend(tools=tools, project=settings.project, refresh=refresh)
        from flowloom.auth.directory import Directory
        from flowloom.auth.permissions import Authorizer
        from flowloom.ledger.log import META_FIELDS

        ledger = services.ledger
        if services.team:
            # The keys this HTTP server checks are its own directory's (the local
            # database); their security events are kept beside them: the team server
            # takes no auth.* event it did not make itself.
            local = AuditLedgers(settings)
            closers.append(local.close)
            ledger = local.ledger(settings.project)

        def audit(kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
            # This process holds one project's log: instance-wide security events (a
            # key that matches no user) are kept there too, marked as such.
            if project not in (None, settings.project):
                _log.warning("security event %s for project %s not recorded here", kind, project)
                return
            envelope = {k: v for k, v in meta.items() if k in META_FIELDS and k != "refs"}
            refs = dict(meta.get("refs") or {})
            refs.update({k: v for k, v in meta.items() if k not in META_FIELDS and v is not None})
            if project is None:
                refs["scope"] = "instance"
            envelope.setdefault("actor", {"type": "service", "id": "flowloom-mcp"})
            ledger.record(kind, meta={**envelope, "refs": refs})

        directory = Directory(settings.database, audit=audit)
        return Backend(
            tools=tools,
            project=settings.project,
            authenticate=directory.principal_for_key,
            authorizer=Authorizer(),
            closers=[directory.close],
            refresh=refresh,
        )
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise


def _team_refresh(services: Services) -> Callable[[], None]:
    """Bring the team record's copy up to date (within `server_fresh_seconds`) before a
    call; the server out of reach: answer from the copy, and say so in the log."""
    from flowloom.sinks.team import TeamLedger

    ledger = services.ledger
    assert isinstance(ledger, TeamLedger)
    settings = services.settings

    def refresh() -> None:
        state = ledger.mirror.refresh(ledger.link, max_age=settings.server_fresh_seconds)
        ledger.store = ledger.mirror.store
        notice = state.label(ledger.link.server_url, ledger.link.project)
        if state.stale and notice:
            _log.warning("%s", notice)

    return refresh


def _open_memory(services: Services, repo_top: Path | None) -> MemoryService | None:
    """The project memory, or None when this installation has no memory service."""
    try:
        from flowloom.memory.service import Memory
    except ImportError:
        return None
    return Memory.configured(services.ledger, services.settings.sources, repo=repo_top)


def _worker(settings: Settings, cwd: Path, *, http: bool) -> Worker[Backend]:
    return Worker(lambda: open_backend(settings, cwd, http=http), lambda b: b.close())


def run_stdio(settings: Settings, cwd: Path, *, log_level: LogLevel = "WARNING") -> None:
    """Serve over stdin/stdout until the client closes them."""
    worker = _worker(settings, cwd, http=False)
    try:
        worker.call(lambda b: None)  # open now: a broken setup fails before the handshake
        build_server(worker, log_level=log_level).run("stdio")
    finally:
        worker.close()


def run_http(
    settings: Settings, cwd: Path, *, host: str, port: int, log_level: LogLevel = "WARNING"
) -> None:
    """Serve over streamable HTTP at http://host:port/mcp, behind API keys."""
    from flowloom.auth.principals import Principal
    from flowloom.mcp.http import ApiKeyGate, serve_http

    worker = _worker(settings, cwd, http=True)
    try:
        worker.call(lambda b: None)

        async def authenticate(secret: str) -> Principal:
            def check(backend: Backend) -> Principal:
                assert backend.authenticate is not None and backend.authorizer is not None
                principal = backend.authenticate(secret)
                backend.authorizer.check(principal, "ledger.read", backend.project)
                return principal

            return await worker.run(check)

        server = build_server(worker, log_level=log_level)
        app = ApiKeyGate(server.streamable_http_app(host=host), authenticate)
        serve_http(app, host=host, port=port, log_level=log_level.lower())
    finally:
        worker.close()
