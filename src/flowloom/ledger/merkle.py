"""The ledger's Merkle tree: RFC 6962 / RFC 9162 hashing and proofs over SHA-256.

Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right), and the root
of the empty tree is SHA-256(""). Everything here is a pure function of sizes and hashes: no
I/O, no clock, no state except the writer's `Frontier`.

Vocabulary used throughout:

- A *perfect node* ``(level, index)`` is the root of the perfect subtree over leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are the leaf hashes. The
  store keeps every perfect node and serves them through a `NodeLookup` callback, so any
  proof is built from O(log n) stored nodes and one lookup call.
- A *subtree* ``[start, end)`` is a non-empty leaf range whose ``start`` is a multiple of the
  smallest power of two >= ``end - start`` (the Merkle Tree Certificates draft's rule; every
  MTH(D[a:b]) that RFC 9162's recursive definitions take is of this form). Every hash in a
  proof is the tree hash of such a range, and that hash folds, right to left, from the
  perfect nodes of the range's *compact range* `perfect_nodes(start, end)`.

Proof shapes follow RFC 9162 (inclusion and consistency) and the subtree inclusion and
subtree consistency proofs of the IETF Merkle Tree Certificates draft
(draft-ietf-plants-merkle-tree-certs), which generalise them. Verification failures raise
`ProofError`; bad arguments to proof generation raise `InputError`; a node the lookup does
not return raises `NotFoundError`, and one of the wrong length `StoreCorruptError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from flowloom.errors import InputError, NotFoundError, ProofError, StoreCorruptError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_SIZE",
    "Frontier",
    "NodeId",
    "NodeLookup",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "is_valid_subtree",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "proof_hashes",
    "range_hash",
    "root_at",
    "root_from_inclusion_proof",
    "root_of",
    "subtree_consistency_proof_nodes",
    "subtree_inclusion_proof_nodes",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_SIZE: int = 32
"""Bytes in every leaf, node and root hash (SHA-256)."""

MAX_SIZE: int = (1 << 64) - 1
"""Largest tree size or leaf position accepted: 64 bits, as in every other implementation.

