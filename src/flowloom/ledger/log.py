"""The ledger service: record events, sign checkpoints, prove, erase.

One Ledger serves one log (one project). It turns what a caller wants recorded into a
validated canonical envelope with its body sealed beside it, hands it to the log
writer, and answers for the tree: checkpoints are signed only over data already
durable in the store and only when consistent with the previous checkpoint.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowloom.errors import (
    BodyTooLargeError,
    InputError,
    KeyMissingError,
    NotFoundError,
    VerificationError,
)
from flowloom.ledger import merkle
from flowloom.ledger.attest import attest, is_authority_kind
from flowloom.ledger.body import SealedBody, commit_body, subject_pseudonym
from flowloom.ledger.event import Actor, Event, GitContext, format_ts
from flowloom.ledger.writer import Ack, LogWriter
from flowloom.store.interface import (
    NodeLookup,
    PendingEntry,
    Store,
    StoredBody,
    StoredCheckpoint,
    StoredEntry,
)

if TYPE_CHECKING:
    from flowloom.ledger.body import BodyCipher
    from flowloom.ledger.keyring import Keyring
    from flowloom.ledger.note import Signer, Verifier
    from flowloom.ledger.receipt import Receipt

__all__ = ["META_FIELDS", "EnvelopeSigner", "Ledger", "Prepared", "Rotation"]

# Envelope fields a caller may set through --meta; the rest FlowLoom sets itself.
META_FIELDS = frozenset({"actor", "session", "git", "subject", "refs"})

Clock = Callable[[], datetime]
# Keys are loaded on first use: recording a plain event (what hooks do on every prompt)
# needs neither the signing key nor OpenSSL.
SignerLoader = Callable[[], "Signer"]
CipherLoader = Callable[[], "BodyCipher"]
EnvelopeSigner = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Adds a person's own signature to an envelope (git SSH signing; ledger/provenance.py)."""


@dataclass(frozen=True)
class Prepared:
    """A validated event with its sealed body, ready for the writer."""

    event: Event
    entry: PendingEntry


@dataclass(frozen=True)
class Rotation:
    """A key rotation done: the two keys, the key.rotated entry, the new key's checkpoint."""

    old: Verifier
    new: Verifier
    index: int
    checkpoint: StoredCheckpoint


