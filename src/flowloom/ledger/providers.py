"""Which key providers an installation uses, from its KeySettings, and master-key rotation.

`open_key_providers` is called where services are wired (`flowloom.services`, the
server, the gateway); nothing else picks a provider. `rewrap_subject_keys` moves every
per-data-subject key under the active master key after a rotation, row by row with a
compare-and-swap, so it can run while others write and be run again after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowloom.config import KeySettings
from flowloom.errors import ConfigError, KeyFileError
from flowloom.ledger.keyprovider import Envelope, MasterKeys, SigningKeys
from flowloom.ledger.keys import FileMasterKeys, KeyStore

if TYPE_CHECKING:
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
    token = None
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
        signing = Pkcs11SigningKeys(token)
    master: MasterKeys = FileMasterKeys(files)
    if settings.master == "pkcs11":
        from flowloom.ledger.hsm import Pkcs11MasterKeys

        assert token is not None
        master = Pkcs11MasterKeys(token, settings.pkcs11_master_label)
    elif settings.master == "kms":
        from flowloom.ledger.kms import KmsMasterKeys

        master = KmsMasterKeys.connect(
            settings.kms_key_id, region=settings.kms_region, endpoint=settings.kms_endpoint
        )
    return KeyProviders(signing, master)


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
