"""Forged events: authority-bearing kinds written around the endpoints that enforce them.

What an insider with write access to the database (or a client of an old server that
let the generic append through) leaves behind: the very envelope FlowLoom would write,
appended straight into the store, either with no attestation at all or attested by a key
the readers do not trust (a second signing key for the same log name). Readers must
show such an event for what it is and never count it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from flowloom.ledger import merkle
from flowloom.ledger.attest import attest, unattested
from flowloom.ledger.event import Event
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.store.interface import PendingEntry

__all__ = ["FORGERIES", "Forgery", "forge"]

Forgery = Literal["unattested", "untrusted-key"]
FORGERIES: tuple[Forgery, ...] = ("unattested", "untrusted-key")


def forge(
    ledger: Ledger,
    kind: str,
    meta: Mapping[str, Any],
    *,
    how: Forgery = "unattested",
    other_home: Path | None = None,
) -> int:
    """Append a forged `kind` event to `ledger`'s log, bypassing every endpoint.

    ``unattested``: the envelope without ``refs.attestation``. ``untrusted-key``: attested
    by a fresh key kept in `other_home` under the same log name (the log's own origin),
    as a second server or a stolen-name key would. Returns the entry's index.
    """
    prepared = ledger.prepare(kind, meta=meta)  # FlowLoom's envelope, attested by the log key
    envelope = unattested(prepared.event.to_json())
    if how == "untrusted-key":
        assert other_home is not None, "an untrusted key needs a home of its own"
        signer, _ = KeyStore(other_home).signer(ledger.origin)
        assert signer.key_id != ledger.signer.key_id
        envelope = attest(envelope, signer)
    canonical = Event.from_json(envelope).canonical()
    entry = PendingEntry(envelope=canonical, leaf_hash=merkle.leaf_hash(canonical), kind=kind)
    return ledger.writer.append_many([entry])[0].index
