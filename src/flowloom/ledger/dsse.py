"""Signed statements in the ecosystem's attestation format: in-toto Statement v1 in DSSE.

A statement says something (a *predicate*) about files named by their SHA-256 digests
(the *subjects*)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "report.pdf", "digest": {"sha256": "<hex>"}}],
     "predicateType": "<URI>", "predicate": {...}}

It travels in a DSSE envelope (github.com/secure-systems-lab/dsse, protocol v1)::

    {"payload": "<base64 statement>", "payloadType": "application/vnd.in-toto+json",
     "signatures": [{"keyid": "<origin>+<8 hex key id>", "sig": "<base64>"}]}

Each signature is over PAE(payloadType, payload) = ``"DSSEv1" SP len(type) SP type SP
len(payload) SP payload`` (lengths in ASCII decimal), so anyone can check it with
standard tools: an Ed25519 library (or OpenSSL) for the log's key, ``ssh-keygen -Y
verify`` for a person's SSH signature (namespace ``flowloom``, key id ``SHA256:...``).
PAE is four lines of code, so FlowLoom writes it here rather than depending on
securesystemslib, whose signer and key classes would wrap FlowLoom's own Ed25519 keys
and cannot hold an SSH signature; the format is the same (see docs/reports.md).

Stdlib only at import time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import InputError, VerificationError

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer, Verifier

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "pae",
    "sha256_hex",
    "statement",
]

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
INTOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
_MAX_ENVELOPE: Final = 16 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the exact bytes every signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def statement(
    subjects: Iterable[tuple[str, str]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 over `subjects` ((name, sha256 hex) pairs)."""
    listed = [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects]
    if not listed:
        raise InputError("a statement needs at least one subject")
    return {
        "_type": STATEMENT_TYPE,
        "subject": listed,
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the payload, its type, and the signatures over PAE."""

    payload: bytes
    payload_type: str
    signatures: tuple[EnvelopeSignature, ...] = ()

    @classmethod
    def of_statement(cls, document: Mapping[str, Any]) -> Envelope:
        """An unsigned envelope around an in-toto statement (compact, sorted JSON)."""
        payload = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(payload.encode("utf-8"), INTOTO_PAYLOAD_TYPE)

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def signed(self, signer: Signer) -> Envelope:
        """This envelope with one more signature, by a log key (Ed25519)."""
        keyid = f"{signer.name}+{signer.key_id.hex()}"
        return self.with_signature(keyid, signer.sign(self.pae()))

    def with_signature(self, keyid: str, sig: bytes) -> Envelope:
        return Envelope(
            self.payload, self.payload_type, (*self.signatures, EnvelopeSignature(keyid, sig))
        )

    def signature_by(self, keyid: str) -> EnvelopeSignature | None:
        return next((s for s in self.signatures if s.keyid == keyid), None)

    def verified_by(self, verifiers: Sequence[Verifier]) -> Verifier | None:
        """The first of `verifiers` whose signature is in the envelope and verifies."""
        message = self.pae()
        for verifier in verifiers:
            found = self.signature_by(f"{verifier.name}+{verifier.key_id.hex()}")
            if found is not None and verifier.verify(message, found.sig):
                return verifier
        return None

    def statement(self) -> dict[str, Any]:
        """The payload as an in-toto statement (VerificationError when it is not one)."""
        if self.payload_type != INTOTO_PAYLOAD_TYPE:
            raise VerificationError(f"the envelope holds {self.payload_type!r}, not a statement")
        try:
            document = json.loads(self.payload)
        except ValueError:
            raise VerificationError("the envelope's payload is not JSON") from None
        if not isinstance(document, dict) or document.get("_type") != STATEMENT_TYPE:
            raise VerificationError("the envelope's payload is not an in-toto Statement v1")
        subjects = document.get("subject")
        if not isinstance(subjects, list) or not all(_subject_ok(s) for s in subjects):
            raise VerificationError("the statement's subjects are malformed")
        if not isinstance(document.get("predicate"), dict):
            raise VerificationError("the statement has no predicate")
        return document

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_line(self) -> bytes:
        """The envelope as one JSON line (the ``.intoto.jsonl`` form)."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode("ascii") + b"\n"

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        """Read an envelope (a JSON object, or the first line of a .intoto.jsonl file)."""
        if len(data) > _MAX_ENVELOPE:
            raise InputError("a DSSE envelope must be under 16 MiB")
        try:
            found = json.loads(data.decode("utf-8").strip().splitlines()[0])
            payload = base64.b64decode(found["payload"], validate=True)
            kind = found["payloadType"]
            signatures = tuple(
                EnvelopeSignature(str(s["keyid"]), base64.b64decode(s["sig"], validate=True))
                for s in found["signatures"]
            )
        except (
            ValueError,
            IndexError,
            KeyError,
            TypeError,
            binascii.Error,
            UnicodeDecodeError,
        ) as exc:
            raise InputError(f"not a DSSE envelope: {exc}") from None
        if not isinstance(kind, str):
            raise InputError("not a DSSE envelope: payloadType is not text")
        return cls(payload, kind, signatures)


def _subject_ok(subject: object) -> bool:
    if not isinstance(subject, dict) or not isinstance(subject.get("name"), str):
        return False
    digest = subject.get("digest")
    return isinstance(digest, dict) and isinstance(digest.get("sha256"), str)
