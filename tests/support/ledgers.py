"""Test helpers: a Ledger over any store, and hand edits that bypass FlowLoom."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.store.interface import Store

ORIGIN = "flowloom.test/proj"


def make_ledger(store: Store, home: Path, *, log: str = "proj", max_body: int = 1 << 20) -> Ledger:
    keys = KeyStore(home)
    signer, _ = keys.signer(ORIGIN if log == "proj" else f"flowloom.test/{log}")
    return Ledger(
        store,
        log=log,
        origin=signer.name,
        signer=lambda: signer,
        cipher=lambda: BodyCipher(keys.master_key()),
        actor={"type": "human", "id": "tester"},
        max_body_bytes=max_body,
    )


def fill(ledger: Ledger, count: int, *, body: bool = True) -> None:
    for i in range(count):
        ledger.record(
            "agent.prompt",
            body=f"prompt number {i}".encode() if body else None,
            meta={"session": "s-1", "subject": f"file{i}.py"},
        )


def raw_sql(store: Store, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Run SQL directly against the store's database with its append-only guard off.

    This is what an insider with database access could do; the verifier must catch it.
    """
    if store.dialect == "sqlite":
        path = store.path  # type: ignore[attr-defined]
        conn = sqlite3.connect(path)
        try:
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall():
                conn.execute(f"DROP TRIGGER {name}")
            for sql, params in statements:
                conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
        return
    if store.dialect == "postgres":
        import psycopg

        url = store.url  # type: ignore[attr-defined]
        with psycopg.connect(url, autocommit=False) as conn:
            for table in ("entries", "nodes", "checkpoints", "bodies"):
                conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)
            for table in ("entries", "nodes", "checkpoints", "bodies"):
                conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            conn.commit()
        return
    raise AssertionError(f"no raw SQL for {store.dialect}")
