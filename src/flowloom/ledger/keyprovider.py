"""Key providers: where the log's signing keys and the installation's master key are held.

Two roles, one interface each, so the rest of FlowLoom never asks where a key lives:

- `SigningKeys`: the Ed25519 keys that sign checkpoints and attest authority events.
  Providers: key files under FLOWLOOM_HOME (`flowloom.ledger.keys.KeyStore`, the
  default), a PKCS#11 token (`flowloom.ledger.hsm`) and AWS KMS
  (`flowloom.ledger.kmssign`). A key in a token or KMS signs there and never leaves it;
  the signed notes are the same bytes either way.
- `MasterKeys`: the envelope key that wraps data keys (per-data-subject body keys, the
  gateway's provider-key data keys). Providers: a key file, a PKCS#11 token (AES-256-GCM
  inside the token) and AWS KMS (`flowloom.ledger.kms`; Encrypt/Decrypt with an
  encryption context).

`Envelope` is what callers use: it wraps a data key under the active master key and
tags the result with that key's reference (``file:…``, ``pkcs11:…``, ``kms:…``), so a
rotation can make a new key active at once and re-wrap the old rows afterwards while
every row stays readable. Rows from before tagging (nonce || ciphertext under the
master key file) are still read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from flowloom.errors import KeyFileError, KeyMissingError

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer, Verifier

__all__ = [
    "Envelope",
    "MasterKey",
    "MasterKeys",
    "SigningKeys",
]

_MAGIC = b"FLMK\x01"
_LEGACY_SIZE = 12 + 32 + 16  # nonce || AES-GCM(32-byte key) || tag, untagged
_MAX_REF = 255


class SigningKeys(Protocol):
    """Finds or creates a log's Ed25519 signing keys (see `flowloom.ledger.keyring`)."""

    provider: str
    """"file", "pkcs11" or "kms": recorded in the ledger with each key it holds."""

    @property
    def location(self) -> str:
        """Where the keys are held, for messages."""
        ...

    def expected(self, name: str, key_id: bytes) -> str:
        """Where the key `name`+`key_id` was looked for, for a KeyMissingError."""
        ...

    def has_signer(self, origin: str) -> bool: ...

    def signer(self, origin: str) -> tuple[Signer, bool]:
        """The key in use for `origin`, and whether it was just generated."""
        ...

    def find(self, verifier: Verifier) -> Signer | None: ...

    def find_id(self, name: str, key_id: bytes) -> Signer | None: ...

    def active(self, origin: str) -> Signer | None: ...

    def generate(self, origin: str) -> Signer:
        """A new key, kept under its key id until `activate` puts it in use."""
        ...

    def archive(self, signer: Signer) -> None: ...

    def activate(self, signer: Signer) -> None: ...


class MasterKey(Protocol):
    """One master key: it encrypts small secrets (data keys) bound to a context."""

    @property
    def ref(self) -> str:
        """A stable, non-secret reference, recorded in the ledger and in each wrapped row."""
        ...

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, context: bytes) -> bytes:
        """The plaintext; KeyFileError when this key did not encrypt it for `context`."""
        ...


class MasterKeys(Protocol):
    """The master keys of one installation: the active one and those rotated out."""

    provider: str

    @property
    def location(self) -> str: ...

    def active(self, *, create: bool) -> MasterKey:
        """The key new rows are wrapped under; KeyMissingError without one (and not `create`)."""
        ...

    def find(self, ref: str) -> MasterKey | None:
        """The key `ref` names, if this provider can reach it."""
        ...

    def legacy(self) -> Sequence[MasterKey]:
        """Keys that may have wrapped untagged rows from before providers (key files)."""
        ...

    def rotate(self, to: str | None) -> tuple[MasterKey | None, MasterKey]:
        """Make a new key (or `to`, where the provider takes an existing key) the active
        one; return (old, new). Old keys stay reachable by `find`."""
        ...


class Envelope:
    """Wraps and unwraps data keys under an installation's master keys (tagged rows)."""

    def __init__(self, keys: MasterKeys, *, create: bool) -> None:
        self.keys = keys
        self._create = create
        self._found: dict[str, MasterKey] = {}
        # Unwrapped data keys, so sealing many bodies of one subject costs one call to
        # the token or KMS, not one each; bounded, and only ever in this process.
        self._unwrapped: dict[tuple[bytes, bytes], bytes] = {}

    def active(self) -> MasterKey:
        return self.keys.active(create=self._create)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """`data_key` encrypted under the active master key, tagged with its reference."""
        key = self.active()
        ref = key.ref.encode("ascii")
        if len(ref) > _MAX_REF:
            raise KeyFileError(f"master key reference {key.ref!r} is too long")
        return _MAGIC + bytes([len(ref)]) + ref + key.encrypt(data_key, context)

    @staticmethod
    def ref_of(wrapped: bytes) -> str | None:
        """The reference of the key that wrapped `wrapped`; None for an untagged row."""
        if not wrapped.startswith(_MAGIC) or len(wrapped) <= len(_MAGIC):
            return None
        size = wrapped[len(_MAGIC)]
        start = len(_MAGIC) + 1
        try:
            return wrapped[start : start + size].decode("ascii")
        except UnicodeDecodeError:
            return None

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key in `wrapped`, found under whichever master key wrapped it."""
        cached = self._unwrapped.get((wrapped, context))
        if cached is not None:
            return cached
        ref = self.ref_of(wrapped)
        if ref is None:
            data_key = self._unwrap_legacy(wrapped, context)
        else:
            payload = wrapped[len(_MAGIC) + 1 + len(ref) :]
            data_key = self._find(ref).decrypt(payload, context)
        if len(self._unwrapped) >= 4096:
            self._unwrapped.clear()
        self._unwrapped[(wrapped, context)] = data_key
        return data_key

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes | None:
        """`wrapped` wrapped anew under the active key; None when it already is."""
        if self.ref_of(wrapped) == self.active().ref:
            return None
        return self.wrap(self.unwrap(wrapped, context), context)

    def _find(self, ref: str) -> MasterKey:
        key = self._found.get(ref)
        if key is None:
            key = self.keys.find(ref)
            if key is None:
                raise KeyMissingError(
                    f"the master key {ref} that wrapped this data key is not reachable "
                    f"from {self.keys.location}",
                    hint="configure the key provider that holds it (docs/keys.md)",
                )
            self._found[ref] = key
        return key

    def _unwrap_legacy(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) != _LEGACY_SIZE:
            raise KeyFileError("a wrapped data key is malformed")
        candidates = self.keys.legacy()
        if not candidates:
            raise KeyMissingError(
                "this data key was wrapped under a master key file, and no master key "
                f"file is in {self.keys.location}",
                hint="set FLOWLOOM_HOME to the home that holds keys/master.key",
            )
        for key in candidates:
            try:
                return key.decrypt(wrapped, context)
            except KeyFileError:
                continue
        raise KeyFileError("cannot unwrap a data key: wrong master key or damaged key row")


MasterKeysLoader = Callable[[], MasterKeys]
