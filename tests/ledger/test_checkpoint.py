"""C2SP tlog-checkpoint: the spec example, round trips, signing, and rejections."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from flowloom.errors import InputError, SignatureError
from flowloom.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from flowloom.ledger.note import Signer, cosign, parse_note, sign_note

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "note" / "vectors.json").read_text("utf-8")
)
EXAMPLE: str = VECTORS["checkpoint_example_c2sp"]
ORIGIN = "example.com/behind-the-sofa"
ROOT = bytes(range(32))


def test_c2sp_example_parses() -> None:
    text, signatures = parse_note(EXAMPLE)
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == ORIGIN
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.text() == text
    # one Ed25519 signature line by the log: 4-byte key id then a 64-byte signature
    assert len(signatures) == 1
    assert signatures[0].name == ORIGIN
    assert len(signatures[0].key_id) == 4
    assert len(signatures[0].signature) == 64
    assert text + "\n" + signatures[0].line() == EXAMPLE


def test_text_format_is_exact() -> None:
    checkpoint = Checkpoint("example.com/log", 5, ROOT, ("ext one", "ext-two"))
    root64 = base64.b64encode(ROOT).decode()
    assert checkpoint.text() == f"example.com/log\n5\n{root64}\next one\next-two\n"
    assert Checkpoint.parse(checkpoint.text()) == checkpoint


@pytest.mark.parametrize("size", [0, 1, 255, 20852163, (1 << 63) - 1])
def test_round_trip_sizes(size: int) -> None:
    checkpoint = Checkpoint("example.com/log", size, ROOT)
    assert Checkpoint.parse(checkpoint.text()) == checkpoint
    assert checkpoint.text().split("\n")[1] == str(size)


def test_sign_and_open() -> None:
    signer = Signer.generate("example.com/log")
    checkpoint = Checkpoint("example.com/log", 42, ROOT)
    note = sign_checkpoint(checkpoint, signer)
    assert note.startswith(checkpoint.text() + "\n\u2014 example.com/log ")
    assert open_checkpoint(note, signer.verifier()) == checkpoint
    assert open_checkpoint(note.encode("utf-8"), signer.verifier()) == checkpoint


def test_witness_cosignatures_are_ignored() -> None:
    signer = Signer.generate("example.com/log")
    witness = Signer.generate("witness.example/w1")
    checkpoint = Checkpoint("example.com/log", 42, ROOT)
    note = cosign(sign_checkpoint(checkpoint, signer), witness)
    assert open_checkpoint(note, signer.verifier()) == checkpoint


def test_wrong_key_rejected() -> None:
    signer = Signer.generate("example.com/log")
    other = Signer.generate("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/log", 1, ROOT), signer)
    with pytest.raises(SignatureError):
        open_checkpoint(note, other.verifier())


def test_only_witness_signature_rejected() -> None:
    witness = Signer.generate("witness.example/w1")
    log = Signer.generate("example.com/log")
    note = sign_note(Checkpoint("example.com/log", 1, ROOT).text(), witness)
    with pytest.raises(SignatureError):
        open_checkpoint(note, log.verifier())


def test_origin_mismatch_rejected() -> None:
    signer = Signer.generate("example.com/log")
    # signed by the right key, but claiming another log's origin
    note = sign_note(Checkpoint("example.com/other", 1, ROOT).text(), signer)
    with pytest.raises(SignatureError, match="origin"):
        open_checkpoint(note, signer.verifier())
    with pytest.raises(InputError, match="origin"):
        sign_checkpoint(Checkpoint("example.com/other", 1, ROOT), signer)


def test_tampered_size_rejected() -> None:
    signer = Signer.generate("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/log", 41, ROOT), signer)
    with pytest.raises(SignatureError):
        open_checkpoint(note.replace("\n41\n", "\n42\n", 1), signer.verifier())


def test_signed_but_malformed_body_rejected() -> None:
    signer = Signer.generate("example.com/log")
    root64 = base64.b64encode(ROOT).decode()
    note = sign_note(f"example.com/log\n007\n{root64}\n", signer)
    with pytest.raises(InputError):
        open_checkpoint(note, signer.verifier())


def _body(size: str = "5", root: str | None = None, origin: str = "example.com/log") -> str:
    root64 = base64.b64encode(ROOT).decode() if root is None else root
    return f"{origin}\n{size}\n{root64}\n"


@pytest.mark.parametrize(
    "text",
    [
        _body(size="05"),  # leading zero
        _body(size="00"),
        _body(size="+5"),
        _body(size="-5"),
        _body(size=" 5"),
        _body(size="5 "),
        _body(size="5.0"),
        _body(size="0x5"),
        _body(size="1_000"),
        _body(size="\u0665"),  # ARABIC-INDIC DIGIT FIVE: not ASCII decimal
        _body(size="\uff15"),  # FULLWIDTH DIGIT FIVE
        _body(size=""),
        _body(size=str(1 << 63)),  # beyond the signed 64-bit range
        _body(root=base64.b64encode(ROOT[:31]).decode()),  # wrong root length
        _body(root=base64.b64encode(ROOT + b"\x00").decode()),
        _body(root=""),
        _body(root=base64.b64encode(ROOT).decode().rstrip("=")),  # unpadded
        _body(root=base64.urlsafe_b64encode(b"\xff" * 32).decode()),  # URL alphabet
        _body(origin=""),
        _body().rstrip("\n"),  # no final newline
        _body() + "\n",  # empty extension line
        _body() + "ext\n\n",
        "example.com/log\n5\n",  # too few lines
        "",
        _body(origin="example.com/\tlog"),
    ],
)
def test_malformed_body_rejected(text: str) -> None:
    with pytest.raises(InputError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "changes",
    [
        {"root": ROOT[:31]},
        {"root": ROOT + b"\x00"},
        {"size": -1},
        {"size": 1 << 63},
        {"origin": ""},
        {"origin": "two\nlines"},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
    ],
)
def test_invalid_fields_rejected(changes: dict[str, Any]) -> None:
    base = Checkpoint("example.com/log", 1, ROOT)
    with pytest.raises(InputError):
        dataclasses.replace(base, **changes)


def test_checkpoint_is_frozen() -> None:
    checkpoint = Checkpoint("example.com/log", 1, ROOT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        checkpoint.size = 2  # type: ignore[misc]