The bound also caps the work a hostile proof can ask of a verifier.
"""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves (RFC 9162 section 2.1.1)."""

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect node."""

NodeLookup = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]
"""Batch fetch of stored perfect nodes: one call per proof, missing ids left out."""

# SHA-256 states with the domain-separation prefix already absorbed. Copying one is cheaper
# than building a new hash object from a concatenated buffer (no prefix copy, no EVP fetch).
_LEAF_STATE = hashlib.sha256(b"\x00")
_NODE_STATE = hashlib.sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """Hash an entry as a leaf; the 0x00 prefix keeps leaves and nodes apart."""
    h = _LEAF_STATE.copy()
    h.update(data)
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    # The unchecked node hash of every inner loop; callers validate lengths first.
    h = _NODE_STATE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children; rejects anything but two 32-byte hashes so garbage cannot chain."""
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise InputError(
            f"node children must be {HASH_SIZE}-byte hashes, not {len(left)} and {len(right)} bytes"
        )
    return _node(left, right)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes, computed level by level (no recursion, no copies).

    Pairing each level and carrying an odd last node up unchanged gives exactly the RFC 9162
    split at the largest power of two, so this is the reference root for full verification.
    """
    count = len(leaf_hashes)
    if count == 0:
        return EMPTY_ROOT
    lengths = set(map(len, leaf_hashes))
    if lengths != {HASH_SIZE}:
        bad = sorted(lengths - {HASH_SIZE})
        raise InputError(f"leaf hashes must be {HASH_SIZE} bytes; got some of {bad[0]} bytes")
    level: Sequence[bytes] = leaf_hashes
    copy = _NODE_STATE.copy
    while count > 1:
        pairs = iter(level)
        upper: list[bytes] = []
        append = upper.append
        for left, right in zip(pairs, pairs, strict=False):
            h = copy()
            h.update(left)
            h.update(right)
            append(h.digest())
        if count & 1:
            append(level[-1])
        level = upper
        count = len(upper)
    return bytes(level[0])


# -- ranges --------------------------------------------------------------------------------


def _check_position(name: str, value: int, error: type[InputError] | type[ProofError]) -> None:
    if not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise error(f"{name} must be an integer between 0 and 2^64 - 1, not {value!r}")


def _check_range(start: int, end: int, error: type[InputError] | type[ProofError]) -> None:
    _check_position("range start", start, error)
    _check_position("range end", end, error)
    if start > end:
        raise error(f"range start {start} is after its end {end}")


def is_valid_subtree(start: int, end: int) -> bool:
    """Whether ``[start, end)`` is a subtree: non-empty and aligned to its size's power of two.

    Only such ranges have a tree hash that appears in proofs; it is the Merkle Tree
    Certificates draft's validity rule (start a multiple of BIT_CEIL(end - start)).
    """
    if not 0 <= start < end:
        return False
    width = 1 << (end - start - 1).bit_length()
    return start & (width - 1) == 0


def perfect_nodes(start: int, end: int) -> list[NodeId]:
    """Split leaves ``[start, end)`` into the fewest perfect nodes, left to right.

    This is the range's compact range: each step takes the largest perfect node that starts
    at ``start`` (aligned) and still fits before ``end``.
    """
    _check_range(start, end, InputError)
    return _range_nodes(start, end)


def _range_nodes(start: int, end: int) -> list[NodeId]:
    # perfect_nodes without the argument checks, for ranges this module produced itself.
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            alignment = (start & -start).bit_length() - 1
            if alignment < level:
                level = alignment
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def _stored(nodes: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    value = nodes.get(node)
    if value is None:
        raise NotFoundError(f"perfect node (level {node[0]}, index {node[1]}) is not stored")
    if len(value) != HASH_SIZE:
        raise StoreCorruptError(
            f"stored node (level {node[0]}, index {node[1]}) is {len(value)} bytes, not {HASH_SIZE}"
        )
    return value


def _fold(ids: Sequence[NodeId], nodes: Mapping[NodeId, bytes]) -> bytes:
    # Right to left: the MTH of an aligned range nests its smaller right-hand nodes deepest.
    acc = _stored(nodes, ids[-1])
    for position in range(len(ids) - 2, -1, -1):
        acc = _node(_stored(nodes, ids[position]), acc)
    return acc


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """Tree hash of the subtree ``[start, end)`` from its stored perfect nodes.

    Only subtrees (see `is_valid_subtree`) have a tree hash of their own, so any other
    non-empty range is refused rather than given a hash no verifier would reproduce.
    """
    _check_range(start, end, InputError)
    if start == end:
        return EMPTY_ROOT
    if not is_valid_subtree(start, end):
        raise InputError(f"[{start}, {end}) is not a subtree, so it has no tree hash")
    return _fold(_range_nodes(start, end), nodes)


# -- the writer's frontier -----------------------------------------------------------------


class Frontier:
    """Right edge of a tree of `size` leaves: the hashes of the perfect nodes of
    perfect_nodes(0, size). Used by the single log writer to extend the tree.

    Appending is O(1) amortised and touches no storage; the root is a fold of at most 64
    hashes. Not thread-safe: the single writer owns it, and hands out `copy()`s.
    """

    __slots__ = ("_hashes", "size")

    size: int

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_position("tree size", size, InputError)
        if len(hashes) != size.bit_count():
            raise InputError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, not {len(hashes)}"
            )
        for position, value in enumerate(hashes):
            if len(value) != HASH_SIZE:
                raise InputError(f"frontier hash {position} is {len(value)} bytes, not {HASH_SIZE}")
        self.size = size
        self._hashes = [bytes(value) for value in hashes]

    @classmethod
    def load(cls, size: int, lookup: NodeLookup) -> Frontier:
        """Rebuild the frontier of a stored tree with one lookup call."""
        _check_position("tree size", size, InputError)
        ids = perfect_nodes(0, size)
        if not ids:
            return cls()
        nodes = lookup(ids)
        return cls(size, [_stored(nodes, node) for node in ids])

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier's perfect-node hashes, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf; return the perfect nodes of level >= 1 it completes, lowest first.

        The caller stores the leaf itself as node ``(0, old size)`` and these nodes beside
        it, which keeps the store's every-perfect-node invariant.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise InputError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
        hashes = self._hashes
        index = self.size
        if index >= MAX_SIZE:
            raise InputError("the tree is full: 2^64 - 1 leaves")
        completed: list[tuple[int, int, bytes]] = []
        acc = bytes(leaf_hash)
        level = 0
        while index & 1:
            acc = _node(hashes.pop(), acc)
            index >>= 1
            level += 1
            completed.append((level, index, acc))
        hashes.append(acc)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """Root of the tree so far (RFC 9162 MTH), EMPTY_ROOT when nothing is appended."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        acc = hashes[-1]
        for position in range(len(hashes) - 2, -1, -1):
            acc = _node(hashes[position], acc)
        return acc

    def copy(self) -> Frontier:
        """An independent frontier to extend speculatively (discarded if a commit fails)."""
        clone = Frontier.__new__(Frontier)
        clone.size = self.size
        clone._hashes = list(self._hashes)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self.size == other.size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self.size}, root={self.root().hex()})"


