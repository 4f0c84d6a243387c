"""C2SP tlog-proof receipts: format, round trips, verification, and mutations."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from flowloom.errors import InputError, ProofError, SignatureError
from flowloom.ledger.checkpoint import Checkpoint, sign_checkpoint
from flowloom.ledger.merkle import leaf_hash, node_hash
from flowloom.ledger.note import Signer, cosign, sign_note
from flowloom.ledger.receipt import RECEIPT_HEADER, Receipt, verify_receipt

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "note" / "vectors.json").read_text("utf-8")
)
ORIGIN = "example.com/receipts"
SIGNER = Signer.generate(ORIGIN)
VERIFIER = SIGNER.verifier()


# --- a reference RFC 6962 tree, built from merkle.leaf_hash / merkle.node_hash --------


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(_root(leaves[:k]), _root(leaves[k:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]) over leaf hashes: the leaf's sibling first."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), _root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _root(leaves[:k])]


def _tree(size: int) -> list[bytes]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(size)]


def _receipt(size: int, index: int, extra: bytes | None = None) -> tuple[Receipt, bytes]:
    leaves = _tree(size)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, _root(leaves)), SIGNER)
    return Receipt(index, _path(index, leaves), note, extra), leaves[index]


def test_reference_tree_matches_rfc6962_vectors() -> None:
    data = VECTORS["rfc6962_roots"]
    leaves = [leaf_hash(bytes.fromhex(h)) for h in data["leaves_hex"]]
    for n, want in enumerate(data["root_hex_for_first_n_leaves"]):
        if n:
            assert _root(leaves[:n]).hex() == want


# --- verification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "index"),
    [(1, 0), (2, 0), (2, 1), (3, 2), (7, 0), (7, 3), (7, 6), (8, 5), (13, 12), (256, 100)],
)
def test_verify_receipt(size: int, index: int) -> None:
    receipt, leaf = _receipt(size, index)
    checkpoint = verify_receipt(receipt, leaf, VERIFIER)
    assert checkpoint.size == size
    assert checkpoint.origin == ORIGIN
    parsed = Receipt.parse(receipt.text())
    assert parsed == receipt
    assert verify_receipt(parsed, leaf, VERIFIER) == checkpoint


def test_every_index_of_a_small_tree_verifies() -> None:
    for size in range(1, 18):
        leaves = _tree(size)
        note = sign_checkpoint(Checkpoint(ORIGIN, size, _root(leaves)), SIGNER)
        for index in range(size):
            receipt = Receipt.parse(Receipt(index, _path(index, leaves), note).text())
            verify_receipt(receipt, leaves[index], VERIFIER)


def test_cosigned_checkpoint_verifies() -> None:
    receipt, leaf = _receipt(9, 4)
    witness = Signer.generate("witness.example/w1")
    cosigned = dataclasses.replace(receipt, checkpoint=cosign(receipt.checkpoint, witness))
    verify_receipt(Receipt.parse(cosigned.text()), leaf, VERIFIER)


# --- text form ------------------------------------------------------------------------


def test_text_layout_is_exact() -> None:
    receipt, _ = _receipt(5, 2, extra=b"context")
    lines = receipt.text().split("\n")
    assert lines[0] == RECEIPT_HEADER
    assert lines[1] == "extra " + base64.b64encode(b"context").decode()
    assert lines[2] == "index 2"
    assert lines[3 : 3 + len(receipt.proof)] == [
        base64.b64encode(h).decode() for h in receipt.proof
    ]
    assert lines[3 + len(receipt.proof)] == ""
    assert receipt.text().endswith("\n\n" + receipt.checkpoint)


def test_round_trip_text_object_exact() -> None:
    for extra in (None, b"\x00", b"age-v1.2.1-darwin-arm64.tar.gz"):
        receipt, _ = _receipt(11, 10, extra)
        text = receipt.text()
        parsed = Receipt.parse(text)
        assert parsed == receipt
        assert parsed.text() == text
        assert Receipt.parse(text.encode("utf-8")) == receipt


def test_single_leaf_receipt_has_no_proof_lines() -> None:
    receipt, leaf = _receipt(1, 0)
    assert receipt.proof == []
    assert receipt.text().startswith(f"{RECEIPT_HEADER}\nindex 0\n\n{ORIGIN}\n1\n")
    verify_receipt(Receipt.parse(receipt.text()), leaf, VERIFIER)


# --- mutations ------------------------------------------------------------------------


def test_wrong_leaf_rejected() -> None:
    receipt, _ = _receipt(8, 3)
    with pytest.raises(ProofError):
        verify_receipt(receipt, leaf_hash(b"something else"), VERIFIER)


@pytest.mark.parametrize("new_index", [0, 2, 4, 7])
def test_mutated_index_rejected(new_index: int) -> None:
    receipt, leaf = _receipt(8, 3)
    with pytest.raises(ProofError):
        verify_receipt(dataclasses.replace(receipt, index=new_index), leaf, VERIFIER)


@pytest.mark.parametrize("new_index", [8, 9, 1000])
def test_index_beyond_tree_rejected(new_index: int) -> None:
    receipt, leaf = _receipt(8, 3)
    with pytest.raises(ProofError):
        verify_receipt(dataclasses.replace(receipt, index=new_index), leaf, VERIFIER)


def test_mutated_index_line_rejected() -> None:
    receipt, leaf = _receipt(8, 3)
    text = receipt.text().replace("\nindex 3\n", "\nindex 5\n")
    with pytest.raises(ProofError):
        verify_receipt(Receipt.parse(text), leaf, VERIFIER)


def test_each_flipped_proof_line_rejected() -> None:
    receipt, leaf = _receipt(13, 6)
    for position in range(len(receipt.proof)):
        for byte in (0, 31):
            proof = list(receipt.proof)
            node = bytearray(proof[position])
            node[byte] ^= 0x80
            proof[position] = bytes(node)
            mutated = Receipt.parse(dataclasses.replace(receipt, proof=proof).text())
            with pytest.raises(ProofError):
                verify_receipt(mutated, leaf, VERIFIER)


def test_dropped_extra_and_swapped_proof_lines_rejected() -> None:
    receipt, leaf = _receipt(13, 6)
    variants = [
        receipt.proof[:-1],
        [*receipt.proof, receipt.proof[0]],
        list(reversed(receipt.proof)),
        [],
    ]
    for proof in variants:
        with pytest.raises(ProofError):
            verify_receipt(dataclasses.replace(receipt, proof=proof), leaf, VERIFIER)


def test_checkpoint_from_other_tree_rejected() -> None:
    receipt, leaf = _receipt(8, 3)
    other_root = _root(_tree(9))
    other = sign_checkpoint(Checkpoint(ORIGIN, 8, other_root), SIGNER)
    with pytest.raises(ProofError):
        verify_receipt(dataclasses.replace(receipt, checkpoint=other), leaf, VERIFIER)
    bigger = sign_checkpoint(Checkpoint(ORIGIN, 9, other_root), SIGNER)
    with pytest.raises(ProofError):
        verify_receipt(dataclasses.replace(receipt, checkpoint=bigger), leaf, VERIFIER)


def test_tampered_checkpoint_rejected() -> None:
    receipt, leaf = _receipt(8, 3)
    tampered = receipt.text().replace(f"\n{ORIGIN}\n8\n", f"\n{ORIGIN}\n9\n")
    with pytest.raises(SignatureError):
        verify_receipt(Receipt.parse(tampered), leaf, VERIFIER)


def test_checkpoint_from_wrong_key_rejected() -> None:
    receipt, leaf = _receipt(8, 3)
    impostor = Signer.generate(ORIGIN)
    with pytest.raises(SignatureError):
        verify_receipt(receipt, leaf, impostor.verifier())


def test_checkpoint_with_wrong_origin_rejected() -> None:
    leaves = _tree(4)
    note = sign_note(Checkpoint("example.com/other", 4, _root(leaves)).text(), SIGNER)
    receipt = Receipt(1, _path(1, leaves), note)
    with pytest.raises(SignatureError):
        verify_receipt(receipt, leaves[1], VERIFIER)


def test_bad_leaf_hash_length_rejected() -> None:
    receipt, leaf = _receipt(8, 3)
    with pytest.raises(InputError):
        verify_receipt(receipt, leaf[:31], VERIFIER)


# --- malformed text -------------------------------------------------------------------


def _malformed() -> list[str | bytes]:
    receipt, _ = _receipt(8, 3, extra=b"xyz")
    text = receipt.text()
    proof0 = base64.b64encode(receipt.proof[0]).decode()
    cp_start = text.index("\n\n") + 2
    return [
        "",
        text.replace(RECEIPT_HEADER, "c2sp.org/tlog-proof@v2"),
        text.replace(RECEIPT_HEADER + "\n", ""),
        text.replace("index 3", "index 03"),
        text.replace("index 3", "index +3"),
        text.replace("index 3", "index -3"),
        text.replace("index 3", "index  3"),
        text.replace("index 3", "index 3 "),
        text.replace("index 3", "index"),
        text.replace("index 3", "index \u0663"),
        text.replace("index 3", "Index 3"),
        text.replace("index 3\n", ""),  # no index line
        text.replace("extra eHl6", "extra eHl"),  # bad base64 extra
        text.replace("extra eHl6", "extra "),  # empty extra
        text.replace("extra eHl6\nindex 3", "index 3\nextra eHl6"),  # out of order
        text.replace(proof0, proof0[:-1]),  # bad base64 proof line
        text.replace(proof0, proof0.rstrip("=")),
        text.replace(proof0, base64.b64encode(receipt.proof[0][:31]).decode()),
        text.replace(proof0, base64.b64encode(receipt.proof[0] + b"\x00").decode()),
        text.replace(proof0 + "\n", proof0 + " \n"),
        text[:cp_start],  # no checkpoint
        text[:cp_start] + "garbage\n",  # checkpoint is not a signed note
        text[:cp_start] + sign_note("not a checkpoint\n", SIGNER),  # not a checkpoint body
        text.replace("\n\n", "\n", 1),  # no empty line before the checkpoint
        text.encode("utf-8").replace(b"index", b"\xffndex"),  # not UTF-8
        text.replace("index 3", "index 9223372036854775807"),  # out of range
    ]


@pytest.mark.parametrize("text", _malformed())
def test_malformed_receipt_rejected(text: str | bytes) -> None:
    with pytest.raises(InputError):
        Receipt.parse(text)


def test_too_long_proof_rejected() -> None:
    receipt, _ = _receipt(8, 3)
    with pytest.raises(InputError):
        dataclasses.replace(receipt, proof=[b"\x00" * 32] * 64)


def test_invalid_fields_rejected() -> None:
    receipt, _ = _receipt(8, 3)
    for changes in (
        {"index": -1},
        {"proof": [b"\x00" * 31]},
        {"extra": b""},
        {"checkpoint": "not a note\n"},
    ):
        with pytest.raises(InputError):
            dataclasses.replace(receipt, **changes)
