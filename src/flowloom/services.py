"""build_services(settings): the one place where FlowLoom's objects are wired together.

The CLI, the server and the MCP server all call this; nothing else constructs a store,
a key store or a ledger, and nothing keeps them in module-level state.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowloom.config import Settings
from flowloom.errors import InputError
from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.store.interface import Store

if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier
    from flowloom.server.settings import ServerSettings
    from flowloom.server.state import ServerState

__all__ = [
    "AuditLedgers",
    "Services",
    "build_server",
    "build_services",
    "default_actor",
    "log_attesters",
    "open_store",
    "server_keys",
]


@dataclass
class Services:
    """Everything a command needs, built once per process."""

    settings: Settings
    store: Store
    keys: KeyStore
    ledger: Ledger

    def close(self) -> None:
        self.ledger.writer.close()
        self.store.close()


def open_store(url: str) -> Store:
    """A store for `url`: a PostgreSQL URL, sqlite:///path, or a plain file path."""
    from flowloom.store.urls import sqlite_path

    try:
        path = sqlite_path(url)
    except ValueError:
        raise InputError(
            f"unsupported database URL {url!r}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        ) from None
    if path is None:
        from flowloom.store.postgres import PostgresStore  # heavy: only when asked for

        return PostgresStore(url)
    from flowloom.store.sqlite import SQLiteStore

    return SQLiteStore(path)


def default_actor() -> dict[str, Any]:
    """Who is acting when nobody said: the operating-system user, as a human."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return {"type": "human", "id": user}


def log_attesters(services: Services) -> list[Verifier]:
    """The keys whose attestations prove that FlowLoom itself wrote an event this command
    reads: this log's, and the instance log's (users disabled, keys revoked, instance
    roles) when this home holds that key too, as when a report runs over a server's
    database with the server's home: the server's own readers trust it the same way
    (ServerState.trust), so both give the same results."""
    from flowloom.compliance.history import INSTANCE_LOG

    found: list[Verifier] = []
    settings = services.settings
    if services.keys.has_signer(settings.origin):
        found.append(services.ledger.verifier)
    prefix, _, name = settings.origin.rpartition("/")
    instance = f"{prefix}/{INSTANCE_LOG}"
    if prefix and name == settings.project != INSTANCE_LOG and services.keys.has_signer(instance):
        found.append(services.keys.signer(instance)[0].verifier())
    return found


def server_keys(settings: Settings) -> list[Verifier]:
    """The team server's key this clone pins (server_vkey), whose attestations also
    prove who acted: the server authenticated them."""
    if not settings.server_vkey:
        return []
    from flowloom.ledger.note import Verifier

    return [Verifier.from_vkey(settings.server_vkey.strip())]


def build_services(settings: Settings, *, store: Store | None = None) -> Services:
    """Wire the store, keys and ledger for one project."""
    store = store or open_store(settings.database)
    try:
        keys = KeyStore(settings.home)
        created = False
        if not keys.has_signer(settings.origin):
            _, created = keys.signer(settings.origin)
        ledger = Ledger(
            store,
            log=settings.project,
            origin=settings.origin,
            signer=lambda: keys.signer(settings.origin)[0],
            cipher=lambda: BodyCipher(keys.master_key()),
            actor=default_actor(),
            max_body_bytes=settings.max_body_bytes,
        )
        if created:
            # A new signing key is a security-relevant fact: record which key it was.
            ledger.record(
                "key.generated",
                meta={
                    "actor": {"type": "service", "id": "flowloom"},
                    "subject": settings.origin,
                    "refs": {"vkey": ledger.verifier.vkey, "purpose": "checkpoint signing"},
                },
            )
    except BaseException:
        store.close()
        raise
    return Services(settings=settings, store=store, keys=keys, ledger=ledger)


def build_server(settings: ServerSettings, *, store: Store | None = None) -> ServerState:
    """Wire the team server: one store for every project's log, the directory, keys.

    Opening checks the database: an unreachable PostgreSQL raises StoreUnavailableError
    here (exit code 4) rather than on the first request.
    """
    from flowloom.auth.directory import Directory
    from flowloom.auth.permissions import Authorizer
    from flowloom.server.idempotency import IdempotencyBook
    from flowloom.server.metrics import Metrics
    from flowloom.server.state import LedgerRegistry, ServerState

    store = store or open_store(settings.database)
    closers: list[Any] = []
    try:
        keys = KeyStore(settings.home)
        ledgers = LedgerRegistry(
            store,
            keys,
            origin=settings.origin,
            max_body_bytes=settings.max_body_bytes,
            batch_max_entries=settings.batch_max_entries,
        )
        directory = Directory(settings.database, audit=ledgers.audit)
        closers.append(directory.close)
        idempotency = IdempotencyBook(directory.engine)
        oidc = None
        if settings.oidc:
            import httpx

            from flowloom.auth.oidc import OidcClient, OidcSettings

            oidc_settings = OidcSettings.from_mapping(settings.oidc, public_url=settings.public_url)
            http = httpx.Client(timeout=oidc_settings.timeout_seconds)
            closers.append(http.close)
            oidc = OidcClient(oidc_settings, http)
        from flowloom.server.gateway_view import GatewayView

        # Opened on first use: the gateway's tables, by default in this very database.
        gateway = GatewayView(
            settings.gateway.database or directory.engine,
            config=settings.gateway.config,
            master_key_loader=keys.master_key,
        )
        closers.append(gateway.close)
        return ServerState(
            settings=settings,
            store=store,
            keys=keys,
            ledgers=ledgers,
            directory=directory,
            authorizer=Authorizer(),
            idempotency=idempotency,
            metrics=Metrics(),
            oidc=oidc,
            closers=closers,
            repositories=dict(settings.repositories),
            gateway=gateway,
        )
    except BaseException:
        for close in reversed(closers):
            close()
        store.close()
        raise


class AuditLedgers:
    """An audit callback for commands: each event goes to the ledger of its project.

    Ledgers are built on first use over one shared store, the way build_services wires
    them; events without a project go to the instance's own log. Recording needs no
    signing key, so none is created here.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: Store | None = None
        self._keys: KeyStore | None = None
        self._ledgers: dict[str, Ledger] = {}

    def _ledger(self, project: str) -> Ledger:
        if project not in self._ledgers:
            if self._store is None or self._keys is None:
                self._store = open_store(self._settings.database)
                self._keys = KeyStore(self._settings.home)
            keys = self._keys
            origin = (
                self._settings.origin
                if project == self._settings.project
                else f"flowloom.local/{project}"
            )
            self._ledgers[project] = Ledger(
                self._store,
                log=project,
                origin=origin,
                signer=lambda: keys.signer(origin)[0],
                cipher=lambda: BodyCipher(keys.master_key()),
                actor=default_actor(),
                max_body_bytes=self._settings.max_body_bytes,
            )
        return self._ledgers[project]

    def __call__(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        from flowloom.auth.directory import INSTANCE_PROJECT

        self._ledger(project or INSTANCE_PROJECT).record(kind, meta=meta)

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.writer.close()
        self._ledgers.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
