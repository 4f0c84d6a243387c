"""Provider keys at rest: AES-256-GCM under a key derived from the installation master key.

The encryption key is HKDF-SHA256(master key, info="flowloom/gateway/provider-keys/v1"),
so it is bound to this installation (KeyStore's master key) yet distinct from the key
that wraps body keys. Each stored value is version byte 0x01 || 12-byte nonce ||
ciphertext+tag, with the provider key's name as associated data, so a sealed value
copied onto another name does not decrypt. The master key is loaded on first use only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowloom.errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["ProviderKeyVault"]

_VERSION = b"\x01"
_NONCE_SIZE = 12
_INFO = b"flowloom/gateway/provider-keys/v1"


class ProviderKeyVault:
    """Seals and opens provider keys; never logs or returns them except from open()."""

    def __init__(self, master_key_loader: Callable[[], bytes]) -> None:
        self._loader = master_key_loader
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            master = self._loader()
            if len(master) != 32:
                raise KeyFileError("the master key must be 32 bytes")
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
                master
            )
            self._aead = AESGCM(derived)
        return self._aead

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"flowloom-provider-key:" + name.encode("utf-8")

    def seal(self, name: str, secret: str) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._cipher().encrypt(nonce, secret.encode("utf-8"), self._aad(name))
        return _VERSION + nonce + sealed

    def open(self, name: str, blob: bytes) -> str:
        from cryptography.exceptions import InvalidTag

        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE_SIZE + 16:
            raise KeyFileError(f"the stored provider key {name!r} is malformed")
        nonce = blob[1 : 1 + _NONCE_SIZE]
        try:
            plain = self._cipher().decrypt(nonce, blob[1 + _NONCE_SIZE :], self._aad(name))
        except InvalidTag as exc:
            raise KeyFileError(
                f"cannot decrypt the provider key {name!r}: wrong master key or damaged row",
                hint="set the key again: flowloom gateway providers set-key " + name,
            ) from exc
        return plain.decode("utf-8")
