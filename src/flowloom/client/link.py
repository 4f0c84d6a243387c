"""The link to a configured server: outbox, ledger API and trust for one clone, together.

`ServerLink.from_settings` is the one place that turns settings (`server_url`, API key,
`server_vkey`, project) and a capture state directory into the pieces the commands and
the drainer use: `guarded_api` for the server sink (`flowloom.sinks.server`), `check()`
to verify the server's log against the pinned key and kept checkpoint. Nothing
is sent to a project whose trust state carries an alarm. Standard library only until a
check verifies signatures.
"""

from __future__ import annotations

import os

from flowloom.client.api import LedgerApi
from flowloom.client.http import DEFAULT_TIMEOUT_S, HttpClient
from flowloom.client.trust import HistoryRewrittenError, ServerTrust, TrustCheck, check_server
from flowloom.errors import ConfigError, FlowLoomError

__all__ = ["ServerLink"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flowloom.config import Settings


class ServerLink:
    """One clone's connection to one server, for its default project and any other."""

    def __init__(
        self,
        *,
        server_url: str,
        api_key: str | None,
        project: str,
        state_dir: str,
        given_vkey: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError(
                f"a server is configured ({server_url}) but no API key",
                hint="set FLOWLOOM_API_KEY, or [server] api_key_file in the config",
            )
        self.server_url = server_url
        self.project = project
        self.state_dir = state_dir
        self.given_vkey = given_vkey
        self.http = HttpClient(server_url, api_key, timeout=timeout)
        self.observer = observer

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        state_dir: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        observer: Callable[[str], None] | None = None,
    ) -> ServerLink:
        if settings.server_url is None:
            raise ConfigError(
                "no server is configured",
                hint="set FLOWLOOM_SERVER, or [server] url in the config",
            )
        return cls(
            server_url=settings.server_url,
            api_key=settings.server_api_key(),
            project=settings.project,
            state_dir=state_dir,
            given_vkey=settings.server_vkey,
            timeout=timeout,
            observer=observer,
        )

    @property
    def spool_dir(self) -> str:
        return os.path.join(self.state_dir, "spool")

    def trust(self, project: str | None = None) -> ServerTrust:
        return ServerTrust(self.state_dir, self.server_url, project or self.project)

    def api(self, project: str | None = None) -> LedgerApi:
        return LedgerApi(self.http, project or self.project)

    def guarded_api(self, project: str) -> LedgerApi:
        """The API of `project`, refused while its trust state carries an alarm."""
        alarm = self.trust(project).load().alarm
        if alarm is not None:
            raise HistoryRewrittenError(
                f"not sending to {self.server_url} (project {project}): {alarm}",
                hint="events stay in the outbox; see docs/sync.md, then "
                "'flowloom sync --repin' once it is explained",
            )
        return self.api(project)

    def check(self) -> TrustCheck:
        """Verify the server's latest checkpoint (see `flowloom.client.trust`)."""
        trust = self.trust()
        try:
            return check_server(self.api(), trust, given_vkey=self.given_vkey)
        except HistoryRewrittenError:
            raise
        except FlowLoomError as exc:
            trust.note_error(exc.message)
            raise
