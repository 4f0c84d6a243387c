"""Checkpoints: a log's signed tree head, per C2SP tlog-checkpoint.

The note text is the origin line, the tree size in decimal, the base64 RFC 6962 root
hash, then optional non-empty extension lines, each line ending in a newline
(https://c2sp.org/tlog-checkpoint). The log signs it as a signed note whose key name
equals the origin.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from flowloom.errors import InputError, SignatureError
from flowloom.ledger.note import Signer, Verifier, _b64decode, open_note, sign_note

__all__ = [
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "open_checkpoint",
    "sign_checkpoint",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 root hash."""

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size accepted (the signed 64-bit range other implementations use)."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _check_line(line: str, what: str) -> None:
    if not line:
        raise InputError(f"checkpoint {what} is empty")
    if any(ord(ch) < 0x20 for ch in line):
        raise InputError(f"checkpoint {what} contains a newline or control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"checkpoint {what} is not valid UTF-8") from exc


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size in leaves, and its RFC 6962 root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InputError("checkpoint tree size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise InputError(f"checkpoint tree size {self.size} is out of range")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise InputError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise InputError("checkpoint extensions must be a tuple of lines")
        for extension in self.extensions:
            _check_line(extension, "extension line")

    def text(self) -> str:
        """The checkpoint note text (the part that gets signed), ending in a newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode("ascii"),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (not a signed note: see :func:`open_checkpoint`)."""
        if not text.endswith("\n"):
            raise InputError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise InputError("checkpoint text needs origin, tree size and root hash lines")
        origin, size_line, root_line, *extensions = lines
        if not _DECIMAL.fullmatch(size_line):
            raise InputError(
                "checkpoint tree size is not a decimal number",
                hint="ASCII digits with no sign or leading zeroes",
            )
        root = _b64decode(root_line)
        if root is None:
            raise InputError("checkpoint root hash is not valid base64")
        return cls(origin, int(size_line), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """Sign ``checkpoint`` as a note; the signer's key name must be the origin."""
    if signer.name != checkpoint.origin:
        raise InputError(
            f"checkpoint origin {checkpoint.origin!r} is not the signing key's name {signer.name!r}"
        )
    return sign_note(checkpoint.text(), signer)


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint from the log whose key is ``verifier``; return it.

    Other signatures (witness cosignatures, rotated keys) are ignored. Raises
    :class:`SignatureError` if the log's signature is missing or bad or the origin is
    not the key name, :class:`InputError` if the note or checkpoint is malformed.
    """
    opened = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(opened.text)
    if checkpoint.origin != verifier.name:
        raise SignatureError(
            f"checkpoint origin {checkpoint.origin!r} does not match the log key {verifier.name!r}",
            hint="the checkpoint is from a different log",
        )
    return checkpoint
