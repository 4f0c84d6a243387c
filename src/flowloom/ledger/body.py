"""Body commitments: a body is stored beside its envelope under a salted digest.

digest = "sha256:" + hex(SHA-256(salt || body)). The salt keeps low-entropy bodies
("yes", a short prompt) from being guessed from the public envelope, and destroying it
together with the content erases the body while the envelope and tree still verify.
Bodies of a data subject are encrypted with AES-256-GCM under that subject's key, the
digest as associated data; the subject keys are wrapped under the installation's master
key (held by a key provider: `flowloom.ledger.keyprovider`), so destroying a subject key
makes that subject's bodies unreadable everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowloom.errors import KeyFileError, KeyMissingError, VerificationError
from flowloom.store.interface import StoredBody

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from flowloom.ledger.keyprovider import Envelope

__all__ = [
    "SALT_SIZE",
    "BodyCipher",
    "SealedBody",
    "commit_body",
    "digest_of",
    "open_body",
    "subject_pseudonym",
]

SALT_SIZE = 32
_NONCE_SIZE = 12
_KEY_SIZE = 32


def digest_of(salt: bytes, body: bytes) -> str:
    """The salted commitment to `body`."""
    return "sha256:" + hashlib.sha256(salt + body).hexdigest()


@dataclass(frozen=True)
class SealedBody:
    """A body ready to store: its commitment and what goes into the bodies table."""

    digest: str
    stored: StoredBody


def commit_body(body: bytes, *, salt: bytes | None = None) -> SealedBody:
    """Commit to a plaintext body with a fresh random salt."""
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    digest = digest_of(salt, body)
    return SealedBody(digest, StoredBody(digest=digest, salt=salt, content=body))


def subject_pseudonym(log: str, subject: str) -> str:
    """A stable pseudonym for a data subject, so the subject's identity is never stored."""
    return "subj:" + hashlib.sha256(f"{log}\n{subject}".encode()).hexdigest()[:32]


def _aesgcm(key: bytes) -> AESGCM:
    # Imported here: hooks record plain bodies and must not pay for loading OpenSSL.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class BodyCipher:
    """Encrypts bodies per data subject; subject keys are wrapped under a master key.

    Given raw bytes (tests, tools), the master key is a key in memory; given an
    `Envelope`, wrapping happens wherever the installation's master key is held.
    """

    def __init__(self, master: Envelope | bytes) -> None:
        if isinstance(master, bytes):
            if len(master) != _KEY_SIZE:
                raise KeyFileError("the master key must be 32 bytes")
            from flowloom.ledger.keys import in_memory_envelope

            master = in_memory_envelope(master)
        self.envelope = master

    def new_wrapped_key(self, pseudonym: str) -> bytes:
        """A fresh subject key, wrapped under the active master key for storage."""
        return self.envelope.wrap(os.urandom(_KEY_SIZE), pseudonym.encode())

    def unwrap(self, pseudonym: str, wrapped: bytes) -> bytes:
        try:
            return self.envelope.unwrap(wrapped, pseudonym.encode())
        except KeyMissingError:
            raise
        except KeyFileError as exc:
            raise KeyFileError(
                f"cannot unwrap the key of {pseudonym}: wrong master key or damaged key row"
            ) from exc

    def seal(self, body: bytes, pseudonym: str, wrapped: bytes) -> SealedBody:
        """Commit to `body` and encrypt it under the subject's key."""
        salt = os.urandom(SALT_SIZE)
        digest = digest_of(salt, body)
        nonce = os.urandom(_NONCE_SIZE)
        ciphertext = _aesgcm(self.unwrap(pseudonym, wrapped)).encrypt(nonce, body, digest.encode())
        return SealedBody(digest, StoredBody(digest, salt, ciphertext, nonce, pseudonym))

    def decrypt(self, stored: StoredBody, wrapped: bytes) -> bytes:
        if stored.nonce is None or stored.subject is None:
            return stored.content
        from cryptography.exceptions import InvalidTag

        key = self.unwrap(stored.subject, wrapped)
        try:
            return _aesgcm(key).decrypt(stored.nonce, stored.content, stored.digest.encode())
        except InvalidTag as exc:
            raise VerificationError(
                f"body {stored.digest} does not decrypt: it was altered"
            ) from exc


def open_body(stored: StoredBody, plaintext: bytes) -> None:
    """Check that `plaintext` is what the stored digest commits to."""
    expected = digest_of(stored.salt, plaintext)
    if not hmac.compare_digest(expected, stored.digest):
        raise VerificationError(f"body {stored.digest} does not match its commitment")
