"""build_services(settings): the one place where FlowLoom's objects are wired together.

The CLI, the server and the MCP server all call this; nothing else constructs a store,
a key store or a ledger, and nothing keeps them in module-level state.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

from flowloom.config import Settings
from flowloom.errors import InputError
from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.store.interface import Store

__all__ = ["Services", "build_services", "default_actor", "open_store"]


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
    if url.startswith(("postgresql://", "postgres://")):
        from flowloom.store.postgres import PostgresStore  # heavy: only when asked for

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1 :]
    elif "://" in url:
        raise InputError(
            f"unsupported database URL {url!r}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        )
    from flowloom.store.sqlite import SQLiteStore

    return SQLiteStore(url)


def default_actor() -> dict[str, Any]:
    """Who is acting when nobody said: the operating-system user, as a human."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return {"type": "human", "id": user}


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
