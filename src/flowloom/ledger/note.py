"""Signed notes: text signed by one or more Ed25519 keys, per C2SP signed-note.

Format (https://c2sp.org/signed-note): the note text, which ends in a newline, then a
blank line, then one or more signature lines ``— <key name> base64(key ID || sig)``.
Keys are written in the golang.org/x/mod/sumdb/note encodings:
``<name>+<8 hex key ID>+base64(0x01 || public key)`` for verifiers and
``PRIVATE+KEY+<name>+<8 hex key ID>+base64(0x01 || seed)`` for signers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from flowloom.errors import InputError, KeyFileError, SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "ExternalKey",
    "NoteSignature",
    "OpenedNote",
    "Signer",
    "Verifier",
    "cosign",
    "is_valid_key_name",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

ALG_ED25519 = 0x01
"""Signature type identifier byte for Ed25519 (signed-note, "Signature types")."""

MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec requires at least 16)."""

MAX_NOTE_BYTES = 1 << 20
"""Largest encoded note (text plus signatures) accepted or produced, in bytes."""

_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")

# The Unicode White_Space property (what Go's unicode.IsSpace tests), so that names are
# judged exactly as golang.org/x/mod/sumdb/note judges them.
_UNICODE_SPACES = frozenset(
    "\t\n\v\f\r \u0085\u00a0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a key: non-empty, no Unicode spaces, no ``+``.

    ASCII control characters are also refused, since a note may not contain them.
    """
    return (
        bool(name)
        and "+" not in name
        and not any(ch in _UNICODE_SPACES or ord(ch) < 0x20 for ch in name)
        and _is_utf8_encodable(name)
    )


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || 0x01 || Ed25519 public key)[:4]."""
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(data).digest()[:_KEY_ID_SIZE]


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4): padded, canonical, nothing else."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None  # non-canonical padding bits
    return raw


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Verifier:
    """A trusted Ed25519 public key under a name, identified by its 4-byte key ID."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey

    def __init__(self, name: str, public_key: bytes) -> None:
        if not is_valid_key_name(name):
            raise KeyFileError(
                f"invalid key name {name!r}",
                hint="a key name is non-empty and has no spaces, '+' or control characters",
            )
        if len(public_key) != _ED25519_KEY_SIZE:
            raise KeyFileError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key ``<name>+<8 hex key ID>+base64(0x01 || public key)``."""
        name, sep1, rest = vkey.partition("+")
        hex_id, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2):
            raise KeyFileError("malformed verifier key", hint="expected <name>+<hex id>+<key>")
        if not _HEX8.fullmatch(hex_id):
            raise KeyFileError("malformed verifier key: the key ID is not 8 hex digits")
        raw = _b64decode(key64)
        if raw is None or not raw:
            raise KeyFileError("malformed verifier key: the key is not valid base64")
        if raw[0] != ALG_ED25519:
            raise KeyFileError(f"unsupported verifier key algorithm {raw[0]:#04x}")
        verifier = cls(name, raw[1:])
        if verifier.key_id != bytes.fromhex(hex_id):
            raise KeyFileError("verifier key ID does not match the key and name")
        return verifier

    @property
    def vkey(self) -> str:
        """The verifier key string ``<name>+<8 hex key ID>+base64(0x01 || public key)``."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without key ID) is this key's signature of ``message``."""
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return self.name == other.name and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class ExternalKey(Protocol):
    """An Ed25519 private key held outside this process (an HSM): it signs, never leaves."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    @property
    def where(self) -> str:
        """Where the key is held, for messages (never key material)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature (pure Ed25519, RFC 8032)."""
        ...


class Signer:
    """An Ed25519 private key under a name. Its ``repr`` never shows key material.

    The key is either in memory (a key file) or an `ExternalKey` (an HSM): notes signed
    either way are the same bytes, since Ed25519 signatures are deterministic.
    """

    __slots__ = ("_external", "_key", "_public_key", "key_id", "name")

    name: str
    key_id: bytes
    _key: Ed25519PrivateKey | None
    _external: ExternalKey | None
    _public_key: bytes

    def __init__(self, name: str, private_key: Ed25519PrivateKey | ExternalKey) -> None:
        if not is_valid_key_name(name):
            raise KeyFileError(
                f"invalid key name {name!r}",
                hint="a key name is non-empty and has no spaces, '+' or control characters",
            )
        self.name = name
        if isinstance(private_key, Ed25519PrivateKey):
            self._key, self._external = private_key, None
            self._public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        else:
            self._key, self._external = None, private_key
            self._public_key = bytes(private_key.public_key)
            if len(self._public_key) != _ED25519_KEY_SIZE:
                raise KeyFileError(f"the key at {private_key.where} is not an Ed25519 key")
        self.key_id = key_id(name, self._public_key)

    @property
    def external(self) -> ExternalKey | None:
        """The device holding the key, or None for a key in memory."""
        return self._external

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key under ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<8 hex key ID>+base64(0x01 || seed)``."""
        if not skey.startswith(_PRIVATE_PREFIX):
            raise KeyFileError("malformed signer key", hint="it must start with PRIVATE+KEY+")
        name, sep1, rest = skey[len(_PRIVATE_PREFIX) :].partition("+")
        hex_id, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2):
            raise KeyFileError(
                "malformed signer key", hint="expected PRIVATE+KEY+<name>+<hex id>+<key>"
            )
        if not _HEX8.fullmatch(hex_id):
            raise KeyFileError("malformed signer key: the key ID is not 8 hex digits")
        raw = _b64decode(key64)
        if raw is None or not raw:
            raise KeyFileError("malformed signer key: the key is not valid base64")
        if raw[0] != ALG_ED25519:
            raise KeyFileError(f"unsupported signer key algorithm {raw[0]:#04x}")
        seed = raw[1:]
        if len(seed) != _ED25519_KEY_SIZE:
            raise KeyFileError(f"an Ed25519 private key seed is 32 bytes, not {len(seed)}")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.key_id != bytes.fromhex(hex_id):
            raise KeyFileError("signer key ID does not match the key and name")
        return signer

    def to_skey(self) -> str:
        """The secret signer key string. Keep it secret: it can sign anything."""
        if self._key is None:
            assert self._external is not None
            raise KeyFileError(
                f"key {self.name}+{self.key_id.hex()} is held at {self._external.where} "
                "and cannot be exported"
            )
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = _b64encode(bytes([ALG_ED25519]) + seed)
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{encoded}"

    def verifier(self) -> Verifier:
        """The matching public verifier."""
        return Verifier(self.name, self._public_key)

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message`` (no key ID)."""
        if self._key is not None:
            return self._key.sign(message)
        assert self._external is not None
        signature = self._external.sign(message)
        # A device that returns a wrong signature must not put it into the record.
        if not self.verifier().verify(message, signature):
            raise SignatureError(
                f"the key at {self._external.where} returned a signature that does not "
                f"verify with {self.name}+{self.key_id.hex()}"
            )
        return signature

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note: key name, 4-byte key ID and signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, including its final newline."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note whose signatures checked out.

    ``text`` is the signed text (with its final newline), ``verified_by`` the known keys
    whose signatures verified, ``unknown`` the signature lines from keys not known.
    """

    text: str
    verified_by: tuple[Verifier, ...]
    unknown: tuple[NoteSignature, ...] = ()


