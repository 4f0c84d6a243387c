"""The command line's shared state: top-level options, services built on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowloom.config import Settings, load_settings

if TYPE_CHECKING:
    from flowloom.client.http import HttpClient
    from flowloom.compliance.statement import TrustRecord
    from flowloom.ledger.provenance import Trust
    from flowloom.services import Access, Services

__all__ = ["AppContext"]


@dataclass
class AppContext:
    """What the top-level options decided; services are built on first use."""

    database: str | None
    project: str | None
    _services: Services | None = None

    @staticmethod
    def of(ctx: click.Context) -> AppContext:
        """The AppContext the top-level `flowloom` group put on the root context."""
        app = ctx.find_root().obj
        assert isinstance(app, AppContext)
        return app

    def settings(self) -> Settings:
        return load_settings(Path.cwd()).with_overrides(
            database=self.database, project=self.project
        )

    def services(self, access: Access = "write") -> Services:
        """The services, built for how the command uses the log (see services.Access).

        Reading commands say "read": the database is opened read-only and no key is
        ever created. Services built for reading are rebuilt if the command then writes.
        """
        rank = {"read": 0, "sign": 1, "write": 2}
        if self._services is not None and rank[self._services.access] < rank[access]:
            self._services.close()
            self._services = None
        if self._services is None:
            from flowloom.services import build_services

            self._services = build_services(self.settings(), access=access)
        return self._services

    def record_services(self, access: Access = "write") -> Services:
        """The services over the record this command reads and writes: the team's record
        on the server when one is configured (docs/sync.md: writes go through the
        outbox, reads come from this clone's verified copy, labelled on stderr when it
        may be stale), else the local ledger (`services`)."""
        settings = self.settings()
        if settings.server_url is None:
            return self.services(access)
        rank = {"read": 0, "sign": 1, "write": 2}
        current = self._services
        if current is not None and current.team and rank[current.access] >= rank[access]:
            return current
        self.close()
        from flowloom.capture.agents.common import locate
        from flowloom.services import build_team_services

        self._services = build_team_services(
            settings, locate(str(Path.cwd())).state_dir, access=access
        )
        if self._services.notice:
            click.echo(self._services.notice, err=True)
        return self._services

    def team_server(self) -> str | None:
        """The team server this command's record lives on: the configured server unless a
        ledger database was named on purpose (--database, FLOWLOOM_DATABASE: an operator
        working on the server's own database)."""
        settings = self.settings()
        if self.database is not None or "FLOWLOOM_DATABASE" in settings.sources:
            return None
        return settings.server_url

    def local_only(self, what: str, there: str) -> None:
        """Refuse `what` in server mode: it would write a local ledger beside the team's
        record (a split record). `there` is the command to run on the server."""
        server = self.team_server()
        if server is None:
            return
        from flowloom.errors import InputError

        raise InputError(
            f"{what} acts on the team's record, which lives on the server {server}: "
            "this clone's local ledger is not it",
            hint=f"run it where the server's database and keys are: {there}",
        )

    def server_http(self) -> tuple[HttpClient, str]:
        """The team server's HTTP client with this clone's API key, and the project."""
        from flowloom.client.http import HttpClient

        settings = self.settings()
        assert settings.server_url is not None
        key = settings.server_api_key()
        if not key:
            from flowloom.errors import ConfigError

            raise ConfigError(
                f"a server is configured ({settings.server_url}) but no API key",
                hint="set FLOWLOOM_API_KEY, or [server] api_key_file in the config",
            )
        return HttpClient(settings.server_url, key), settings.project

    def trust(self, rev: str = "HEAD") -> Trust:
        """What the command line believes when it reads authority-bearing events.

        Attestations by this log's own key (FlowLoom's commands wrote them; no person is
        proven by that alone), by the team server this clone pins (`server_vkey`: it
        authenticated the person), and approvals signed with an SSH key that the
        repository's allowed-signers file at `rev` lists for the approver.
        """
        from flowloom.config import find_git_dirs
        from flowloom.repo.git import GitRepo
        from flowloom.repo.signers import repo_trust
        from flowloom.services import log_attesters, server_keys

        # Whatever the command built (a reader's read-only services stay read-only).
        services = self._services or self.services("read")
        repo = GitRepo.discover(Path.cwd()) if find_git_dirs(Path.cwd()) else None
        return repo_trust(
            log_attesters(services), repo, rev, servers=server_keys(services.settings)
        )

    def trust_record(self, rev: str = "HEAD") -> TrustRecord:
        """`trust()` as a report's statement records it: the keys and the allowed-signers
        file's text at `rev` (resolved to its commit), so a verifier can rebuild it."""
        from flowloom.compliance.statement import TrustRecord
        from flowloom.config import find_git_dirs
        from flowloom.repo.git import GitRepo
        from flowloom.repo.signers import ALLOWED_SIGNERS_PATH
        from flowloom.services import log_attesters, server_keys

        services = self._services or self.services("read")
        text = commit = None
        if find_git_dirs(Path.cwd()):
            repo = GitRepo.discover(Path.cwd())
            commit = repo.resolve(rev)
            if commit and repo.ok("cat-file", "-e", f"{commit}:{ALLOWED_SIGNERS_PATH}"):
                text = repo.run("show", f"{commit}:{ALLOWED_SIGNERS_PATH}")
        return TrustRecord(
            servers=tuple(v.vkey for v in server_keys(services.settings)),
            attesters=tuple(v.vkey for v in log_attesters(services)),
            allowed_signers=text,
            allowed_signers_rev=commit if text is not None else None,
        )

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None