# -- proof generation ----------------------------------------------------------------------


def _proof_ranges(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of SUBTREE_PROOF(start, end, D[size]), bottom-up (proof order).

    Walks down from the root: at each split of the current range at its largest power of two,
    the half away from the target becomes a proof element. When the target straddles the
    split (only possible when it starts where the current range does), the left half lies
    inside the target, so it is a proof element too and the target's own rightmost piece must
    then be sent as the first element. Single-leaf targets give RFC 9162 inclusion proofs and
    ``start == 0`` gives RFC 9162 consistency proofs. Inputs must already be validated.
    """
    ranges: list[tuple[int, int]] = []
    low, high = 0, size
    known = True
    while low != start or high != end:
        middle = low + (1 << ((high - low - 1).bit_length() - 1))
        if end <= middle:
            ranges.append((middle, high))
            high = middle
        elif start >= middle:
            ranges.append((low, middle))
            low = middle
        else:
            ranges.append((low, middle))
            low = start = middle
            known = False
    if not known:
        ranges.append((low, high))
    ranges.reverse()
    return ranges


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose tree hashes form the inclusion proof of `index` (RFC 9162 order)."""
    _check_position("leaf index", index, InputError)
    _check_position("tree size", size, InputError)
    if index >= size:
        raise InputError(f"leaf index {index} is outside a tree of size {size}")
    return _proof_ranges(index, index + 1, size)


def consistency_proof_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the RFC 9162 consistency proof from `old_size` to `new_size`."""
    _check_position("old tree size", old_size, InputError)
    _check_position("new tree size", new_size, InputError)
    if old_size > new_size:
        raise InputError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        raise InputError("no consistency proof from the empty tree: every tree extends it")
    return _proof_ranges(0, old_size, new_size)


def subtree_inclusion_proof_nodes(index: int, start: int, end: int) -> list[tuple[int, int]]:
    """Leaf ranges of the proof that leaf `index` is in subtree ``[start, end)``.

    It is the inclusion proof in the tree made of that subtree's leaves, shifted by `start`
    (MTC draft, subtree inclusion proofs).
    """
    _check_range(start, end, InputError)
    _check_position("leaf index", index, InputError)
    if not is_valid_subtree(start, end):
        raise InputError(f"[{start}, {end}) is not a subtree")
    if not start <= index < end:
        raise InputError(f"leaf index {index} is outside the subtree [{start}, {end})")
    return [
        (a + start, b + start)
        for a, b in _proof_ranges(index - start, index - start + 1, end - start)
    ]


def subtree_consistency_proof_nodes(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the proof that subtree ``[start, end)`` is part of the tree of `size`.

    MTC draft, subtree consistency proofs; ``start == 0`` is the RFC 9162 consistency proof
    from ``end``. An empty subtree is in every tree and needs no proof.
    """
    _check_range(start, end, InputError)
    _check_position("tree size", size, InputError)
    if end > size:
        raise InputError(f"subtree [{start}, {end}) extends past a tree of size {size}")
    if start == end:
        return []
    if not is_valid_subtree(start, end):
        raise InputError(f"[{start}, {end}) is not a subtree")
    return _proof_ranges(start, end, size)


def proof_hashes(ranges: Sequence[tuple[int, int]], lookup: NodeLookup) -> list[bytes]:
    """Tree hashes of proof ranges, with one lookup call for all the perfect nodes needed."""
    for start, end in ranges:
        if not is_valid_subtree(start, end):
            raise InputError(f"proof range [{start}, {end}) is not a subtree")
    return _proof_hashes(ranges, lookup)


def _proof_hashes(ranges: Sequence[tuple[int, int]], lookup: NodeLookup) -> list[bytes]:
    if not ranges:
        return []
    per_range = [_range_nodes(start, end) for start, end in ranges]
    nodes = lookup([node for ids in per_range for node in ids])
    return [_fold(ids, nodes) for ids in per_range]


def inclusion_proof(index: int, size: int, lookup: NodeLookup) -> list[bytes]:
    """Inclusion proof of leaf `index` in the stored tree of `size` leaves."""
    return _proof_hashes(inclusion_proof_nodes(index, size), lookup)


def consistency_proof(old_size: int, new_size: int, lookup: NodeLookup) -> list[bytes]:
    """Consistency proof between two sizes of the stored tree."""
    return _proof_hashes(consistency_proof_nodes(old_size, new_size), lookup)


def root_at(size: int, lookup: NodeLookup) -> bytes:
    """Root of the first `size` stored leaves, from at most 64 stored perfect nodes."""
    _check_position("tree size", size, InputError)
    if size == 0:
        return EMPTY_ROOT
    ids = _range_nodes(0, size)
    return _fold(ids, lookup(ids))


# -- verification --------------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(what: str, proof: Sequence[bytes], expected: int) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what} has {len(proof)} hashes, expected {expected}")
    for position, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise ProofError(f"{what} hash {position} is {len(value)} bytes, not {HASH_SIZE}")


def _chain_inclusion(
    what: str, leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    # Below the level where the paths to `index` and to the last leaf part, siblings sit
    # left or right as the index bits say; above it the path runs along the right border,
    # where only the left siblings (set bits) exist.
    _check_hash("leaf hash", leaf)
    inner = (index ^ (size - 1)).bit_length()
    expected = inner + (index >> inner).bit_count()
    _check_proof(what, proof, expected)
    acc = leaf
    for level in range(inner):
        acc = _node(proof[level], acc) if (index >> level) & 1 else _node(acc, proof[level])
    for position in range(inner, expected):
        acc = _node(proof[position], acc)
    return acc


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to; useful when the root is not known yet."""
    _check_position("leaf index", index, ProofError)
    _check_position("tree size", size, ProofError)
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    return _chain_inclusion("inclusion proof", leaf_hash, index, size, proof)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    _check_hash("root", root)
    if computed != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}"
        )


def verify_subtree_inclusion(
    leaf_hash: bytes,
    index: int,
    start: int,
    end: int,
    proof: Sequence[bytes],
    subtree_root: bytes,
) -> None:
    """Check that `leaf_hash` is leaf `index` of subtree ``[start, end)`` with `subtree_root`.

    `index` is the leaf's position in the whole log; the proof is the inclusion proof of
    ``index - start`` in the tree of the subtree's ``end - start`` leaves (MTC draft).
    """
    _check_position("leaf index", index, ProofError)
    _check_range(start, end, ProofError)
    if not is_valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a subtree")
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    computed = _chain_inclusion(
        "subtree inclusion proof", leaf_hash, index - start, end - start, proof
    )
    _check_hash("subtree hash", subtree_root)
    if computed != subtree_root:
        raise ProofError(
            f"subtree inclusion proof for leaf {index} does not lead to the hash of "
            f"[{start}, {end})"
        )


def _chain_subtree(
    what: str,
    start: int,
    end: int,
    size: int,
    proof: Sequence[bytes],
    subtree_root: bytes,
    root: bytes,
) -> None:
    # Rebuild two hashes bottom-up from the proof's ranges: `whole`, the hash of the growing
    # range in the tree of `size`, and `part`, the hash of its intersection with the subtree.
    # Left elements that lie inside the subtree feed both; everything else only `whole`.
    _check_hash("subtree hash", subtree_root)
    _check_hash("tree root", root)
    ranges = _proof_ranges(start, end, size)
    _check_proof(what, proof, len(ranges))
    low, high = ranges[0]
    if start <= low and high <= end:
        # The subtree is not a perfect node: its rightmost piece comes first in the proof.
        part = whole = proof[0]
        first = 1
    else:
        part = whole = subtree_root
        low, high, first = start, end, 0
    for position in range(first, len(ranges)):
        element_low, element_high = ranges[position]
        element = proof[position]
        if element_high == low:
            whole = _node(element, whole)
            if element_low >= start:
                part = _node(element, part)
            low = element_low
        else:
            whole = _node(whole, element)
            high = element_high
    if part != subtree_root:
        raise ProofError(f"{what} does not reproduce the hash of leaves [{start}, {end})")
    if whole != root:
        raise ProofError(f"{what} does not lead to the root of the tree of size {size}")


def verify_consistency(
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
) -> None:
    """Check that the tree of `new_size` with `new_root` extends the one of `old_size`.

    A proof from size 0 is refused: it would prove nothing (any tree extends the empty one).
    Equal sizes need an empty proof and equal roots; the roots are only compared then.
    """
    _check_position("old tree size", old_size, ProofError)
    _check_position("new tree size", new_size, ProofError)
    if old_size > new_size:
        raise ProofError(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise ProofError(
                f"trees of equal size need an empty consistency proof, not {len(proof)} hashes"
            )
        if old_root != new_root:
            raise ProofError(f"two trees of size {old_size} have different roots")
        return
    _chain_subtree("consistency proof", 0, old_size, new_size, proof, old_root, new_root)


def verify_subtree_consistency(
    start: int,
    end: int,
    size: int,
    proof: Sequence[bytes],
    subtree_root: bytes,
    root: bytes,
) -> None:
    """Check that subtree ``[start, end)`` with `subtree_root` is in the tree `root` of `size`.

    MTC draft subtree consistency proof. The empty subtree is in every tree: it needs an
    empty proof and the empty root, and `root` is not examined. ``[0, size)`` needs an empty
    proof and ``subtree_root == root``.
    """
    _check_range(start, end, ProofError)
    _check_position("tree size", size, ProofError)
    if end > size:
        raise ProofError(f"subtree [{start}, {end}) extends past a tree of size {size}")
    if start == end:
        if proof:
            raise ProofError(f"an empty subtree needs an empty proof, not {len(proof)} hashes")
        if subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree's hash must be the empty-tree root")
        return
    if not is_valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a subtree")
    if start == 0 and end == size:
        if proof:
            raise ProofError(
                f"the whole tree as a subtree needs an empty proof, not {len(proof)} hashes"
            )
        if subtree_root != root:
            raise ProofError(f"subtree [0, {size}) and the tree of size {size} differ")
        return
    _chain_subtree("subtree consistency proof", start, end, size, proof, subtree_root, root)