def _check_text(text: str, what: str) -> bytes:
    """Encode ``text`` and apply the note character rules; returns the UTF-8 bytes."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} is not valid UTF-8") from exc
    _check_chars(data, what)
    return data


def _check_chars(data: bytes, what: str) -> None:
    found = _CONTROL.search(data)
    if found is not None:
        raise InputError(
            f"{what} contains control character {found.group()[0]:#04x}",
            hint="only newline is allowed below U+0020",
        )


def _decode_note(note: str | bytes) -> str:
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise InputError(f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            text = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("note is not valid UTF-8") from exc
        _check_chars(note, "note")
        return text
    data = _check_text(note, "note")
    if len(data) > MAX_NOTE_BYTES:
        raise InputError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    return note


def parse_note(note: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a note into its text and signature lines, checking the format only.

    Nothing is verified: the text MUST NOT be trusted until :func:`open_note` says so.
    Raises :class:`InputError` for a malformed note.
    """
    decoded = _decode_note(note)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise InputError("malformed note: no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise InputError("malformed note: the signature block must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InputError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise InputError("malformed note: a signature line must start with '— '")
        name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise InputError(f"malformed note: invalid key name {name!r} in a signature")
        raw = _b64decode(sig64)
        if raw is None or len(raw) <= _KEY_ID_SIZE:
            raise InputError(f"malformed note: bad signature encoding for key {name!r}")
        signatures.append(NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
    return text, tuple(signatures)


def _signature_for(text: str, data: bytes, signer: Signer) -> NoteSignature:
    if not text.endswith("\n"):
        raise InputError("note text must end in a newline")
    return NoteSignature(signer.name, signer.key_id, signer.sign(data))


def sign_note(text: str, signer: Signer) -> str:
    """Sign ``text`` (which must end in a newline) and return the encoded note."""
    data = _check_text(text, "note text")
    signature = _signature_for(text, data, signer)
    note = f"{text}\n{signature.line()}"
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InputError(f"signed note would be larger than {MAX_NOTE_BYTES} bytes")
    return note


def cosign(note: str | bytes, signer: Signer) -> str:
    """Add ``signer``'s signature line to an already signed note.

    Only the format of ``note`` is checked, not its existing signatures: open it first
    if the signature is meant to vouch for them. An existing line from the same key
    (same name and key ID) is replaced; the new line goes last.
    """
    text, signatures = parse_note(note)
    data = text.encode("utf-8")
    new = _signature_for(text, data, signer)
    kept = [s for s in signatures if (s.name, s.key_id) != (new.name, new.key_id)]
    if len(kept) + 1 > MAX_SIGNATURES:
        raise InputError(f"note would have more than {MAX_SIGNATURES} signatures")
    result = text + "\n" + "".join(s.line() for s in [*kept, new])
    if len(result.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InputError(f"signed note would be larger than {MAX_NOTE_BYTES} bytes")
    return result


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Check a note's signatures against the known ``verifiers``.

    Signature lines from unknown keys (name and key ID not both matching a known key)
    are ignored. Raises :class:`InputError` for a malformed note, :class:`SignatureError`
    if a known key's signature does not verify, if a known key signed more than once,
    or if no known key signed at all.
    """
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, verifier.key_id)
        previous = known.get(ident)
        if previous is not None and previous != verifier:
            raise KeyFileError(
                f"two trusted keys share the name {verifier.name!r} and key ID "
                f"{verifier.key_id.hex()}",
                hint="remove one of them from the trusted keys",
            )
        known[ident] = verifier

    text, signatures = parse_note(note)
    data = text.encode("utf-8")
    verified: list[Verifier] = []
    unknown: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in signatures:
        ident = (signature.name, signature.key_id)
        trusted = known.get(ident)
        if trusted is None:
            if signature not in unknown:
                unknown.append(signature)
            continue
        if ident in seen:
            raise SignatureError(
                f"note carries more than one signature from key "
                f"{signature.name}+{signature.key_id.hex()}"
            )
        seen.add(ident)
        if not trusted.verify(data, signature.signature):
            raise SignatureError(
                f"invalid signature from key {signature.name}+{signature.key_id.hex()}",
                hint="the note was altered or signed with a different key",
            )
        verified.append(trusted)
    if not verified:
        raise SignatureError(
            "note has no signature from a trusted key",
            hint="check that the right public key is configured",
        )
    return OpenedNote(text, tuple(verified), tuple(unknown))