class Ledger:
    """Records into, and answers for, one log.

    With a `keyring` (what services build), the log's signing key is the one its own
    history pins (`flowloom.ledger.keyring`): the first write to a brand-new log pins
    one (a ``key.generated`` entry before it), and a home without the log's key cannot
    sign or attest. A plain `signer` loader is for tests and tools over a single key.
    """

    def __init__(
        self,
        store: Store,
        *,
        log: str,
        origin: str,
        signer: SignerLoader | None = None,
        cipher: CipherLoader,
        actor: Mapping[str, Any],
        max_body_bytes: int,
        writer: LogWriter | None = None,
        clock: Clock | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        if (signer is None) == (keyring is None):
            raise TypeError("give a Ledger either a signer loader or a keyring")
        self.store = store
        self.log = log
        self.origin = origin
        self.keyring = keyring
        self._load_signer = signer
        self._load_cipher = cipher
        self._signer: Signer | None = None
        self._cipher: BodyCipher | None = None
        self._actor = dict(actor)
        self._actor_event: Actor | None = None
        self._max_body = max_body_bytes
        self.writer = writer or LogWriter(store, log)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pin_lock = threading.RLock()
        self._pin_done = False
        self._pin_running = False
        if keyring is not None:
            self.writer.before_first_append = self._pin_new_log

    @property
    def signer(self) -> Signer:
        """The log's signing key now (KeyMissingError when this home lacks it)."""
        if self.keyring is not None:
            return self.keyring.signer()
        if self._signer is None:
            assert self._load_signer is not None
            self._signer = self._load_signer()
        return self._signer

    @property
    def cipher(self) -> BodyCipher:
        if self._cipher is None:
            self._cipher = self._load_cipher()
        return self._cipher

    @property
    def verifier(self) -> Verifier:
        """The log's public key now; needs no private key when the log pins its key."""
        if self.keyring is None:
            return self.signer.verifier()
        found = self.keyring.verifier()
        if found is None:
            raise NotFoundError(
                f"log {self.log!r} has no signing key yet: nothing has been recorded in it"
            )
        return found

    def current_verifier(self) -> Verifier | None:
        """The log's public key now, or None when it has none yet (nothing recorded)."""
        try:
            return self.verifier
        except (NotFoundError, KeyMissingError):
            return None

    # -- the log's key -----------------------------------------------------------------

    def _pin_new_log(self) -> None:
        """Before the first write to a brand-new log: generate its key and pin it.

        Called once per Ledger (by the writer before its first append, and before an
        attestation or a checkpoint); a log that already has entries is left as it is,
        so a home without the log's key never adds a second one.
        """
        if self.keyring is None or self._pin_done:
            return
        with self._pin_lock:
            if self._pin_done or self._pin_running:
                return  # done meanwhile, or this very call appending the pin
            self._pin_running = True
            try:
                signer = self.keyring.new_log_signer()
                if signer is not None:
                    from flowloom.ledger.keyring import generated_meta

                    meta = generated_meta(signer.verifier(), self.keyring.keys.provider)
                    prepared = self._prepare("key.generated", None, meta)
                    event = Event.from_json(attest(prepared.event.to_json(), signer))
                    self.writer.append_many([self._pending(event, None)])
                self._pin_done = True
            finally:
                self._pin_running = False

    def require_signer(self) -> Signer:
        """The log's key, for a command whose use is itself recorded with an attestation
        (a report, an export): asked for first, so that without it nothing is written."""
        self._pin_new_log()
        return self.signer

    def rotate_key(self, *, reason: str, actor: Mapping[str, Any] | None = None) -> Rotation:
        """Replace the log's signing key: ``key.rotated`` attested by the old key, then
        the new key takes over and signs a checkpoint covering the rotation.

        The old key stays in the key store under its key id, so what it signed still
        verifies.
        """
        from flowloom.ledger.keyring import rotated_meta

        if self.keyring is None:
            raise InputError("this ledger has no keyring to rotate")
        if not reason.strip():
            raise InputError("a key rotation needs a reason")
        history = self.keyring.history()
        if history.current is None:
            raise InputError(
                f"log {self.log!r} pins no signing key (no key.generated event): nothing to rotate"
            )
        old = self.keyring.signer()  # KeyMissingError before anything is written
        keys = self.keyring.keys
        new = keys.generate(old.name)
        keys.archive(old)
        meta: dict[str, Any] = rotated_meta(
            old.verifier(), new.verifier(), reason.strip(), keys.provider
        )
        if actor is not None:
            meta["actor"] = dict(actor)
        ack = self.record("key.rotated", meta=meta)
        keys.activate(new)
        return Rotation(old.verifier(), new.verifier(), ack.index, self._checkpoint())

    # -- recording -------------------------------------------------------------------

    def prepare(
        self,
        kind: str,
        *,
        body: bytes | None = None,
        meta: Mapping[str, Any] | None = None,
        data_subject: str | None = None,
        sign: EnvelopeSigner | None = None,
        ts: str | None = None,
    ) -> Prepared:
        """Validate and seal an event without storing anything.

        `sign` returns the envelope with the acting person's signature added; it runs
        before the log's attestation, which then covers that signature too. `ts` is when
        the event happened when that was not now: a hook's time, kept while its event
        waited in the spool (validated like any timestamp); the log's order stays the
        order of appending.
        """
        if is_authority_kind(kind):
            self._pin_new_log()  # the attesting key of a brand-new log is pinned first
        prepared = self._prepare(kind, body, meta, data_subject, ts)
        event = prepared.event
        if sign is not None:
            event = Event.from_json(sign(event.to_json()))
        if is_authority_kind(kind):
            # Written here, by FlowLoom's own code: bind the log key's attestation in, so
            # readers can tell it from an event someone appended by hand (ledger/attest.py).
            event = Event.from_json(attest(event.to_json(), self.signer))
        if event is prepared.event:
            return prepared
        return Prepared(event, self._pending(event, prepared.entry.body))

    def _prepare(
        self,
        kind: str,
        body: bytes | None,
        meta: Mapping[str, Any] | None,
        data_subject: str | None = None,
        ts: str | None = None,
    ) -> Prepared:
        meta = dict(meta or {})
        unknown = sorted(set(meta) - META_FIELDS)
        if unknown:
            raise InputError(
                f"--meta has fields FlowLoom sets itself or does not know: {', '.join(unknown)}",
                hint=f"allowed: {', '.join(sorted(META_FIELDS))}",
            )
        sealed: SealedBody | None = None
        if body is not None:
            if len(body) > self._max_body:
                raise BodyTooLargeError(
                    f"body is {len(body)} bytes, over the limit of {self._max_body}",
                    hint="raise max_body_bytes in the config, or store a reference instead",
                )
            sealed = self._seal(body, data_subject)
        elif data_subject is not None:
            raise InputError("a data subject was given but there is no body to protect")
        event = self._event(
            kind,
            ts if ts is not None else format_ts(self._clock()),
            meta,
            sealed.digest if sealed is not None else None,
        )
        return Prepared(event, self._pending(event, sealed.stored if sealed else None))

    def _event(self, kind: str, ts: str, meta: Mapping[str, Any], digest: str | None) -> Event:
        """The envelope, built field by field: the same checks and bytes as
        `Event.from_json` of the assembled object, without assembling and re-reading it
        (the ledger's own actor is read once); this is on every append's path."""
        if None in meta.values():
            key = next(key for key, value in meta.items() if value is None)
            raise InputError(f"event field '{key}' is null; omit it instead")
        if "actor" in meta:
            actor = Actor.from_json(meta["actor"])
        else:
            if self._actor_event is None:
                self._actor_event = Actor.from_json(self._actor)
            actor = self._actor_event
        git = meta.get("git")
        extra: dict[str, Any] = {"refs": meta["refs"]} if "refs" in meta else {}
        return Event(
            kind=kind,
            ts=ts,
            project=self.log,
            actor=actor,
            session=meta.get("session"),
            git=None if git is None else GitContext.from_json(git),
            subject=meta.get("subject"),
            body=digest,
            **extra,
        )

    @staticmethod
    def _pending(event: Event, body: StoredBody | None) -> PendingEntry:
        canonical = event.canonical()
        return PendingEntry(
            envelope=canonical, leaf_hash=merkle.leaf_hash(canonical), kind=event.kind, body=body
        )

    def record(
        self,
        kind: str,
        *,
        body: bytes | None = None,
        meta: Mapping[str, Any] | None = None,
        data_subject: str | None = None,
    ) -> Ack:
        """Append one event durably; returns once it is on disk."""
        prepared = self.prepare(kind, body=body, meta=meta, data_subject=data_subject)
        return self.writer.append_many([prepared.entry])[0]

    def _seal(self, body: bytes, data_subject: str | None) -> SealedBody:
        if data_subject is None:
            return commit_body(body)
        pseudonym = subject_pseudonym(self.log, data_subject)
        wrapped = self.store.subject_key(self.log, pseudonym)
        if wrapped is None:
            wrapped = self.store.put_subject_key(
                self.log, pseudonym, self.cipher.new_wrapped_key(pseudonym)
            )
        return self.cipher.seal(body, pseudonym, wrapped)

    # -- reading ---------------------------------------------------------------------

    def size(self) -> int:
        return self.store.size(self.log)

    def entry(self, index: int) -> StoredEntry:
        found = self.store.entry(self.log, index)
        if found is None:
            raise NotFoundError(f"entry {index} does not exist (the log has {self.size()})")
        return found

    def read_body(self, digest: str) -> bytes | None:
        """The plaintext body for `digest`, or None when it was erased or never stored."""
        stored = self.store.body(digest)
        return None if stored is None else self.open_stored(stored)

    def open_stored(self, stored: StoredBody) -> bytes | None:
        """The plaintext of a stored body, or None when its subject's key was destroyed."""
        if stored.subject is None:
            return stored.content
        wrapped = self.store.subject_key(self.log, stored.subject)
        if wrapped is None:
            return None
        return self.cipher.decrypt(stored, wrapped)

    # -- checkpoints and proofs --------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """Sign the durable tree; returns the latest checkpoint if nothing was added."""
        self._pin_new_log()
        return self._checkpoint()

    def _checkpoint(self) -> StoredCheckpoint:
        return self.store.add_checkpoint(self.log, self._sign)

    def _sign(
        self, size: int, lookup: NodeLookup, latest: StoredCheckpoint | None
    ) -> StoredCheckpoint:
        root = merkle.root_at(size, lookup)
        if latest is not None:
            if size < latest.size:
                raise VerificationError(
                    f"the database holds {size} entries but checkpoint {latest.size} was "
                    "signed: it was rolled back or truncated; refusing to sign",
                    hint="run 'flowloom log verify'",
                )
            if size == latest.size:
                if root != latest.root:
                    raise VerificationError(
                        f"the tree at size {size} no longer matches its signed checkpoint; "
                        "refusing to sign",
                        hint="run 'flowloom log verify'",
                    )
                return latest
            if latest.size > 0:
                proof = merkle.consistency_proof(latest.size, size, lookup)
                try:
                    merkle.verify_consistency(latest.size, size, proof, latest.root, root)
                except VerificationError as exc:
                    raise VerificationError(
                        f"the tree is not consistent with checkpoint {latest.size}; "
                        "refusing to sign",
                        hint="run 'flowloom log verify'",
                    ) from exc
        from flowloom.ledger.checkpoint import Checkpoint, sign_checkpoint

        # The key that was the log's key once these `size` entries were written: after a
        # rotation the new key, whatever this process loaded before.
        signer = self.keyring.signer(size) if self.keyring is not None else self.signer
        note = sign_checkpoint(Checkpoint(signer.name, size, root), signer)
        return StoredCheckpoint(size, root, note)

    def checkpoint_at(self, size: int | None, *, covering: int = 0) -> StoredCheckpoint:
        """The stored checkpoint at `size`, or the latest (signed now if the log grew).

        Signing needs the log's key; without it the latest stored checkpoint is used if
        it covers entry `covering`, and KeyMissingError says which key is needed if not.
        A log with no key yet (nothing recorded) has nothing to sign: NotFoundError.
        """
        if size is None:
            latest = self.store.latest_checkpoint(self.log)
            if latest is None or latest.size < self.size():
                try:
                    latest = self._checkpoint()
                except KeyMissingError:
                    if latest is None or latest.size <= covering:
                        raise
            return latest
        for stored in self.store.checkpoints(self.log):
            if stored.size == size:
                return stored
        sizes = ", ".join(str(c.size) for c in self.store.checkpoints(self.log)) or "none"
        raise NotFoundError(
            f"no checkpoint at size {size}", hint=f"checkpoints exist at sizes: {sizes}"
        )

    def lookup(self) -> NodeLookup:
        return lambda ids: self.store.nodes(self.log, ids)

    def prove(self, index: int, size: int | None = None) -> Receipt:
        """A tlog-proof receipt for entry `index` under a signed checkpoint."""
        if index < 0:
            raise InputError("the index must not be negative")
        checkpoint = self.checkpoint_at(size, covering=index)
        if index >= checkpoint.size:
            raise NotFoundError(
                f"entry {index} is not covered by checkpoint {checkpoint.size}",
                hint="sign a newer checkpoint with 'flowloom log checkpoint'",
            )
        from flowloom.ledger.receipt import Receipt

        proof = merkle.inclusion_proof(index, checkpoint.size, self.lookup())
        return Receipt(index=index, proof=proof, checkpoint=checkpoint.note)

    def consistency(self, old: int, new: int | None = None) -> tuple[StoredCheckpoint, list[bytes]]:
        """Proof that the tree at `old` is a prefix of the checkpointed tree at `new`."""
        target = self.checkpoint_at(new, covering=max(old - 1, 0))
        if old < 0 or old > target.size:
            raise InputError(f"old size {old} must be between 0 and {target.size}")
        proof = merkle.consistency_proof(old, target.size, self.lookup()) if old else []
        return target, proof

    # -- erasure -----------------------------------------------------------------------

    def erase(
        self, data_subject: str, *, reason: str, meta: Mapping[str, Any] | None = None
    ) -> Ack:
        """Erase a data subject's bodies; the tombstone is recorded first, then the keys go."""
        if not reason.strip():
            raise InputError("an erasure needs a reason")
        pseudonym = subject_pseudonym(self.log, data_subject)
        digests = self.store.body_digests(self.log, pseudonym)
        refs = {"subject": pseudonym, "bodies": digests, "reason": reason}
        merged = dict(meta or {})
        merged["refs"] = {**dict(merged.get("refs", {})), **refs}
        ack = self.record("erasure.tombstone", meta=merged)
        self.store.delete_bodies(self.log, pseudonym)
        return ack


def consistency_text(old: int, proof: Sequence[bytes], note: str) -> str:
    """A consistency proof in the tlog-witness add-checkpoint shape: old, hashes, note."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return "\n".join(lines) + "\n\n" + note
