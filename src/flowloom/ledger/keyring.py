"""A log's signing keys, read from the log itself: one key, pinned, changed only by rotation.

The first ``key.generated`` event of a log pins its key (``refs.vkey``). The key changes
only by a ``key.rotated`` event (``refs.old_vkey``, ``refs.new_vkey``, ``refs.reason``)
attested by the key it replaces (`flowloom.ledger.attest`); a rotation that is not, a
second ``key.generated`` naming another key, or a malformed key event is ignored and
reported. A checkpoint over ``size`` entries must be signed by the key that was the
log's key once those entries were written (`KeyHistory.at`), so a checkpoint signed by
any other key fails verification, and a home that lacks the log's key cannot sign at all
(`Keyring.signer` says which key and where it was expected; it never mints another).

`log_keys` reads the history with two indexed queries (entries by kind). Importing this
module stays light: the verifier keys are parsed, and OpenSSL loaded, only when read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import FlowLoomError, KeyMissingError, NotFoundError

if TYPE_CHECKING:
    from flowloom.ledger.keyprovider import SigningKeys
    from flowloom.ledger.note import Signer, Verifier
    from flowloom.store.interface import Store

__all__ = [
    "KEY_GENERATED",
    "KEY_PURPOSE",
    "KEY_ROTATED",
    "KeyHistory",
    "Keyring",
    "LogKey",
    "generated_meta",
    "key_name",
    "log_keys",
    "rotated_meta",
]

KEY_GENERATED: Final = "key.generated"
KEY_ROTATED: Final = "key.rotated"
KEY_PURPOSE: Final = "checkpoint signing"


def key_name(verifier: Verifier) -> str:
    """How a key is named in messages: ``<name>+<8 hex key id>`` (a note's key line)."""
    return f"{verifier.name}+{verifier.key_id.hex()}"


def generated_meta(verifier: Verifier, provider: str | None = None) -> dict[str, Any]:
    """The envelope fields of the ``key.generated`` event that pins `verifier`.

    `provider` ("file", "pkcs11") records where the private key is held.
    """
    refs: dict[str, Any] = {"vkey": verifier.vkey, "purpose": KEY_PURPOSE}
    if provider is not None:
        refs["provider"] = provider
    return {
        "actor": {"type": "service", "id": "flowloom"},
        "subject": verifier.name,
        "refs": refs,
    }


def rotated_meta(
    old: Verifier, new: Verifier, reason: str, provider: str | None = None
) -> dict[str, Any]:
    """The envelope fields (but the actor) of a ``key.rotated`` event from `old` to `new`."""
    refs: dict[str, Any] = {
        "old_vkey": old.vkey,
        "new_vkey": new.vkey,
        "reason": reason,
        "purpose": KEY_PURPOSE,
    }
    if provider is not None:
        refs["provider"] = provider
    return {"subject": old.name, "refs": refs}


@dataclass(frozen=True)
class LogKey:
    """One key of a log, and the entry that made it the log's key."""

    verifier: Verifier
    since: int
    """Index of the ``key.generated``/``key.rotated`` entry that made it the log's key:
    checkpoints over more entries than that (so covering that entry) are signed by it,
    until the next rotation."""

    @property
    def key(self) -> str:
        return key_name(self.verifier)


@dataclass(frozen=True)
class KeyHistory:
    """A log's keys in order (pinned first), and what was wrong with its key events."""

    all: tuple[LogKey, ...] = ()
    problems: list[str] = field(default_factory=list)

    @property
    def pinned(self) -> Verifier | None:
        """The key the log's first ``key.generated`` pinned; None for a log without one."""
        return self.all[0].verifier if self.all else None

    @property
    def current(self) -> Verifier | None:
        """The log's key now: the pinned key or the last one rotated to."""
        return self.all[-1].verifier if self.all else None

    @property
    def verifiers(self) -> tuple[Verifier, ...]:
        return tuple(k.verifier for k in self.all)

    def at(self, size: int) -> Verifier | None:
        """The key that must sign a checkpoint over `size` entries.

        That is the last key made the log's key by one of those entries; the pinned key
        when none of them is a key event (entries recorded before the pin). It is also
        the key that attests entry number `size` (a ``key.rotated`` is attested by the
        key it replaces, the pinning ``key.generated`` by the key it pins).
        """
        found = self.all[0].verifier if self.all else None
        for key in self.all:
            if key.since < size:
                found = key.verifier
        return found


def _parse(vkey: object) -> Verifier | None:
    from flowloom.ledger.note import Verifier  # loads OpenSSL: only when reading keys

    if not isinstance(vkey, str):
        return None
    try:
        return Verifier.from_vkey(vkey)
    except FlowLoomError:
        return None


def log_keys(store: Store, log: str) -> KeyHistory:
    """The key history of `log`, from its ``key.generated`` and ``key.rotated`` events."""
    from flowloom.ledger.attest import attestation_of, attested_by

    events = sorted(
        chain(store.entries(log, kind=KEY_GENERATED), store.entries(log, kind=KEY_ROTATED)),
        key=lambda e: e.index,
    )
    keys: list[LogKey] = []
    problems: list[str] = []
    for entry in events:
        at = f"entry {entry.index}: {entry.kind}"
        try:
            envelope = json.loads(entry.envelope)
        except ValueError:
            problems.append(f"{at} is not valid JSON; ignored")
            continue
        refs = envelope.get("refs") if isinstance(envelope, dict) else None
        if not isinstance(refs, Mapping):
            problems.append(f"{at} names no key; ignored")
            continue
        if refs.get("purpose", KEY_PURPOSE) != KEY_PURPOSE:
            continue  # another key's lifecycle (the master key): not the log's signing key
        if entry.kind == KEY_GENERATED:
            verifier = _parse(refs.get("vkey"))
            if verifier is None:
                problems.append(f"{at} names no valid verifier key; ignored")
            elif not keys:
                if attestation_of(envelope) is not None and not attested_by(envelope, [verifier]):
                    problems.append(
                        f"{at} pins key {key_name(verifier)} but is not attested by that key"
                    )
                keys.append(LogKey(verifier, entry.index))
            elif verifier != keys[0].verifier:
                problems.append(
                    f"{at} names key {key_name(verifier)}, but the log is pinned to "
                    f"{keys[0].key} by entry {keys[0].since}; ignored (a log's key changes "
                    "only by key.rotated)"
                )
            continue
        if not keys:
            problems.append(f"{at} comes before any key.generated; ignored")
            continue
        current = keys[-1]
        new = _parse(refs.get("new_vkey"))
        if new is None:
            problems.append(f"{at} names no valid new key; ignored")
        elif attested_by(envelope, [current.verifier]) is None:
            problems.append(
                f"{at} to {key_name(new)} is not attested by the log's key then, "
                f"{current.key}; ignored"
            )
        elif refs.get("old_vkey") != current.verifier.vkey:
            problems.append(f"{at} does not name the log's key then, {current.key}; ignored")
        elif new.name != current.verifier.name:
            problems.append(f"{at} names a key of another log ({new.name!r}); ignored")
        elif any(new == k.verifier for k in keys):
            problems.append(f"{at} returns to key {key_name(new)}, used before; ignored")
        else:
            keys.append(LogKey(new, entry.index))
    return KeyHistory(tuple(keys), problems)


class Keyring:
    """Finds the private keys of one log in one KeyStore, as the log's history says.

    Only a writer (`create`) may generate a key, and only for a brand-new, empty log;
    everything else asks for the log's own key and, when this home lacks it, raises
    KeyMissingError naming the key and where it was expected.
    """

    def __init__(
        self, store: Store, log: str, origin: str, keys: SigningKeys, *, create: bool
    ) -> None:
        self.store = store
        self.log = log
        self.origin = origin
        self.keys = keys
        self.create = create
        self._loaded: dict[bytes, Signer] = {}
        self._cached: tuple[int, KeyHistory] | None = None

    def history(self) -> KeyHistory:
        """The log's key history, read again whenever the log has grown."""
        size = self.store.size(self.log)
        cached = self._cached
        if cached is not None and cached[0] == size:
            return cached[1]
        history = log_keys(self.store, self.log)
        self._cached = (size, history)
        return history

    def verifier(self) -> Verifier | None:
        """The log's key now; None when it has none yet (nothing recorded)."""
        current = self.history().current
        if current is not None:
            return current
        legacy = self._legacy()
        return legacy.verifier() if legacy is not None else None

    def signer(self, size: int | None = None) -> Signer:
        """The private key that signs for the log now, or for a checkpoint over `size`."""
        history = self.history()
        wanted = history.current if size is None else history.at(size)
        if wanted is None:
            legacy = self._legacy()
            if legacy is not None:
                return legacy
            raise self._unpinned()
        signer = self._loaded.get(wanted.key_id)
        if signer is None or signer.verifier() != wanted:
            signer = self.keys.find(wanted)
            if signer is None:
                raise self.missing(wanted)
            self._loaded[wanted.key_id] = signer
        return signer

    def new_log_signer(self) -> Signer | None:
        """The key to pin for the first write to a brand-new log (generated if needed).

        None when this keyring may not create keys or the log already has entries.
        """
        if not self.create or self.store.size(self.log) != 0:
            return None
        signer, _ = self.keys.signer(self.origin)
        return signer

    def missing(self, wanted: Verifier) -> KeyMissingError:
        """The error for a home that lacks the log's key `wanted`."""
        return KeyMissingError(
            f"log {self.log!r} is signed by key {key_name(wanted)} ({wanted.vkey}), which is "
            f"not in {self.keys.location} (expected "
            f"{self.keys.expected(wanted.name, wanted.key_id)})",
            hint="FlowLoom never makes a second key for a log: set FLOWLOOM_HOME (or the key "
            "provider, docs/keys.md) to where this one is held, or copy its key file there; "
            "nothing was written",
        )

    def _unpinned(self) -> FlowLoomError:
        size = self.store.size(self.log)
        if size == 0:
            return NotFoundError(
                f"log {self.log!r} has no signing key yet: nothing has been recorded in it"
            )
        return KeyMissingError(
            f"log {self.log!r} has {size} entries but pins no signing key (no key.generated "
            f"event), and {self.keys.location} holds no key that signed its latest "
            f"checkpoint (or, before any, the key in use for {self.origin})",
            hint="set FLOWLOOM_HOME to the home that holds its key; nothing was written",
        )

    def _legacy(self) -> Signer | None:
        """A log from before keys were pinned (no key event): the key here that signed its
        latest checkpoint, or, with none yet, the home's key for its origin."""
        if self.store.size(self.log) == 0:
            return None
        latest = self.store.latest_checkpoint(self.log)
        if latest is None:
            return self.keys.active(self.origin)
        from flowloom.ledger.note import open_note, parse_note

        try:
            signatures = parse_note(latest.note)[1]
        except FlowLoomError:
            return None
        for signature in signatures:
            signer = self.keys.find_id(signature.name, signature.key_id)
            if signer is None:
                continue
            try:
                open_note(latest.note, [signer.verifier()])
            except FlowLoomError:
                continue
            return signer
        return None
