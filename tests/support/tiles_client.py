"""A tlog-tiles client written from the C2SP specs, sharing no code with FlowLoom.

It fetches a checkpoint, checks its Ed25519 signed-note signature and any cosignatures,
then computes everything it needs from tiles alone: the tree's root (RFC 6962 MTH over
stored subtree hashes), inclusion and consistency proofs (RFC 6962 PATH and PROOF), and
their verification (RFC 9162 section 2.1.3.2 / 2.1.4.2). Only hashlib, base64 and
cryptography: a FlowLoom bug cannot cancel itself out here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Fetch = Callable[[str], bytes]
"""GET a path relative to the log's prefix (``checkpoint``, ``tile/0/000``); raise on error."""


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def index_path(n: int) -> str:
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.insert(0, f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(groups)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@dataclass
class Note:
    text: str
    signatures: list[tuple[str, bytes]]
    origin: str
    size: int
    root: bytes


def parse_note(raw: bytes) -> Note:
    text, sep, sigs = raw.decode("utf-8").partition("\n\n")
    assert sep, "a signed note has a blank line before its signatures"
    lines = text.split("\n")
    signatures = []
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), line
        name, _, b64 = line[2:].partition(" ")
        signatures.append((name, base64.b64decode(b64, validate=True)))
    return Note(text + "\n", signatures, lines[0], int(lines[1]), base64.b64decode(lines[2]))


def key_of(vkey: str, type_byte: int) -> tuple[str, bytes, Ed25519PublicKey]:
    name, hex_id, b64 = vkey.strip().split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == type_byte and len(raw) == 33
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert key_id.hex() == hex_id
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def check_signature(note: Note, vkey: str) -> None:
    """The log's own Ed25519 signature (type 0x01) over the note text; raises if absent."""
    name, key_id, key = key_of(vkey, 0x01)
    for signer, blob in note.signatures:
        if signer == name and blob[:4] == key_id:
            key.verify(blob[4:], note.text.encode())
            return
    raise AssertionError(f"no signature by {name}")


def check_cosignature(note: Note, vkey: str) -> int:
    """A witness's cosignature/v1 (type 0x04); returns its timestamp."""
    name, key_id, key = key_of(vkey, 0x04)
    for signer, blob in note.signatures:
        if signer == name and blob[:4] == key_id:
            stamp = int.from_bytes(blob[4:12], "big")
            key.verify(blob[12:], f"cosignature/v1\ntime {stamp}\n".encode() + note.text.encode())
            return stamp
    raise AssertionError(f"no cosignature by {name}")


@dataclass
class TileReader:
    """Node hashes of a tree of ``size`` leaves, read from its tiles (cached)."""

    fetch: Fetch
    size: int
    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def _tile(self, level: int, n: int) -> bytes:
        if (level, n) not in self.tiles:
            count = self.size >> (8 * level)
            width = min(256, count - n * 256)
            assert width > 0, "no such tile in this tree"
            path = f"tile/{level}/{index_path(n)}" + ("" if width == 256 else f".p/{width}")
            data = self.fetch(path)
            self.fetched.append(path)
            assert len(data) == 32 * width, (path, len(data))
            self.tiles[(level, n)] = data
        return self.tiles[(level, n)]

    def stored(self, height: int, index: int) -> bytes:
        """The hash of the complete subtree of 2^height leaves starting at index·2^height."""
        level, rest = divmod(height, 8)
        first = index << rest  # first stored hash at height 8·level under this node
        hashes = []
        for k in range(first, first + (1 << rest)):
            tile = self._tile(level, k // 256)
            hashes.append(tile[32 * (k % 256) : 32 * (k % 256) + 32])
        while len(hashes) > 1:
            hashes = [node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def mth(self, lo: int, hi: int) -> bytes:
        """RFC 6962 Merkle tree hash of leaves [lo, hi)."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self.stored(n.bit_length() - 1, lo // n)
        k = _split(n)
        return node(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def inclusion(self, m: int, lo: int, hi: int) -> list[bytes]:
        """RFC 6962 PATH(m, D[lo:hi])."""
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m - lo < k:
            return [*self.inclusion(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.inclusion(m, lo + k, hi), self.mth(lo, lo + k)]

    def consistency(self, m: int, lo: int, hi: int, whole: bool = True) -> list[bytes]:
        """RFC 6962 SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if whole else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self.consistency(m, lo, lo + k, whole), self.mth(lo + k, hi)]
        return [*self.consistency(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: list[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2."""
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0 and r == root, "inclusion proof does not verify"


def verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> None:
    """RFC 9162 2.1.4.2."""
    if m == n:
        assert not proof and old == new
        return
    if m & (m - 1) == 0:
        proof = [old, *proof]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        assert sn != 0
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0 and fr == old and sr == new, "consistency proof does not verify"


def entries(fetch: Fetch, size: int) -> list[bytes]:
    """Every entry of the tree, from its entry bundles (uint16 length-prefixed)."""
    out: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        data = fetch(f"tile/entries/{index_path(n)}" + ("" if width == 256 else f".p/{width}"))
        at, got = 0, []
        while at < len(data):
            length = int.from_bytes(data[at : at + 2], "big")
            got.append(data[at + 2 : at + 2 + length])
            at += 2 + length
        assert at == len(data) and len(got) == width
        out.extend(got)
    return out
