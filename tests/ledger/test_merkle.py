"""Merkle tree (RFC 6962 / RFC 9162, MTC subtree proofs): known answers, vectors, properties.

The reference every property is checked against is a naive, recursive transcription of the
specifications' definitions (MTH, PATH, SUBPROOF, SUBTREE_SUBPROOF) kept in this file, so the
fast iterative code in `flowloom.ledger.merkle` never checks itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom.errors import InputError, NotFoundError, ProofError, StoreCorruptError
from flowloom.ledger import merkle
from flowloom.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    NodeId,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    is_valid_subtree,
    leaf_hash,
    node_hash,
    perfect_nodes,
    proof_hashes,
    range_hash,
    root_at,
    root_from_inclusion_proof,
    root_of,
    subtree_consistency_proof_nodes,
    subtree_inclusion_proof_nodes,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
MERKLE_VECTORS = VECTORS / "merkle"
VECTOR_KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- the naive reference: the specifications' recursive definitions -------------------------


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH over leaf hashes."""
    return _ref_mth(tuple(leaves))


@functools.lru_cache(maxsize=1 << 16)
def _ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    # Memoised only so that the reference proofs stay affordable for every index of a tree.
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 PATH(m, D_n)."""
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    """RFC 9162 SUBPROOF(m, D_n, b); PROOF(m, D_n) = SUBPROOF(m, D_n, true)."""
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_subtree_subproof(start: int, end: int, leaves: Sequence[bytes], known: bool) -> list[bytes]:
    """MTC draft SUBTREE_SUBPROOF(start, end, D_n, known)."""
    n = len(leaves)
    if start == 0 and end == n:
        return [] if known else [ref_mth(leaves)]
    k = _split(n)
    if end <= k:
        return [*ref_subtree_subproof(start, end, leaves[:k], known), ref_mth(leaves[k:])]
    if start >= k:
        return [*ref_subtree_subproof(start - k, end - k, leaves[k:], known), ref_mth(leaves[:k])]
    assert start == 0  # a valid subtree that straddles the split starts where the range does
    return [*ref_subtree_subproof(0, end - k, leaves[k:], False), ref_mth(leaves[:k])]


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def ref_store(leaves: Sequence[bytes]) -> dict[NodeId, bytes]:
    """Every perfect node of the tree, computed level by level from the leaves."""
    store: dict[NodeId, bytes] = {(0, i): h for i, h in enumerate(leaves)}
    level, row = 0, list(leaves)
    while len(row) > 1:
        row = [
            hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest()
            for i in range(0, len(row) - 1, 2)
        ]
        level += 1
        store.update({(level, i): h for i, h in enumerate(row)})
    return store


class CountingLookup:
    """A NodeLookup over a dict that records every call."""

    def __init__(self, store: Mapping[NodeId, bytes]) -> None:
        self.store = store
        self.calls: list[list[NodeId]] = []

    def __call__(self, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        self.calls.append(list(ids))
        return {i: self.store[i] for i in ids if i in self.store}


def flip(value: bytes, bit: int = 0) -> bytes:
    """`value` with one bit inverted."""
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


# -- basics and known answers ---------------------------------------------------------------


def test_constants_and_hash_domains() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert root_of([]) == EMPTY_ROOT
    assert set(merkle.__all__) >= {
        "EMPTY_ROOT",
        "HASH_SIZE",
        "Frontier",
        "NodeId",
        "NodeLookup",
        "consistency_proof",
        "consistency_proof_nodes",
        "inclusion_proof",
        "inclusion_proof_nodes",
        "leaf_hash",
        "node_hash",
        "perfect_nodes",
        "range_hash",
        "root_at",
        "root_from_inclusion_proof",
        "root_of",
        "verify_consistency",
        "verify_inclusion",
        "verify_subtree_consistency",
        "verify_subtree_inclusion",
    }


def test_node_hash_rejects_wrong_lengths() -> None:
    with pytest.raises(InputError):
        node_hash(b"x" * 31, b"y" * 32)
    with pytest.raises(InputError):
        node_hash(b"x" * 32, b"y" * 33)


def test_rfc6962_known_roots() -> None:
    known = json.loads((VECTORS / "note" / "vectors.json").read_text())["rfc6962_roots"]
    leaves = [leaf_hash(bytes.fromhex(h)) for h in known["leaves_hex"]]
    roots = [bytes.fromhex(h) for h in known["root_hex_for_first_n_leaves"]]
    assert len(roots) == len(leaves) + 1 == 9
    lookup = CountingLookup(ref_store(leaves))
    frontier = Frontier()
    for n, want in enumerate(roots):
        assert root_of(leaves[:n]) == want, n
        assert ref_mth(leaves[:n]) == want, n
        assert root_at(n, lookup) == want, n
        assert frontier.root() == want, n
        if n < len(leaves):
            frontier.append(leaves[n])


def test_rfc9162_proof_shapes() -> None:
    # The examples of RFC 6962 section 2.1.3, as leaf ranges.
    assert consistency_proof_nodes(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]
    assert consistency_proof_nodes(4, 7) == [(4, 7)]
    assert consistency_proof_nodes(6, 7) == [(4, 6), (6, 7), (0, 4)]
    assert inclusion_proof_nodes(0, 7) == [(1, 2), (2, 4), (4, 7)]
    assert inclusion_proof_nodes(3, 7) == [(2, 3), (0, 2), (4, 7)]
    assert inclusion_proof_nodes(4, 7) == [(5, 6), (6, 7), (0, 4)]
    assert inclusion_proof_nodes(6, 7) == [(4, 6), (0, 4)]
    assert inclusion_proof_nodes(0, 1) == []
    assert consistency_proof_nodes(5, 5) == []


def test_mtc_subtree_proof_shapes() -> None:
    # The MTC draft's figures: [4, 8) and [8, 13) inside a tree of 14 leaves.
    assert subtree_consistency_proof_nodes(4, 8, 14) == [(0, 4), (8, 14)]
    assert subtree_consistency_proof_nodes(8, 13, 14) == [(12, 13), (13, 14), (8, 12), (0, 8)]
    assert subtree_consistency_proof_nodes(0, 14, 14) == []
    assert subtree_consistency_proof_nodes(3, 3, 14) == []
    assert subtree_inclusion_proof_nodes(10, 8, 13) == [(11, 12), (8, 10), (12, 13)]


# -- transparency-dev/merkle vectors ---------------------------------------------------------


def _vector_files() -> list[Path]:
    if not MERKLE_VECTORS.is_dir():
        return []
    return sorted(MERKLE_VECTORS.rglob("*.json"))


def _vector_params() -> list[Any]:
    files = _vector_files()
    if not files:
        return [pytest.param(None, id="no-vectors-found")]
    return [pytest.param(f, id=f.relative_to(MERKLE_VECTORS).as_posix()) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(path: Path) -> tuple[str, dict[str, Any]]:
    kind = path.relative_to(MERKLE_VECTORS).parts[0]
    assert kind in VECTOR_KINDS, path
    return kind, json.loads(path.read_text())


def _run_vector(kind: str, case: Mapping[str, Any]) -> None:
    """Run one vector through the matching verifier; ProofError means rejected."""
    proof = [_b64(p) for p in case["proof"] or []]
    if kind == "inclusion":
        verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )
    elif kind == "consistency":
        verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )
    elif kind == "subtreeinclusion":
        verify_subtree_inclusion(
            _b64(case["leafHash"]),
            case["leafIdx"],
            case["start"],
            case["end"],
            proof,
            _b64(case["root"]),
        )
    else:
        verify_subtree_consistency(
            case["start"],
            case["end"],
            case["size"],
            proof,
            _b64(case["root1"]),
            _b64(case["root2"]),
        )


def test_vector_folders_are_present() -> None:
    counts = {k: len(list((MERKLE_VECTORS / k).rglob("*.json"))) for k in VECTOR_KINDS}
    assert all(counts.values()), f"missing Merkle vectors: {counts}"
    assert sum(counts.values()) >= 500, counts


@pytest.mark.parametrize("path", _vector_params())
def test_vector(path: Path | None) -> None:
    assert path is not None, f"no Merkle test vectors under {MERKLE_VECTORS}"
    kind, case = _load(path)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _run_vector(kind, case)
    else:
        _run_vector(kind, case)


def _positive_params() -> list[Any]:
    params = []
    for f in _vector_files():
        if not json.loads(f.read_text())["wantErr"]:
            params.append(pytest.param(f, id=f.relative_to(MERKLE_VECTORS).as_posix()))
    return params or [pytest.param(None, id="no-vectors-found")]


@pytest.mark.parametrize("path", _positive_params())
def test_vector_positive_with_one_bit_flipped_is_rejected(path: Path | None) -> None:
    """The vectors' own "wrong root" negatives use 9-byte strings, which a length check stops
    before any hashing. Flip one bit of each 32-byte field of every positive case instead, so
    the hash comparisons themselves are exercised."""
    assert path is not None, f"no Merkle test vectors under {MERKLE_VECTORS}"
    kind, case = _load(path)
    fields = [k for k in ("leafHash", "root", "root1", "root2") if k in case]
    if kind == "subtreeconsistency" and case["start"] == case["end"]:
        fields.remove("root2")  # the empty subtree is in every tree: the root is not examined
    mutated_cases: list[dict[str, Any]] = []
    for field in fields:
        raw = _b64(case[field])
        mutated_cases.append({**case, field: base64.b64encode(flip(raw, 3)).decode()})
    proof = case["proof"] or []
    for position, element in enumerate(proof):
        changed = list(proof)
        changed[position] = base64.b64encode(flip(_b64(element), 77)).decode()
        mutated_cases.append({**case, "proof": changed})
    if proof:
        mutated_cases.append({**case, "proof": proof[:-1]})
    mutated_cases.append({**case, "proof": [*proof, base64.b64encode(EMPTY_ROOT).decode()]})
    assert mutated_cases
    for mutated in mutated_cases:
        with pytest.raises(ProofError):
            _run_vector(kind, mutated)


# -- perfect nodes and compact ranges -------------------------------------------------------


def _min_pieces(start: int, end: int) -> int:
    """Fewest aligned power-of-two blocks that tile [start, end), by dynamic programming."""
    best = [0] + [end] * (end - start)
    for offset in range(1, end - start + 1):
        position = start + offset
        width = 1
        while width <= offset:
            low = position - width
            if low % width == 0:
                best[offset] = min(best[offset], best[offset - width] + 1)
            width *= 2
    return best[end - start]


def test_perfect_nodes_is_the_minimal_partition_exhaustively() -> None:
    for start in range(0, 65):
        for end in range(start, 65):
            nodes = perfect_nodes(start, end)
            assert len(nodes) == _min_pieces(start, end), (start, end)


@PROPERTY_SETTINGS
@given(st.integers(0, 2**40), st.integers(0, 2**12))
def test_perfect_nodes_partitions_the_range(start: int, width: int) -> None:
    end = start + width
    nodes = perfect_nodes(start, end)
    position = start
    for level, index in nodes:
        assert level >= 0
        assert index << level == position  # contiguous, left to right, aligned by definition
        position += 1 << level
    assert position == end
    # Minimal: no two neighbours are the two halves of one perfect node.
    for (la, ia), (lb, ib) in itertools.pairwise(nodes):
        assert not (la == lb and ia % 2 == 0 and ib == ia + 1)
    if width:
        # Levels rise strictly, then fall strictly; the top level may appear twice.
        levels = [level for level, _ in nodes]
        first = levels.index(max(levels))
        last = first + 1 if levels[first + 1 : first + 2] == [levels[first]] else first
        assert levels[: first + 1] == sorted(set(levels[: first + 1]))
        assert levels[last:] == sorted(set(levels[last:]), reverse=True)


def test_perfect_nodes_edges() -> None:
    assert perfect_nodes(0, 0) == []
    assert perfect_nodes(5, 5) == []
    assert perfect_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_nodes(3, 13) == [(0, 3), (2, 1), (2, 2), (0, 12)]
    with pytest.raises(InputError):
        perfect_nodes(3, 2)
    with pytest.raises(InputError):
        perfect_nodes(-1, 2)


def test_is_valid_subtree() -> None:
    assert is_valid_subtree(0, 1)
    assert is_valid_subtree(0, 13)
    assert is_valid_subtree(8, 13)
    assert is_valid_subtree(8, 16)
    assert is_valid_subtree(7, 8)
    assert not is_valid_subtree(8, 17)
    assert not is_valid_subtree(1, 3)
    assert not is_valid_subtree(2, 5)
    assert not is_valid_subtree(2, 2)
    assert not is_valid_subtree(3, 2)


@PROPERTY_SETTINGS
@given(st.integers(1, 300), st.data())
def test_range_hash_of_subtrees(size: int, data: st.DataObject) -> None:
    leaves = make_leaves(size)
    store = ref_store(leaves)
    end = data.draw(st.integers(1, size))
    start = data.draw(st.integers(0, end - 1))
    if is_valid_subtree(start, end):
        assert range_hash(start, end, store) == ref_mth(leaves[start:end])
    else:
        with pytest.raises(InputError):
            range_hash(start, end, store)


def test_range_hash_missing_and_corrupt_nodes() -> None:
    store = ref_store(make_leaves(8))
    assert range_hash(3, 3, store) == EMPTY_ROOT
    del store[(2, 1)]
    with pytest.raises(NotFoundError):
        range_hash(4, 8, store)
    store[(2, 1)] = b"short"
    with pytest.raises(StoreCorruptError):
        range_hash(4, 8, store)


# -- root_of and the frontier ---------------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.integers(0, 300))
def test_root_of_matches_reference(size: int) -> None:
    leaves = make_leaves(size, b"root")
    assert root_of(leaves) == ref_mth(leaves)
    assert root_of(tuple(leaves)) == ref_mth(leaves)


def test_root_of_rejects_bad_leaf_hashes() -> None:
    leaves = make_leaves(5)
    leaves[3] = leaves[3][:31]
    with pytest.raises(InputError):
        root_of(leaves)


@PROPERTY_SETTINGS
@given(st.integers(0, 300))
def test_frontier_appends_match_root_of_and_store(size: int) -> None:
    leaves = make_leaves(size, b"frontier")
    store = ref_store(leaves)
    frontier = Frontier()
    built: dict[NodeId, bytes] = {}
    for index, leaf in enumerate(leaves):
        assert frontier.size == index
        built[(0, index)] = leaf
        for level, node_index, value in frontier.append(leaf):
            assert level >= 1
            built[(level, node_index)] = value
        assert frontier.root() == ref_mth(leaves[: index + 1])
    assert frontier.size == size
    assert built == store  # the writer sees every perfect node exactly once
    assert frontier.hashes == tuple(store[n] for n in perfect_nodes(0, size))
    lookup = CountingLookup(store)
    loaded = Frontier.load(size, lookup)
    assert loaded == frontier
    assert loaded.root() == root_at(size, lookup) == root_of(leaves)
    assert len(lookup.calls) <= 2


def test_frontier_append_reports_completed_nodes() -> None:
    frontier = Frontier()
    leaves = make_leaves(8)
    assert frontier.append(leaves[0]) == []
    completed = frontier.append(leaves[1])
    assert [(lv, ix) for lv, ix, _ in completed] == [(1, 0)]
    frontier.append(leaves[2])
    completed = frontier.append(leaves[3])
    assert [(lv, ix) for lv, ix, _ in completed] == [(1, 1), (2, 0)]
    assert completed[-1][2] == ref_mth(leaves[:4])


def test_frontier_copy_is_independent() -> None:
    leaves = make_leaves(6)
    frontier = Frontier()
    for leaf in leaves[:5]:
        frontier.append(leaf)
    clone = frontier.copy()
    clone.append(leaves[5])
    assert frontier.size == 5 and clone.size == 6
    assert frontier.root() == ref_mth(leaves[:5])
    assert clone.root() == ref_mth(leaves)
    assert Frontier(5, frontier.hashes) == frontier
    assert "size=5" in repr(frontier)


def test_frontier_validates_its_inputs() -> None:
    with pytest.raises(InputError):
        Frontier(3, [b"\x00" * 32])  # size 3 needs two hashes
    with pytest.raises(InputError):
        Frontier(1, [b"\x00" * 31])
    with pytest.raises(InputError):
        Frontier(-1)
    with pytest.raises(InputError):
        Frontier().append(b"\x00" * 33)
    with pytest.raises(NotFoundError):
        Frontier.load(3, CountingLookup({}))
    assert Frontier.load(0, CountingLookup({})) == Frontier()
    assert Frontier().root() == EMPTY_ROOT


# -- proof generation from stored nodes ------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.integers(1, 300))
def test_inclusion_proofs_for_every_index(size: int) -> None:
    leaves = make_leaves(size, b"incl")
    root = ref_mth(leaves)
    lookup = CountingLookup(ref_store(leaves))
    for index in range(size):
        ranges = inclusion_proof_nodes(index, size)
        assert [ref_mth(leaves[a:b]) for a, b in ranges] == ref_path(index, leaves)
        proof = inclusion_proof(index, size, lookup)
        assert proof == ref_path(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, root)
        assert root_from_inclusion_proof(leaves[index], index, size, proof) == root
    # One lookup call per proof (none when the proof is empty).
    assert len(lookup.calls) == size - (1 if size == 1 else 0)


@PROPERTY_SETTINGS
@given(st.integers(1, 300))
def test_consistency_proofs_for_every_old_size(new_size: int) -> None:
    leaves = make_leaves(new_size, b"cons")
    new_root = ref_mth(leaves)
    lookup = CountingLookup(ref_store(leaves))
    for old_size in range(1, new_size + 1):
        old_root = ref_mth(leaves[:old_size])
        ranges = consistency_proof_nodes(old_size, new_size)
        expected = ref_subproof(old_size, leaves, True)
        assert [ref_mth(leaves[a:b]) for a, b in ranges] == expected
        calls = len(lookup.calls)
        proof = consistency_proof(old_size, new_size, lookup)
        assert len(lookup.calls) - calls == (1 if expected else 0)
        assert proof == expected
        verify_consistency(old_size, new_size, proof, old_root, new_root)
        assert root_at(old_size, lookup) == old_root


@PROPERTY_SETTINGS
@given(st.integers(1, 300), st.data())
def test_subtree_proofs(size: int, data: st.DataObject) -> None:
    leaves = make_leaves(size, b"subtree")
    root = ref_mth(leaves)
    store = ref_store(leaves)
    lookup = CountingLookup(store)
    end = data.draw(st.integers(1, size))
    # Any end, and a start aligned to the subtree's width: draw the width as a power of two.
    height = data.draw(st.integers(0, (end - 1).bit_length()))
    start = max(0, ((end - 1) >> height) << height)
    assert is_valid_subtree(start, end)
    sub_root = ref_mth(leaves[start:end])
    ranges = subtree_consistency_proof_nodes(start, end, size)
    expected = ref_subtree_subproof(start, end, leaves, True)
    assert [ref_mth(leaves[a:b]) for a, b in ranges] == expected
    proof = proof_hashes(ranges, lookup)
    assert proof == expected
    verify_subtree_consistency(start, end, size, proof, sub_root, root)
    if start == 0:
        assert ranges == (consistency_proof_nodes(end, size) if end < size else [])
    for index in range(start, end):
        inclusion = proof_hashes(subtree_inclusion_proof_nodes(index, start, end), lookup)
        assert inclusion == ref_path(index - start, leaves[start:end])
        verify_subtree_inclusion(leaves[index], index, start, end, inclusion, sub_root)
    # Tampering with the subtree hash, the root, or any element is caught.
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, proof, flip(sub_root), root)
    with pytest.raises(ProofError):
        verify_subtree_consistency(start, end, size, proof, sub_root, flip(root))
    for position in range(len(proof)):
        bent = list(proof)
        bent[position] = flip(bent[position], position * 11)
        with pytest.raises(ProofError):
            verify_subtree_consistency(start, end, size, bent, sub_root, root)


def test_subtree_generation_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        subtree_consistency_proof_nodes(1, 3, 8)  # not a subtree
    with pytest.raises(InputError):
        subtree_consistency_proof_nodes(8, 13, 12)  # past the end of the tree
    with pytest.raises(InputError):
        subtree_inclusion_proof_nodes(7, 8, 13)  # outside the subtree
    with pytest.raises(InputError):
        subtree_inclusion_proof_nodes(2, 2, 2)  # empty subtree
    with pytest.raises(InputError):
        proof_hashes([(1, 3)], CountingLookup({}))
    assert proof_hashes([], CountingLookup({})) == []


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (inclusion_proof_nodes, (5, 5)),
        (inclusion_proof_nodes, (0, 0)),
        (inclusion_proof_nodes, (-1, 5)),
        (inclusion_proof_nodes, (0, 2**64)),
        (consistency_proof_nodes, (0, 5)),
        (consistency_proof_nodes, (0, 0)),
        (consistency_proof_nodes, (6, 5)),
        (consistency_proof_nodes, (-1, 5)),
    ],
)
def test_proof_generation_rejects_bad_arguments(call: Any, args: tuple[int, int]) -> None:
    with pytest.raises(InputError):
        call(*args)


def test_proof_generation_reports_missing_nodes() -> None:
    leaves = make_leaves(10)
    store = ref_store(leaves)
    del store[(3, 0)]
    with pytest.raises(NotFoundError):
        inclusion_proof(9, 10, CountingLookup(store))
    with pytest.raises(NotFoundError):
        root_at(10, CountingLookup(store))
    assert root_at(0, CountingLookup({})) == EMPTY_ROOT


# -- verification: every single-bit change is rejected ---------------------------------------


@PROPERTY_SETTINGS
@given(st.integers(1, 300), st.data())
def test_inclusion_rejects_any_single_bit_change(size: int, data: st.DataObject) -> None:
    leaves = make_leaves(size, b"bits")
    root = ref_mth(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = ref_path(index, leaves)
    verify_inclusion(leaves[index], index, size, proof, root)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    with pytest.raises(ProofError):
        verify_inclusion(flip(leaves[index], bit), index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, size, proof, flip(root, bit))
    for position in range(len(proof)):
        bent = list(proof)
        bent[position] = flip(bent[position], bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, bent, root)
    # A proof for one position never verifies at another. (It can verify at another size:
    # leaf 0 of 3 and of 4 have proofs of the same shape; the signed size binds the root.)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], other, size, proof, root)


@PROPERTY_SETTINGS
@given(st.integers(2, 300), st.data())
def test_consistency_rejects_any_single_bit_change(new_size: int, data: st.DataObject) -> None:
    leaves = make_leaves(new_size, b"cbits")
    old_size = data.draw(st.integers(1, new_size - 1))
    old_root, new_root = ref_mth(leaves[:old_size]), ref_mth(leaves)
    proof = ref_subproof(old_size, leaves, True)
    verify_consistency(old_size, new_size, proof, old_root, new_root)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, proof, flip(old_root, bit), new_root)
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, proof, old_root, flip(new_root, bit))
    for position in range(len(proof)):
        bent = list(proof)
        bent[position] = flip(bent[position], bit)
        with pytest.raises(ProofError):
            verify_consistency(old_size, new_size, bent, old_root, new_root)
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, proof, new_root, old_root)


def test_verifiers_reject_malformed_arguments() -> None:
    leaves = make_leaves(8)
    root = ref_mth(leaves)
    proof = ref_path(3, leaves)
    verify_inclusion(leaves[3], 3, 8, proof, root)
    cases: list[tuple[Any, tuple[Any, ...]]] = [
        (verify_inclusion, (leaves[3], 8, 8, proof, root)),  # index == size
        (verify_inclusion, (leaves[3], -1, 8, proof, root)),
        (verify_inclusion, (leaves[3], 3, 2**64, proof, root)),
        (verify_inclusion, (leaves[3][:31], 3, 8, proof, root)),
        (verify_inclusion, (leaves[3], 3, 8, proof, root + b"\x00")),
        (verify_inclusion, (leaves[3], 3, 8, [*proof[:-1], proof[-1][:16]], root)),
        (verify_inclusion, (leaves[3], 3, 8, [b"", *proof], root)),
        (verify_inclusion, (leaves[3], 3, 8, [*proof, b""], root)),
        (verify_consistency, (9, 8, [], root, root)),
        (verify_consistency, (0, 8, [], EMPTY_ROOT, root)),
        (verify_consistency, (0, 0, [], EMPTY_ROOT, EMPTY_ROOT)),
        (verify_consistency, (8, 8, [root], root, root)),
        (verify_consistency, (-1, 8, [], root, root)),
        (verify_subtree_inclusion, (leaves[3], 3, 2, 5, [], root)),  # not a subtree
        (verify_subtree_inclusion, (leaves[3], 3, 4, 8, [], root)),  # outside
        (verify_subtree_inclusion, (leaves[3], 3, 3, 3, [], root)),  # empty
        (verify_subtree_consistency, (4, 8, 7, [], root, root)),  # past the end
        (verify_subtree_consistency, (5, 4, 8, [], root, root)),
        (verify_subtree_consistency, (2, 2, 8, [], root, root)),  # empty needs EMPTY_ROOT
        (verify_subtree_consistency, (2, 2, 8, [root], EMPTY_ROOT, root)),
        (verify_subtree_consistency, (0, 8, 8, [root], root, root)),
    ]
    for function, args in cases:
        with pytest.raises(ProofError):
            function(*args)


def test_verifiers_accept_trivial_proofs() -> None:
    leaves = make_leaves(8)
    root = ref_mth(leaves)
    verify_consistency(8, 8, [], root, root)
    verify_subtree_consistency(0, 8, 8, [], root, root)
    verify_subtree_consistency(3, 3, 8, [], EMPTY_ROOT, root)
    verify_subtree_consistency(0, 0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    verify_subtree_inclusion(leaves[5], 5, 5, 6, [], leaves[5])
