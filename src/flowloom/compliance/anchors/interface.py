"""The anchor interface: a signed checkpoint placed where the log's database cannot reach.

An anchor hands a checkpoint note to an outside party (a time-stamping authority, an
S3 bucket under Object Lock, a transparency-log witness) and gets back evidence that
the party saw exactly that checkpoint: a token, a locked object version, a
cosignature. The evidence is an `AnchorRecord`; it holds the anchored note itself, so
it can be checked later without the database, and compared with the database to catch
a rollback or a fork (the database can be restored from a backup; the outside party
cannot be made to forget).

Every anchor type implements `Anchor`: `anchor(note)` returns the record (nothing is
recorded on failure: it raises), `verify(record, note)` raises `VerificationError`
when the evidence does not hold.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

from flowloom.errors import InputError, VerificationError
from flowloom.ledger.checkpoint import Checkpoint
from flowloom.ledger.note import parse_note

__all__ = [
    "ANCHOR_TYPES",
    "Anchor",
    "AnchorRecord",
    "checkpoint_text",
    "parse_checkpoint",
]

ANCHOR_TYPES: Final = ("tsa", "s3", "witness")
"""The anchor types FlowLoom writes, as they appear in `checkpoint.anchor` events."""

Evidence = Mapping[str, str | int]


def checkpoint_text(note: str) -> str:
    """The signed text of a checkpoint note (no signature lines): what anchors commit to."""
    text, _ = parse_note(note)
    return text


def parse_checkpoint(note: str) -> Checkpoint:
    """The checkpoint inside ``note``, format checked only (signatures are not verified)."""
    return Checkpoint.parse(checkpoint_text(note))


@dataclass(frozen=True)
class AnchorRecord:
    """Evidence that an outside party saw one checkpoint.

    ``anchored_at`` is the time the outside party states (TSA genTime, the witness
    cosignature timestamp, the S3 upload time), RFC 3339 UTC. ``evidence`` holds the
    type's own proof (token, version id and ETag, cosignature line) as strings and
    integers so it fits an event's ``refs`` as it is.
    """

    type: str
    origin: str
    size: int
    root: bytes
    where: str
    anchored_at: str
    note: str
    evidence: Evidence = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in ANCHOR_TYPES:
            raise InputError(
                f"unknown anchor type {self.type!r}", hint=f"one of {', '.join(ANCHOR_TYPES)}"
            )
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    def matches(self, note: str) -> None:
        """Raise unless ``note`` is the checkpoint this record is about."""
        checkpoint = parse_checkpoint(note)
        if (checkpoint.origin, checkpoint.size, checkpoint.root) != (
            self.origin,
            self.size,
            self.root,
        ):
            raise VerificationError(
                f"the {self.type} anchor is for {self.origin} size {self.size}, not for "
                f"{checkpoint.origin} size {checkpoint.size}",
                hint="verify the anchor against the checkpoint it was made for",
            )

    def to_refs(self) -> dict[str, Any]:
        """The ``refs`` of the `checkpoint.anchor` event that records this anchor."""
        return {
            "type": self.type,
            "checkpoint": {
                "origin": self.origin,
                "size": self.size,
                "root": base64.b64encode(self.root).decode("ascii"),
            },
            "where": self.where,
            "anchored_at": self.anchored_at,
            "note": self.note,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_refs(cls, refs: Mapping[str, Any]) -> AnchorRecord:
        """Read a record back from event refs (or a saved JSON record); InputError if bad."""
        try:
            checkpoint = refs["checkpoint"]
            root = base64.b64decode(str(checkpoint["root"]), validate=True)
            evidence = refs.get("evidence", {})
            if not isinstance(evidence, Mapping):
                raise TypeError("evidence is not an object")
            size = checkpoint["size"]
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError("size is not an integer")
            record = cls(
                type=str(refs["type"]),
                origin=str(checkpoint["origin"]),
                size=size,
                root=root,
                where=str(refs["where"]),
                anchored_at=str(refs["anchored_at"]),
                note=str(refs["note"]),
                evidence={str(k): v for k, v in evidence.items()},
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise InputError(
                f"malformed anchor record: {exc}",
                hint="pass a record written by 'flowloom anchor ... --json'",
            ) from exc
        record.matches(record.note)
        return record

    def summary(self) -> str:
        """One line for people: type, checkpoint, where, when."""
        return (
            f"{self.type} size {self.size} root {self.root.hex()[:16]} at {self.where} "
            f"({self.anchored_at})"
        )


class Anchor(Protocol):
    """One kind of outside party that can vouch for a checkpoint."""

    @property
    def type(self) -> str:
        """The anchor type, one of `ANCHOR_TYPES`."""
        ...

    def anchor(self, note: str) -> AnchorRecord:
        """Hand ``note`` to the outside party; return its evidence or raise."""
        ...

    def verify(self, record: AnchorRecord, note: str) -> None:
        """Raise `VerificationError` unless ``record`` is good evidence for ``note``."""
        ...
