"""Provider keys at rest: AES-256-GCM under a key derived from the installation master key.

The encryption key is HKDF-SHA256(master key, info="flowloom/gateway/provider-keys/v1"),
so it is bound to this installation (KeyStore's master key) yet distinct from the key
that wraps body keys. Each stored value is version byte 0x01 || 12-byte nonce ||
ciphertext+tag, with the provider key's name as associated data, so a sealed value
copied onto another name does not decrypt. The master key is loaded on first use only.

When the master key is held by a key provider (`flowloom.ledger.keyprovider.Envelope`:
a PKCS#11 token, AWS KMS, or a key file), values are sealed as version 0x02: a fresh
data key per value, wrapped by the provider (the name as context), then
``0x02 || u16 length || wrapped data key || nonce || ciphertext+tag``. Rotating the
master key re-wraps only the data key (`rewrap`); 0x01 values are still read (from the
master key files) and re-sealed as 0x02 by a rotation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowloom.errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from flowloom.ledger.keyprovider import Envelope

__all__ = ["ProviderKeyVault"]

_VERSION = b"\x01"
_ENVELOPED = b"\x02"
_NONCE_SIZE = 12
_INFO = b"flowloom/gateway/provider-keys/v1"


class ProviderKeyVault:
    """Seals and opens provider keys; never logs or returns them except from open()."""

    def __init__(self, master_key_loader: Callable[[], bytes | Envelope]) -> None:
        self._loader = master_key_loader
        self._loaded: bytes | Envelope | None = None
        self._aead: AESGCM | None = None
        self._data_keys: dict[bytes, bytes] = {}  # wrapped -> data key: one unwrap each

    def _master(self) -> bytes | Envelope:
        if self._loaded is None:
            self._loaded = self._loader()
        return self._loaded

    @staticmethod
    def _derived(master: bytes) -> AESGCM:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if len(master) != 32:
            raise KeyFileError("the master key must be 32 bytes")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)
        return AESGCM(derived)

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            master = self._master()
            if not isinstance(master, bytes):
                raise KeyFileError("provider keys are sealed under a key provider here")
            self._aead = self._derived(master)
        return self._aead

    def _data_key(self, envelope: Envelope, name: str, wrapped: bytes) -> bytes:
        key = self._data_keys.get(wrapped)
        if key is None:
            key = envelope.unwrap(wrapped, self._aad(name))
            if len(self._data_keys) > 1024:
                self._data_keys.clear()
            self._data_keys[wrapped] = key
        return key

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"flowloom-provider-key:" + name.encode("utf-8")

    def seal(self, name: str, secret: str) -> bytes:
        master = self._master()
        if isinstance(master, bytes):
            nonce = os.urandom(_NONCE_SIZE)
            sealed = self._cipher().encrypt(nonce, secret.encode("utf-8"), self._aad(name))
            return _VERSION + nonce + sealed
        return self._seal_enveloped(master, name, secret)

    def _seal_enveloped(self, envelope: Envelope, name: str, secret: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key = os.urandom(32)
        wrapped = envelope.wrap(data_key, self._aad(name))
        nonce = os.urandom(_NONCE_SIZE)
        sealed = AESGCM(data_key).encrypt(nonce, secret.encode("utf-8"), self._aad(name))
        return _ENVELOPED + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed

    def rewrap(self, name: str, blob: bytes) -> bytes | None:
        """`blob` with its data key wrapped under the active master key (a 0x01 value
        sealed anew as 0x02); None when it already is."""
        from flowloom.ledger.keyprovider import Envelope

        master = self._master()
        if not isinstance(master, Envelope):
            raise KeyFileError("re-wrapping provider keys needs a key provider")
        if blob[:1] == _ENVELOPED and len(blob) > 3:
            size = int.from_bytes(blob[1:3], "big")
            wrapped = blob[3 : 3 + size]
            renewed = master.rewrap(wrapped, self._aad(name))
            if renewed is None:
                return None
            return _ENVELOPED + len(renewed).to_bytes(2, "big") + renewed + blob[3 + size :]
        return self._seal_enveloped(master, name, self.open(name, blob))

    def open(self, name: str, blob: bytes) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        master = self._master()
        if blob[:1] == _ENVELOPED and isinstance(master, bytes):
            from flowloom.ledger.keys import in_memory_envelope

            master = in_memory_envelope(master)  # a 0x02 value wrapped under this key
        if blob[:1] == _ENVELOPED and len(blob) > 3 and not isinstance(master, bytes):
            size = int.from_bytes(blob[1:3], "big")
            wrapped, rest = blob[3 : 3 + size], blob[3 + size :]
            if len(rest) < _NONCE_SIZE + 16:
                raise KeyFileError(f"the stored provider key {name!r} is malformed")
            aead = AESGCM(self._data_key(master, name, wrapped))
            blob = _VERSION + rest
        elif blob[:1] == _VERSION and not isinstance(master, bytes):
            aead = self._legacy_cipher(master, name, blob)
        else:
            aead = self._cipher()
        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE_SIZE + 16:
            raise KeyFileError(f"the stored provider key {name!r} is malformed")
        nonce = blob[1 : 1 + _NONCE_SIZE]
        try:
            plain = aead.decrypt(nonce, blob[1 + _NONCE_SIZE :], self._aad(name))
        except InvalidTag as exc:
            raise KeyFileError(
                f"cannot decrypt the provider key {name!r}: wrong master key or damaged row",
                hint="set the key again: flowloom gateway providers set-key " + name,
            ) from exc
        return plain.decode("utf-8")

    def _legacy_cipher(self, envelope: Envelope, name: str, blob: bytes) -> AESGCM:
        """The cipher of a 0x01 value: derived from whichever master key file sealed it."""
        from cryptography.exceptions import InvalidTag

        nonce = blob[1 : 1 + _NONCE_SIZE]
        for key in envelope.keys.legacy():
            raw = getattr(key, "raw", None)
            if not isinstance(raw, bytes):
                continue
            aead = self._derived(raw)
            try:
                aead.decrypt(nonce, blob[1 + _NONCE_SIZE :], self._aad(name))
            except InvalidTag:
                continue
            return aead
        raise KeyFileError(
            f"cannot decrypt the provider key {name!r}: no master key file here sealed it",
            hint="set the key again: flowloom gateway providers set-key " + name,
        )
