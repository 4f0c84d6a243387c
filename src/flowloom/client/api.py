"""The server's ledger routes for one project, as typed calls (`LedgerApi`).

A thin layer over `HttpClient`: paths under ``/api/v1/projects/{project}/ledger``,
answers checked for shape, so the outbox and the consistency check work with indices,
notes and proof hashes rather than JSON. Standard library only (the drainer uses it).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from flowloom.client.http import HttpClient
from flowloom.errors import RemoteError

__all__ = ["ConsistencyAnswer", "LedgerApi", "parse_consistency"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


class ConsistencyAnswer:
    """A consistency proof as the server sends it: old size, proof hashes, signed note."""

    __slots__ = ("note", "old", "proof")

    def __init__(self, old: int, proof: list[bytes], note: str) -> None:
        self.old = old
        self.proof = proof
        self.note = note


def parse_consistency(text: str) -> ConsistencyAnswer:
    """Parse the tlog-witness shaped proof: ``old N``, base64 hashes, blank line, note."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines or not lines[0].startswith("old "):
        raise RemoteError("the server's consistency proof is malformed (no 'old' line)")
    try:
        old = int(lines[0][4:])
        proof = [base64.b64decode(line, validate=True) for line in lines[1:] if line]
    except (ValueError, binascii.Error):
        raise RemoteError("the server's consistency proof is malformed") from None
    return ConsistencyAnswer(old, proof, note)


class LedgerApi:
    """One project's ledger on one server."""

    __slots__ = ("http", "project")

    def __init__(self, http: HttpClient, project: str) -> None:
        self.http = http
        self.project = project

    def _path(self, tail: str) -> str:
        return f"/api/v1/projects/{urllib.parse.quote(self.project, safe='')}/ledger/{tail}"

    def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append events in order, atomically; their indices (a repeated event_id: its first)."""
        answer = self.http.post_json(self._path("batch"), {"events": list(events)})
        indices = answer.get("indices") if isinstance(answer, dict) else None
        if (
            not isinstance(indices, list)
            or len(indices) != len(events)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
        ):
            raise RemoteError(
                f"the server answered a batch of {len(events)} events without their indices"
            )
        return list(indices)

    def entries(self, start: int, limit: int = 1000, *, bodies: bool = False) -> dict[str, Any]:
        """One page of entries from `start`: ``entries`` (index, kind, envelope,
        leaf_hash), ``size`` and ``next`` (None after the last).

        With `bodies`, a server that offers it also answers each entry's ``body`` and
        ``salt`` (base64, null when erased or absent); an older one ignores the query and
        its rows have no ``body`` key."""
        query: dict[str, Any] = {"start": start, "limit": limit}
        if bodies:
            query["bodies"] = "true"
        answer = self.http.get_json(self._path("entries"), query)
        if not isinstance(answer, dict) or not isinstance(answer.get("entries"), list):
            raise RemoteError("the server answered a page of entries without its entries")
        return answer

    def body(self, index: int) -> bytes:
        """The plaintext body of entry `index` (NotFoundError when erased or absent)."""
        return self.http.request("GET", self._path(f"entries/{index}/body"), accept="*/*")

    def checkpoint(self) -> str:
        """The latest signed checkpoint note (the server signs one if it is behind)."""
        return self.http.get_text(self._path("checkpoint"))

    def vkey(self) -> str:
        return self.http.get_text(self._path("vkey")).strip()

    def consistency(self, old: int, new: int) -> ConsistencyAnswer:
        text = self.http.get_text(self._path("proof/consistency"), {"old": old, "new": new})
        return parse_consistency(text)

    def inclusion(self, index: int, size: int) -> str:
        return self.http.get_text(self._path("proof/inclusion"), {"index": index, "size": size})
