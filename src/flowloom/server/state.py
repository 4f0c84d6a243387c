"""ServerState: what every request handler shares, built once per server process.

It holds the settings, the one Store (every project's log lives in it), the Directory
(users, keys, grants), the Authorizer, the idempotency book, the metrics and a registry
of ledgers, one per project, built on first use. Several server processes over one
PostgreSQL database are safe: indices are assigned by the store under its lock, and
every process signs with the same key files (the shared ``home``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowloom.ledger.keyprovider import MasterKeys, SigningKeys
from flowloom.ledger.log import META_FIELDS, Ledger
from flowloom.ledger.provenance import Trust
from flowloom.ledger.writer import LogWriter
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.settings import ServerSettings
from flowloom.store.interface import Store

if TYPE_CHECKING:
    from flowloom.auth.directory import Directory
    from flowloom.auth.ldap import LdapDirectory
    from flowloom.auth.oidc import OidcClient
    from flowloom.auth.permissions import Authorizer
    from flowloom.auth.saml import SamlServiceProvider
    from flowloom.auth.scim import Provisioning
    from flowloom.integrations.service import Integrations
    from flowloom.server.gateway_view import GatewayView
    from flowloom.server.idempotency import IdempotencyBook
    from flowloom.server.metrics import Metrics
    from flowloom.server.tlog.book import TlogBook
    from flowloom.siem.service import Siem
    from flowloom.webhooks.service import Webhooks

__all__ = ["SERVER_ACTOR", "LedgerRegistry", "ServerState"]

SERVER_ACTOR: Mapping[str, str] = {"type": "service", "id": "flowloom-server", "name": "FlowLoom"}
"""Who acts when the server itself records something (a generated key, an export)."""

_log = logging.getLogger("flowloom.server")


class LedgerRegistry:
    """One Ledger per project over the shared store, created lazily and kept open.

    A project's origin is '<public host/path>/<project>'; its signing key is the one its
    log pins, found in the shared KeyStore, so every server process signs alike.
    """

    def __init__(
        self,
        store: Store,
        keys: SigningKeys,
        *,
        origin: Callable[[str], str],
        max_body_bytes: int,
        batch_max_entries: int = 2000,
        master: MasterKeys | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._master = master
        self._origin = origin
        self._max_body = max_body_bytes
        self._batch_max = batch_max_entries
        self._ledgers: dict[str, Ledger] = {}
        self._lock = threading.Lock()

    def get(self, project: str) -> Ledger:
        """The ledger of `project` (whose existence the caller has checked)."""
        ledger = self._ledgers.get(project)
        if ledger is not None:
            return ledger
        with self._lock:
            ledger = self._ledgers.get(project)
            if ledger is None:
                ledger = self._build(project)
                self._ledgers[project] = ledger
        return ledger

    def _build(self, project: str) -> Ledger:
        from flowloom.services import open_ledger

        # Reading a project builds its ledger too: nothing is written until something is
        # recorded, and only the first write to a brand-new log generates its key.
        return open_ledger(
            self._store,
            self._keys,
            master=self._master,
            log=project,
            origin=self._origin(project),
            actor=SERVER_ACTOR,
            max_body_bytes=self._max_body,
            writer=LogWriter(self._store, project, max_batch=self._batch_max),
        )

    def audit(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        """Record a security event in `project`'s ledger, or the instance's when None.

        Meta fields the envelope knows (actor, session, git, subject, refs) go in as they
        are; anything else is kept under refs so no detail is lost. The Directory calls
        this for every security-relevant change it makes.
        """
        envelope: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in meta.items():
            if key in META_FIELDS:
                envelope[key] = value
            elif value is not None:
                extra[key] = value
        if extra:
            envelope["refs"] = {**dict(envelope.get("refs") or {}), **extra}
        envelope.setdefault("actor", dict(SERVER_ACTOR))
        self.get(project or INSTANCE_PROJECT).record(kind, meta=envelope)

    def close(self) -> None:
        with self._lock:
            for ledger in self._ledgers.values():
                ledger.writer.close()
            self._ledgers.clear()


@dataclass
class ServerState:
    """The server's collaborators; `create_app` reads everything from here."""

    settings: ServerSettings
    store: Store
    keys: SigningKeys
    ledgers: LedgerRegistry
    directory: Directory
    authorizer: Authorizer
    idempotency: IdempotencyBook
    metrics: Metrics
    oidc: OidcClient | None = None
    """Single sign-on, when a [server.oidc] table (or FLOWLOOM_SERVER_OIDC_*) configures it."""
    saml: SamlServiceProvider | None = None
    """SAML single sign-on, when a [server.saml] table (or FLOWLOOM_SERVER_SAML_*) does."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    repositories: dict[str, Path] = field(default_factory=dict)
    """Project → a clone the server may read (from [server.repositories])."""
    gateway: GatewayView | None = None
    """The LLM gateway's budgets, keys, providers and policy (read-only, opened on use)."""
    provisioning: Provisioning | None = None
    """SCIM 2.0 provisioning (/scim/v2) and the cut-off hooks deprovisioning runs."""
    ldap: LdapDirectory | None = None
    """LDAP sign-in and group sync, when a [server.ldap] table configures it."""
    tlog: TlogBook | None = None
    """The tile API's publicity settings and collected witness cosignatures."""
    integrations: Integrations | None = None
    """Code hosts (GitHub, GitLab, Bitbucket): settings, outbound queue, webhooks."""
    webhooks: Webhooks | None = None
    """Outbound webhooks: subscriptions, their delivery queue and its dispatcher."""
    siem: Siem | None = None
    """SIEM destinations and forwarding (flowloom.siem), secrets sealed like provider keys."""

    def ledger(self, project: str) -> Ledger:
        return self.ledgers.get(project)

    def trust(self, project: str) -> Trust:
        """What every reader on this server believes of `project`'s events: attestations by
        this server's keys (the project's, and the instance log's, where users are
        disabled and keys revoked), written by the endpoint that authenticated the actor.
        An authority-bearing event without one (appended around the endpoints) never counts.
        """
        from flowloom.ledger.keyring import log_keys

        keys = list(log_keys(self.store, project).verifiers)
        if project != INSTANCE_PROJECT:
            keys += log_keys(self.store, INSTANCE_PROJECT).verifiers
        return Trust.of_server(keys)

    def audit(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        """Record a security event in `project`'s ledger, or the instance's when None."""
        self.ledgers.audit(kind, project, meta)

    def close(self) -> None:
        """Flush the writers, then close the databases (last opened, first closed)."""
        self.ledgers.close()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # closing must go on for the others
                _log.exception("error while closing the server")
        self.store.close()
