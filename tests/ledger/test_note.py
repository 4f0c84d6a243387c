"""C2SP signed-note: known-answer vectors, key strings, and every rejection rule."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from flowloom.errors import InputError, KeyFileError, SignatureError
from flowloom.ledger.note import (
    MAX_SIGNATURES,
    NoteSignature,
    Signer,
    Verifier,
    cosign,
    is_valid_key_name,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "note" / "vectors.json").read_text("utf-8")
)
BY_NAME = {v["name"]: v for v in VECTORS["vectors"]}
PETER = BY_NAME["go-note-PeterNeumann"]
EM = "\u2014"


def _peter() -> tuple[Signer, Verifier]:
    signer = Signer.from_skey(PETER["skey"])
    return signer, Verifier.from_vkey(PETER["vkey"])


# --- known answers -------------------------------------------------------------------


def test_peter_neumann_signature_reproduced_byte_for_byte() -> None:
    signer, _ = _peter()
    assert sign_note(PETER["text"], signer) == PETER["note"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_opens_or_is_rejected(vector: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(vector["vkey"])
    if vector["valid"]:
        opened = open_note(vector["note"], [verifier])
        assert opened.verified_by == (verifier,)
        assert opened.unknown == ()
        assert vector["note"].startswith(opened.text + "\n" + EM + " ")
        # bytes input is accepted too
        assert open_note(vector["note"].encode("utf-8"), [verifier]) == opened
    else:
        with pytest.raises(SignatureError):
            open_note(vector["note"], [verifier])


def test_peter_neumann_text_is_recovered() -> None:
    _, verifier = _peter()
    assert open_note(PETER["note"], [verifier]).text == PETER["text"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vkey_round_trips(vector: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(vector["vkey"])
    assert verifier.vkey == vector["vkey"]
    assert len(verifier.key_id) == 4
    assert verifier.key_id.hex() == vector["vkey"].split("+")[1]
    assert key_id(verifier.name, verifier.public_key) == verifier.key_id


def test_skey_round_trips_and_matches_vkey() -> None:
    signer, verifier = _peter()
    assert signer.to_skey() == PETER["skey"]
    assert signer.verifier() == verifier
    assert signer.verifier().vkey == PETER["vkey"]
    assert signer.name == "PeterNeumann"
    assert signer.key_id == bytes.fromhex("c74f20a3")


def test_uppercase_key_id_accepted_and_normalised() -> None:
    name, hex_id, key = PETER["vkey"].split("+", 2)
    verifier = Verifier.from_vkey(f"{name}+{hex_id.upper()}+{key}")
    assert verifier.vkey == PETER["vkey"]


# --- keys ----------------------------------------------------------------------------


def test_generate_signs_and_verifies() -> None:
    signer = Signer.generate("example.com/log")
    verifier = signer.verifier()
    assert Verifier.from_vkey(verifier.vkey) == verifier
    assert Signer.from_skey(signer.to_skey()).verifier() == verifier
    note = sign_note("hello\n", signer)
    assert open_note(note, [verifier]).text == "hello\n"


def test_repr_and_str_hide_key_material() -> None:
    signer, _ = _peter()
    seed64 = PETER["skey"].rsplit("+", 1)[1]
    for shown in (repr(signer), str(signer), f"{signer}", f"{signer!r}"):
        assert seed64 not in shown
        assert "PRIVATE" not in shown
        assert "PeterNeumann" in shown
        assert "c74f20a3" in shown
    assert not hasattr(signer, "__dict__")


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3z+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad b64
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # alg 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",  # length
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
    ],
)
def test_malformed_vkey_rejected(vkey: str) -> None:
    with pytest.raises(KeyFileError):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        "",
        PETER["skey"].replace("PRIVATE+KEY+", "PRIVATE+KEYS+"),
        PETER["skey"].replace("PRIVATE+KEY+", ""),
        PETER["skey"].replace("c74f20a3", "c74f20a4"),  # id does not match
        PETER["skey"].replace("c74f20a3", "c74f20"),
        PETER["skey"][:-1],  # bad base64
        PETER["skey"] + "AA==",  # seed too long (base64 now invalid too)
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+Peter+Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_malformed_skey_rejected(skey: str) -> None:
    with pytest.raises(KeyFileError):
        Signer.from_skey(skey)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/log", True),
        ("PeterNeumann", True),
        ("ünïcødé", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\tb", False),
        ("a\u00a0b", False),
        ("a\u2003b", False),
        ("a\u3000b", False),
        ("a\x01b", False),
        ("a\nb", False),
    ],
)
def test_key_names(name: str, valid: bool) -> None:
    assert is_valid_key_name(name) is valid
    if not valid:
        with pytest.raises(KeyFileError):
            Signer.generate(name)


def test_verifier_rejects_wrong_length_key() -> None:
    with pytest.raises(KeyFileError):
        Verifier("example.com/log", b"\x00" * 31)


# --- signing rules -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["no newline", "", "tab\there\n", "cr\r\n", "nul\x00\n"])
def test_sign_rejects_bad_text(text: str) -> None:
    signer, _ = _peter()
    with pytest.raises(InputError):
        sign_note(text, signer)


def test_sign_rejects_lone_surrogate() -> None:
    signer, _ = _peter()
    with pytest.raises(InputError):
        sign_note("\udc80\n", signer)


@pytest.mark.parametrize("text", ["\n", "a\n\n", "a\n\nb\n", "— x y\n\n", "ünïcødé ✓\n"])
def test_awkward_texts_round_trip(text: str) -> None:
    signer, verifier = _peter()
    assert open_note(sign_note(text, signer), [verifier]).text == text


# --- cosigning -----------------------------------------------------------------------


def test_cosign_adds_a_line_and_both_verify() -> None:
    peter, peter_v = _peter()
    witness = Signer.generate("witness.example/w1")
    note = cosign(PETER["note"], witness)
    assert note.startswith(PETER["note"])
    assert note.count("\n" + EM + " ") == 2
    assert note.endswith("\n")
    opened = open_note(note, [peter_v, witness.verifier()])
    assert set(opened.verified_by) == {peter_v, witness.verifier()}
    # a verifier knowing only one key still accepts it, listing the other as unknown
    only_witness = open_note(note, [witness.verifier()])
    assert only_witness.verified_by == (witness.verifier(),)
    assert [s.name for s in only_witness.unknown] == ["PeterNeumann"]
    assert peter.name == "PeterNeumann"


def test_cosign_by_same_key_replaces_its_line() -> None:
    peter, peter_v = _peter()
    assert cosign(PETER["note"], peter) == PETER["note"]
    witness = Signer.generate("witness.example/w1")
    twice = cosign(cosign(PETER["note"], witness), witness)
    assert twice.count("\n" + EM + " ") == 2
    open_note(twice, [peter_v, witness.verifier()])


def test_cosign_rejects_malformed_note() -> None:
    witness = Signer.generate("witness.example/w1")
    with pytest.raises(InputError):
        cosign(PETER["text"], witness)


# --- opening: rejections -------------------------------------------------------------


def _flip_base64_bit(b64: str, byte_index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[byte_index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def _replace_sig(note: str, new_b64: str) -> str:
    head = note.rstrip("\n").rpartition(" ")[0]
    return f"{head} {new_b64}\n"


def _sig_b64(note: str) -> str:
    return note.rstrip("\n").rpartition(" ")[2]


def test_wrong_key_rejected() -> None:
    other = Signer.generate("PeterNeumann").verifier()  # same name, different key id
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        open_note(PETER["note"], [other])


def test_no_verifiers_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(PETER["note"], [])


@pytest.mark.parametrize("byte_index", [4, 20, 67])
def test_flipped_bit_in_signature_rejected(byte_index: int) -> None:
    _, verifier = _peter()
    bad = _replace_sig(PETER["note"], _flip_base64_bit(_sig_b64(PETER["note"]), byte_index))
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(bad, [verifier])


def test_flipped_bit_in_key_id_makes_signature_unknown() -> None:
    _, verifier = _peter()
    bad = _replace_sig(PETER["note"], _flip_base64_bit(_sig_b64(PETER["note"]), 0))
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        open_note(bad, [verifier])


def test_flipped_bit_in_text_rejected() -> None:
    _, verifier = _peter()
    raw = bytearray(PETER["note"].encode("utf-8"))
    raw[3] ^= 0x01
    with pytest.raises(SignatureError):
        open_note(bytes(raw), [verifier])


def test_truncated_signature_rejected() -> None:
    _, verifier = _peter()
    raw = base64.b64decode(_sig_b64(PETER["note"]))[:-1]
    bad = _replace_sig(PETER["note"], base64.b64encode(raw).decode("ascii"))
    with pytest.raises(SignatureError):
        open_note(bad, [verifier])


def _malformed_notes() -> list[str | bytes]:
    note: str = PETER["note"]
    sig_line = note[note.rfind("\n\n") + 2 :]
    sig64 = _sig_b64(note)
    return [
        note.replace("\n\n" + EM, "\n" + EM),  # missing blank line
        note + "garbage",  # trailing garbage without newline
        note + "garbage\n",  # trailing garbage line
        note + "\n",  # trailing blank line
        note.rstrip("\n"),  # no final newline
        PETER["text"] + "\n",  # no signatures at all
        PETER["text"],  # no blank line, no signatures
        "",
        note.replace(sig64, sig64[:-1]),  # bad base64 (length)
        note.replace(sig64, sig64[:-2] + "!="),  # bad base64 (alphabet)
        note.replace(sig64, sig64.rstrip("=")),  # missing padding
        note.replace(sig64, sig64[:-2] + "N="),  # non-canonical padding bits
        note.replace(sig64, "AAAA"),  # too short to hold key id + signature
        note.replace(sig64, ""),  # empty signature
        note.replace(EM + " PeterNeumann", "- PeterNeumann"),  # hyphen, not em dash
        note.replace(EM + " PeterNeumann", EM + "PeterNeumann"),  # no space
        note.replace("PeterNeumann ", "Peter+Neumann "),  # '+' in name
        note.replace("PeterNeumann ", " "),  # empty name
        note.replace("PeterNeumann ", "PeterNeumann  "),  # double space
        note.replace(sig_line, sig_line.replace("\n", " \n")),  # trailing space
        note.replace("problem,\n", "problem,\r\n"),  # control character
        note.replace("problem,\n", "problem,\t\n"),
        note.encode("utf-8").replace(b"If", b"I\xff"),  # not UTF-8
        note.encode("utf-8").replace(b"If", b"I\xc0\x80"),  # overlong encoding
        "\udc80\n\n" + sig_line,  # lone surrogate
    ]


@pytest.mark.parametrize("note", _malformed_notes())
def test_malformed_note_rejected(note: str | bytes) -> None:
    _, verifier = _peter()
    with pytest.raises(InputError):
        open_note(note, [verifier])
    with pytest.raises(InputError):
        parse_note(note)


def test_unknown_only_signatures_rejected() -> None:
    stranger = Signer.generate("stranger.example")
    note = sign_note(PETER["text"], stranger)
    _, verifier = _peter()
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        open_note(note, [verifier])


def test_unknown_signatures_ignored_even_if_garbage() -> None:
    _, verifier = _peter()
    # same name, unknown key id; and unknown name with known key id: both ignored
    garbage_sig = base64.b64encode(b"\x00\x00\x00\x01" + b"\x00" * 64).decode("ascii")
    same_id_sig = base64.b64encode(verifier.key_id + b"\x00" * 64).decode("ascii")
    note = (
        PETER["note"]
        + f"{EM} PeterNeumann {garbage_sig}\n"
        + f"{EM} someone.else {same_id_sig}\n"
        + f"{EM} someone.else {same_id_sig}\n"
    )
    opened = open_note(note, [verifier])
    assert opened.verified_by == (verifier,)
    assert opened.text == PETER["text"]
    assert [s.name for s in opened.unknown] == ["PeterNeumann", "someone.else"]


def test_duplicate_signature_from_known_key_rejected() -> None:
    _, verifier = _peter()
    note: str = PETER["note"]
    sig_line = note[note.rfind("\n\n") + 2 :]
    with pytest.raises(SignatureError, match="more than one signature"):
        open_note(note + sig_line, [verifier])


def test_bad_known_signature_rejected_even_with_a_good_one() -> None:
    _, verifier = _peter()
    witness = Signer.generate("witness.example/w1")
    note = cosign(PETER["note"], witness)
    head, _, sig = note.rstrip("\n").rpartition(" ")
    bad = f"{head} {_flip_base64_bit(sig, 30)}\n"
    open_note(bad, [verifier])  # the witness key is unknown here: ignored
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(bad, [verifier, witness.verifier()])


def test_too_many_signatures_rejected() -> None:
    _, verifier = _peter()
    extra = NoteSignature("x", b"\x00\x00\x00\x00", b"\x00" * 64).line()
    accepted = PETER["note"] + extra * (MAX_SIGNATURES - 1)
    assert open_note(accepted, [verifier]).text == PETER["text"]
    with pytest.raises(InputError, match="more than"):
        open_note(accepted + extra, [verifier])


def test_sixteen_cosignatures_accepted() -> None:
    peter, verifier = _peter()
    witnesses = [Signer.generate(f"witness.example/w{i}") for i in range(16)]
    note = PETER["note"]
    for witness in witnesses:
        note = cosign(note, witness)
    opened = open_note(note, [verifier, *(w.verifier() for w in witnesses)])
    assert len(opened.verified_by) == 17
    assert peter.name == opened.verified_by[0].name


def test_duplicate_verifiers_are_merged() -> None:
    _, verifier = _peter()
    assert open_note(PETER["note"], [verifier, verifier]).verified_by == (verifier,)


def test_parse_note_splits_signatures() -> None:
    text, sigs = parse_note(PETER["note"])
    assert text == PETER["text"]
    assert len(sigs) == 1
    assert sigs[0].name == "PeterNeumann"
    assert sigs[0].key_id == bytes.fromhex("c74f20a3")
    assert len(sigs[0].signature) == 64
    assert PETER["note"].endswith(sigs[0].line())
