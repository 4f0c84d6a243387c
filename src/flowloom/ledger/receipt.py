"""Receipts: an offline-verifiable proof that an entry is in the log, per C2SP tlog-proof.

Text form (https://c2sp.org/tlog-proof): the line ``c2sp.org/tlog-proof@v1``, an
optional ``extra <base64>`` line, ``index <decimal>``, zero or more base64 inclusion
proof hashes (leaf's sibling first), an empty line, then the signed checkpoint verbatim.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from flowloom.errors import InputError, ProofError
from flowloom.ledger.checkpoint import HASH_SIZE, MAX_TREE_SIZE, Checkpoint, open_checkpoint
from flowloom.ledger.merkle import verify_inclusion
from flowloom.ledger.note import Verifier, _b64decode, parse_note

__all__ = ["MAX_PROOF_HASHES", "RECEIPT_HEADER", "Receipt", "verify_receipt"]

RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"
"""The first line of every receipt."""

MAX_PROOF_HASHES = 63
"""Longest inclusion proof possible for a tree of at most 2^63 - 1 leaves."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Receipt:
    """An entry index, its inclusion proof, and the signed checkpoint it is proven in.

    ``extra`` is opaque, unauthenticated application data; never trust it implicitly.
    """

    index: int
    proof: list[bytes] = field(hash=False)
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise InputError("receipt index must be an integer")
        if not 0 <= self.index < MAX_TREE_SIZE:
            raise InputError(f"receipt index {self.index} is out of range")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise InputError(f"receipt proof has more than {MAX_PROOF_HASHES} hashes")
        for number, node in enumerate(self.proof):
            if not isinstance(node, bytes) or len(node) != HASH_SIZE:
                raise InputError(f"receipt proof hash {number} is not {HASH_SIZE} bytes")
        if self.extra is not None and (not isinstance(self.extra, bytes) or not self.extra):
            raise InputError("receipt extra data must be non-empty bytes (or None)")
        # The checkpoint must be a well-formed signed checkpoint (not yet verified).
        text, _ = parse_note(self.checkpoint)
        Checkpoint.parse(text)

    def text(self) -> str:
        """The receipt in its ``c2sp.org/tlog-proof@v1`` text form."""
        lines = [RECEIPT_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(node).decode("ascii") for node in self.proof)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str | bytes) -> Receipt:
        """Parse a receipt's text form; raises :class:`InputError` if malformed."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError("receipt is not valid UTF-8") from exc
        split = text.find("\n\n")
        if split < 0:
            raise InputError("malformed receipt: no empty line before the checkpoint")
        lines = text[:split].split("\n")
        checkpoint = text[split + 2 :]
        if lines[0] != RECEIPT_HEADER:
            raise InputError("not a receipt", hint=f"the first line must be {RECEIPT_HEADER!r}")
        position = 1
        extra: bytes | None = None
        if position < len(lines) and lines[position].startswith("extra "):
            extra = _b64decode(lines[position][len("extra ") :])
            if not extra:
                raise InputError("malformed receipt: extra data is not valid base64")
            position += 1
        if position >= len(lines) or not lines[position].startswith("index "):
            raise InputError("malformed receipt: missing 'index' line")
        index_text = lines[position][len("index ") :]
        if not _DECIMAL.fullmatch(index_text):
            raise InputError(
                "malformed receipt: index is not a decimal number",
                hint="ASCII digits with no sign or leading zeroes",
            )
        proof: list[bytes] = []
        for line in lines[position + 1 :]:
            node = _b64decode(line)
            if node is None or len(node) != HASH_SIZE:
                raise InputError("malformed receipt: a proof line is not a base64 hash")
            proof.append(node)
        return cls(int(index_text), proof, checkpoint, extra)


def verify_receipt(receipt: Receipt, leaf_hash: bytes, verifier: Verifier) -> Checkpoint:
    """Check that ``leaf_hash`` is at ``receipt.index`` in the log signed by ``verifier``.

    Returns the verified checkpoint. Raises :class:`SignatureError` if the checkpoint's
    signature does not verify, :class:`ProofError` if the inclusion proof does not.
    """
    if len(leaf_hash) != HASH_SIZE:
        raise InputError(f"leaf hash must be {HASH_SIZE} bytes, not {len(leaf_hash)}")
    checkpoint = open_checkpoint(receipt.checkpoint, verifier)
    if receipt.index >= checkpoint.size:
        raise ProofError(
            f"receipt index {receipt.index} is outside the checkpoint's tree of "
            f"size {checkpoint.size}"
        )
    verify_inclusion(leaf_hash, receipt.index, checkpoint.size, receipt.proof, checkpoint.root)
    return checkpoint
