"""Configured witnesses, and collecting their cosignatures on a project's checkpoint.

``[[server.witnesses]]`` tables name each witness's submission URL and cosignature vkey
(C2SP tlog-witness / tlog-cosignature). Collecting signs a checkpoint over the durable
log, asks every witness to cosign it (add-checkpoint, with a consistency proof from the
size that witness last cosigned), records each verified cosignature in the ledger as a
``checkpoint.anchor`` event (the anchor book) and in the tile API's book, so the
checkpoint endpoint serves the note with the cosignature lines appended. A witness that
refuses or cannot be reached is reported; the others still count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flowloom.errors import ConfigError, FlowLoomError

if TYPE_CHECKING:  # settings import this module: keep its import light
    from flowloom.ledger.log import Ledger
    from flowloom.server.tlog.book import TlogBook

__all__ = ["Collected", "WitnessSetting", "collect_cosignatures", "parse_witnesses"]


@dataclass(frozen=True)
class WitnessSetting:
    """One witness: where to submit (its URL prefix) and its cosignature vkey."""

    url: str
    vkey: str

    @property
    def name(self) -> str:
        return self.vkey.partition("+")[0]


@dataclass
class Collected:
    """The outcome of one collection round for one checkpoint."""

    size: int
    root: str
    cosigned: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def parse_witnesses(value: object) -> tuple[WitnessSetting, ...]:
    """``[[server.witnesses]]``: a list of tables with ``url`` and ``vkey``, checked now."""
    from flowloom.compliance.anchors.witness import CosignatureVerifier

    if value is None:
        return ()
    hint = 'e.g. [[server.witnesses]] url = "https://witness.example/" vkey = "name+id+key"'
    if not isinstance(value, list):
        raise ConfigError("[[server.witnesses]] must be a list of tables", hint=hint)
    found: list[WitnessSetting] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"url", "vkey"}:
            raise ConfigError("each [[server.witnesses]] table takes url and vkey", hint=hint)
        url, vkey = item["url"], item["vkey"]
        if not isinstance(url, str) or not isinstance(vkey, str):
            raise ConfigError("[[server.witnesses]] url and vkey are strings", hint=hint)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"witness URL {url!r} is not an http(s) URL", hint=hint)
        CosignatureVerifier.from_vkey(vkey)  # raises ConfigError with the reason
        found.append(WitnessSetting(url.rstrip("/"), vkey.strip()))
    names = [w.name for w in found]
    if len(set(names)) != len(names):
        raise ConfigError("two [[server.witnesses]] share a name", hint=hint)
    return tuple(found)


def collect_cosignatures(
    ledger: Ledger,
    book: TlogBook,
    project: str,
    witnesses: Sequence[WitnessSetting],
    *,
    timeout: float = 10.0,
) -> Collected:
    """Sign a checkpoint and have every configured witness cosign it."""
    from flowloom.compliance.anchors.book import AnchorBook
    from flowloom.compliance.anchors.witness import CosignatureVerifier, WitnessAnchor

    checkpoint = ledger.checkpoint()
    note = checkpoint.note
    anchors = AnchorBook(ledger)
    out = Collected(size=checkpoint.size, root=checkpoint.root.hex())

    def proofs(old: int, new: int) -> list[bytes]:
        return ledger.consistency(old, new)[1]

    for witness in witnesses:
        verifier = CosignatureVerifier.from_vkey(witness.vkey)
        target = WitnessAnchor(
            verifier,
            url=witness.url,
            proofs=proofs,
            old_size=book.latest_size(project, verifier.name),
            timeout=timeout,
        )
        try:
            entry = anchors.anchor(target, note)
        except FlowLoomError as exc:
            out.failed.append({"witness": verifier.name, "error": exc.message})
            continue
        evidence = entry.record.evidence
        line, stamp = str(evidence["cosignature"]), int(evidence["timestamp"])
        book.add_cosignature(project, checkpoint.size, checkpoint.root, verifier.name, line, stamp)
        out.cosigned.append(
            {"witness": verifier.name, "timestamp": stamp, "entry": entry.index, "line": line}
        )
    return out
