"""Which key providers an installation uses, from its KeySettings, and master-key rotation.

`open_key_providers` is called where services are wired (`flowloom.services`, the
server, the gateway); nothing else picks a provider. `rewrap_subject_keys` moves every
per-data-subject key under the active master key after a rotation, row by row with a
compare-and-swap, so it can run while others write and be run again after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowloom.config import KeySettings
from flowloom.errors import ConfigError, KeyFileError
from flowloom.ledger.keyprovider import Envelope, MasterKey, MasterKeys, SigningKeys
from flowloom.ledger.keys import FileMasterKeys, KeyStore

if TYPE_CHECKING:
    from flowloom.ledger.hsm import Token
    from flowloom.ledger.note import Signer, Verifier
    from flowloom.store.interface import Store

__all__ = ["MASTER_PURPOSE", "KeyProviders", "open_key_providers", "rewrap_subject_keys"]

MASTER_PURPOSE = "master key"
"""refs.purpose of the ``key.rotated`` events that record master-key rotations."""


@dataclass(frozen=True)
class KeyProviders:
    """The installation's signing keys and master keys."""

    signing: SigningKeys
    master: MasterKeys

    def envelope(self, *, create: bool) -> Envelope:
        return Envelope(self.master, create=create)


def open_key_providers(home: Path, settings: KeySettings | None = None) -> KeyProviders:
    """The providers `settings` select (key files under `home` by default)."""
    settings = settings or KeySettings()
    files = KeyStore(home)
    token: Token | None = None
    if "pkcs11" in (settings.signing, settings.master):
        from flowloom.ledger.hsm import Token

        if not settings.pkcs11_module or not settings.pkcs11_token:
            raise ConfigError(
                "keys in a PKCS#11 token need its module and token label",
                hint="set [keys] pkcs11_module and pkcs11_token (docs/keys.md)",
            )
        token = Token(settings.pkcs11_module, settings.pkcs11_token, settings.pin())
    signing: SigningKeys = files
    if settings.signing == "pkcs11":
        from flowloom.ledger.hsm import Pkcs11SigningKeys

        assert token is not None
        signing = SigningWithKeyFiles(Pkcs11SigningKeys(token), files)
    elif settings.signing == "kms":
        from flowloom.ledger.kmssign import KmsSigningKeys

        kms = KmsSigningKeys.connect(region=settings.kms_region, endpoint=settings.kms_endpoint)
        signing = SigningWithKeyFiles(kms, files)
    master: MasterKeys = FileMasterKeys(files)
    if settings.master != "file":
        master = _migrating(master, settings, token)
    return KeyProviders(signing, master)


def _migrating(files: MasterKeys, settings: KeySettings, token: Token | None) -> MasterKeys:
    master: MasterKeys = files
    if settings.master == "pkcs11":
        from flowloom.ledger.hsm import Pkcs11MasterKeys

        assert token is not None
        master = Pkcs11MasterKeys(token, settings.pkcs11_master_label)
    elif settings.master == "kms":
        from flowloom.ledger.kms import KmsMasterKeys

        master = KmsMasterKeys.connect(
            settings.kms_key_id, region=settings.kms_region, endpoint=settings.kms_endpoint
        )
    return WithKeyFiles(master, files)


class SigningWithKeyFiles:
    """Signing keys in a token that still finds this home's key files: a log pinned to a
    key file moves into the token by `flowloom keys rotate checkpoint` (the file key
    attests the rotation, the new key is generated in the token)."""

    def __init__(self, token: SigningKeys, files: SigningKeys) -> None:
        self.token = token
        self.files = files
        self.provider = token.provider

    @property
    def location(self) -> str:
        return self.token.location

    def expected(self, name: str, key_id: bytes) -> str:
        return (
            f"{self.token.expected(name, key_id)}, or in {self.files.location} "
            f"{self.files.expected(name, key_id)}"
        )

    def has_signer(self, origin: str) -> bool:
        return self.token.has_signer(origin)

    def signer(self, origin: str) -> tuple[Signer, bool]:
        return self.token.signer(origin)

    def find(self, verifier: Verifier) -> Signer | None:
        found = self.token.find(verifier)
        return found if found is not None else self.files.find(verifier)

    def find_id(self, name: str, key_id: bytes) -> Signer | None:
        found = self.token.find_id(name, key_id)
        return found if found is not None else self.files.find_id(name, key_id)

    def active(self, origin: str) -> Signer | None:
        return self.token.active(origin)

    def generate(self, origin: str) -> Signer:
        return self.token.generate(origin)

    def archive(self, signer: Signer) -> None:
        """A file key stays where it is; a token key is found by its id already."""

    def activate(self, signer: Signer) -> None:
        self.token.activate(signer)


class WithKeyFiles:
    """A master-key provider that still reads rows wrapped under this home's key files:
    moving from files to a token or KMS is `flowloom keys rewrap`, not a lost body."""

    def __init__(self, master: MasterKeys, files: MasterKeys) -> None:
        self.master = master
        self.files = files
        self.provider = master.provider

    @property
    def location(self) -> str:
        return self.master.location

    def active(self, *, create: bool) -> MasterKey:
        return self.master.active(create=create)

    def find(self, ref: str) -> MasterKey | None:
        found = self.master.find(ref)
        return found if found is not None else self.files.find(ref)

    def legacy(self) -> Sequence[MasterKey]:
        return [*self.master.legacy(), *self.files.legacy()]

    def rotate(self, to: str | None) -> tuple[MasterKey | None, MasterKey]:
        return self.master.rotate(to)


@dataclass(frozen=True)
class Rewrapped:
    """What a re-wrap did: rows moved under the active key, rows already there, rows that
    changed meanwhile (left to their writer)."""

    moved: int
    current: int
    skipped: int


def rewrap_subject_keys(store: Store, envelope: Envelope) -> Rewrapped:
    """Wrap every subject key in `store` under the envelope's active master key."""
    moved = current = skipped = 0
    for log, subject, wrapped in store.subject_keys():
        try:
            renewed = envelope.rewrap(wrapped, subject.encode())
        except KeyFileError as exc:
            raise KeyFileError(
                f"cannot re-wrap the key of {subject} in log {log!r}: {exc.message}",
                hint="nothing was lost: the rows done so far are under the new key, the "
                "rest under the old; run the command again once the old key is reachable",
            ) from exc
        if renewed is None:
            current += 1
        elif store.replace_subject_key(log, subject, wrapped, renewed):
            moved += 1
        else:
            skipped += 1
    return Rewrapped(moved, current, skipped)
