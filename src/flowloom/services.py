"""build_services(settings): the one place where FlowLoom's objects are wired together.

The CLI, the server and the MCP server all call this; nothing else constructs a store,
a key store or a ledger, and nothing keeps them in module-level state.

Every ledger built here takes its signing key from the log's own key history
(`flowloom.ledger.keyring`): only the first write to a brand-new log generates a key.
Commands say how they use the log (`Access`): readers open the database read-only and
never create a key; "sign" may also sign a checkpoint with the log's key when it is here.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flowloom.config import Settings
from flowloom.errors import InputError
from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keyprovider import Envelope, MasterKeys, SigningKeys
from flowloom.ledger.keyring import Keyring
from flowloom.ledger.keys import FileMasterKeys, KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.providers import open_key_providers
from flowloom.store.interface import Store

if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier
    from flowloom.ledger.writer import LogWriter

__all__ = [
    "Access",
    "AuditLedgers",
    "Services",
    "build_services",
    "build_team_services",
    "default_actor",
    "log_attesters",
    "open_ledger",
    "open_store",
    "server_keys",
]


Access = Literal["read", "sign", "write"]
"""How a command uses the log: "read" (the database opened read-only, no key created),
"sign" (reads, and may sign a checkpoint with the log's key if this home holds it: proofs),
"write" (appends; the first write to a brand-new log generates and pins its key)."""


@dataclass
class Services:
    """Everything a command needs, built once per process."""

    settings: Settings
    store: Store
    keys: SigningKeys
    ledger: Ledger
    access: Access = "write"
    master: MasterKeys | None = None
    """Where the master key is held (the key files of `keys` when None)."""
    notice: str | None = None
    """What a reader should say about its answer (the team record's copy is stale)."""
    team: bool = False
    """The ledger is the team's record on the server (`build_team_services`)."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    """What else to close after the ledger (a pending overlay's file)."""

    def close(self) -> None:
        self.ledger.writer.close()
        self.store.close()
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()


def open_store(url: str, *, read_only: bool = False, create: bool = True) -> Store:
    """A store for `url`: a PostgreSQL URL, sqlite:///path, or a plain file path.

    `read_only` opens it so that nothing can be written; without `create` a missing
    SQLite file is not created but read as an empty ledger (held in memory).
    """
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

        return PostgresStore(url, read_only=read_only)
    from flowloom.store.sqlite import SQLiteStore

    if (read_only or not create) and path != ":memory:" and not Path(path).exists():
        return SQLiteStore(":memory:")  # nothing recorded yet, and reading creates nothing
    return SQLiteStore(path, read_only=read_only)


def default_actor() -> dict[str, Any]:
    """Who is acting when nobody said: the operating-system user, as a human."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return {"type": "human", "id": user}


def log_attesters(services: Services) -> list[Verifier]:
    """The keys whose attestations prove that FlowLoom itself wrote an event this command
    reads: every key this log pins, and the instance log's (users disabled, keys
    revoked, instance roles) when the store holds it, as when a report runs over a
    server's database: the server's own readers trust the same (ServerState.trust), so
    both give the same results. Public keys from the logs themselves: no private key."""
    from flowloom.compliance.history import INSTANCE_LOG
    from flowloom.ledger.keyring import log_keys

    log = services.ledger.log
    found = list(log_keys(services.store, log).verifiers)
    if not found:  # a log from before pinning: the key that signs its checkpoints
        current = services.ledger.current_verifier()
        found = [current] if current is not None else []
    if log != INSTANCE_LOG:
        found += log_keys(services.store, INSTANCE_LOG).verifiers
    return found


def server_keys(settings: Settings) -> list[Verifier]:
    """The team server's key this clone pins (server_vkey), whose attestations also
    prove who acted: the server authenticated them."""
    if not settings.server_vkey:
        return []
    from flowloom.ledger.note import Verifier

    return [Verifier.from_vkey(settings.server_vkey.strip())]


def open_ledger(
    store: Store,
    keys: SigningKeys,
    *,
    master: MasterKeys | None = None,
    log: str,
    origin: str,
    actor: Mapping[str, Any],
    max_body_bytes: int,
    access: Access = "write",
    writer: LogWriter | None = None,
) -> Ledger:
    """A Ledger for `log` whose keys come from the log's own history (see Access).

    `master` holds the master key; by default the key files beside `keys`.
    """
    writing = access == "write"
    masters: MasterKeys
    if master is not None:
        masters = master
    elif isinstance(keys, KeyStore):
        masters = FileMasterKeys(keys)
    else:
        raise TypeError("signing keys outside files need their master key provider")
    return Ledger(
        store,
        log=log,
        origin=origin,
        keyring=Keyring(store, log, origin, keys, create=writing),
        cipher=lambda: BodyCipher(Envelope(masters, create=writing)),
        actor=actor,
        max_body_bytes=max_body_bytes,
        writer=writer,
    )


def build_services(
    settings: Settings, *, store: Store | None = None, access: Access = "write"
) -> Services:
    """Wire the store, keys and ledger for one project, for a command that `access`es it."""
    store = store or open_store(
        settings.database, read_only=access == "read", create=access == "write"
    )
    try:
        providers = open_key_providers(settings.home, settings.keys)
        keys = providers.signing
        ledger = open_ledger(
            store,
            keys,
            master=providers.master,
            log=settings.project,
            origin=settings.origin,
            actor=default_actor(),
            max_body_bytes=settings.max_body_bytes,
            access=access,
        )
    except BaseException:
        store.close()
        raise
    return Services(
        settings=settings,
        store=store,
        keys=keys,
        ledger=ledger,
        access=access,
        master=providers.master,
    )


def build_team_services(
    settings: Settings,
    state_dir: str,
    *,
    access: Access = "write",
    agent: str = "cli",
    overlay: bool = True,
) -> Services:
    """Services over the team's record on the server (`settings.server_url`): reads from
    this clone's verified copy of the server's log, brought up to date now (unless it was
    within `server_fresh_seconds`; labelled stale in `Services.notice` when the server is
    out of reach); writes through the outbox to the server (`flowloom.sinks.team`). The
    pinned server key is trusted as the server's (its attestations prove who acted).

    A reader (`access` not "write") with `overlay` also sees this clone's events still
    queued in the outbox, marked pending (`flowloom.sinks.pending`)."""
    from flowloom.client.link import ServerLink
    from flowloom.client.mirror import Mirror
    from flowloom.sinks.pending import overlay_pending
    from flowloom.sinks.team import TeamLedger

    link = ServerLink.from_settings(settings, state_dir)
    mirror = Mirror(state_dir, link.server_url, link.project)
    closers = [mirror.close]
    try:
        state = mirror.refresh(link, max_age=settings.server_fresh_seconds)
        pinned = link.trust().load().vkey
        if settings.server_vkey is None and pinned is not None:
            settings = settings.with_overrides(server_vkey=pinned)
        ledger = TeamLedger(
            link,
            mirror,
            origin=settings.origin,
            actor=default_actor(),
            max_body_bytes=settings.max_body_bytes,
            agent=agent,
        )
        notices = [state.label(link.server_url, link.project)]
        store: Store = mirror.store
        if access != "write" and overlay:
            shown = overlay_pending(mirror, ledger, link.spool_dir)
            if shown is not None:
                closers.append(shown.close)
                ledger.store = store = shown.store
                notices.append(shown.label(link.project))
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise
    return Services(
        settings=settings,
        store=store,
        keys=KeyStore(settings.home),
        ledger=ledger,
        access=access,
        notice="\n".join(n for n in notices if n) or None,
        team=True,
        closers=closers[1:],
    )


class AuditLedgers:
    """An audit callback for commands: each event goes to the ledger of its project.

    Ledgers are built on first use over one shared store, the way build_services wires
    them; events without a project go to the instance's own log. These events carry
    authority, so they are attested by the log's key: only a brand-new log gets one.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: Store | None = None
        self._keys: SigningKeys | None = None
        self._master: MasterKeys | None = None
        self._ledgers: dict[str, Ledger] = {}

    def _ledger(self, project: str) -> Ledger:
        if project not in self._ledgers:
            if self._store is None or self._keys is None:
                self._store = open_store(self._settings.database)
                providers = open_key_providers(self._settings.home, self._settings.keys)
                self._keys, self._master = providers.signing, providers.master
            origin = (
                self._settings.origin
                if project == self._settings.project
                else f"flowloom.local/{project}"
            )
            self._ledgers[project] = open_ledger(
                self._store,
                self._keys,
                master=self._master,
                log=project,
                origin=origin,
                actor=default_actor(),
                max_body_bytes=self._settings.max_body_bytes,
            )
        return self._ledgers[project]

    def ledger(self, project: str) -> Ledger:
        """The ledger of `project`, built on first use (commands that write their own
        authority events, such as access reviews, append through it)."""
        return self._ledger(project)

    def __call__(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        from flowloom.auth.directory import INSTANCE_PROJECT

        self._ledger(project or INSTANCE_PROJECT).record(kind, meta=meta)

    def require_key(self, project: str | None = None) -> None:
        """Fail now (KeyMissingError) if the log of `project` (the instance's when None)
        has a key that this home lacks: before an action whose record would need it."""
        from flowloom.auth.directory import INSTANCE_PROJECT

        ledger = self._ledger(project or INSTANCE_PROJECT)
        if ledger.current_verifier() is not None:
            ledger.require_signer()

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.writer.close()
        self._ledgers.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
