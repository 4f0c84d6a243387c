"""The ledger service: record events, sign checkpoints, prove, erase.

One Ledger serves one log (one project). It turns what a caller wants recorded into a
validated canonical envelope with its body sealed beside it, hands it to the log
writer, and answers for the tree: checkpoints are signed only over data already
durable in the store and only when consistent with the previous checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowloom.errors import (
    BodyTooLargeError,
    InputError,
    NotFoundError,
    VerificationError,
)
from flowloom.ledger import merkle
from flowloom.ledger.attest import attest, is_authority_kind
from flowloom.ledger.body import SealedBody, commit_body, subject_pseudonym
from flowloom.ledger.event import Event, format_ts
from flowloom.ledger.writer import Ack, LogWriter
from flowloom.store.interface import (
    NodeLookup,
    PendingEntry,
    Store,
    StoredCheckpoint,
    StoredEntry,
)

if TYPE_CHECKING:
    from flowloom.ledger.body import BodyCipher
    from flowloom.ledger.note import Signer, Verifier
    from flowloom.ledger.receipt import Receipt

__all__ = ["META_FIELDS", "EnvelopeSigner", "Ledger", "Prepared"]

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


class Ledger:
    """Records into, and answers for, one log."""

    def __init__(
        self,
        store: Store,
        *,
        log: str,
        origin: str,
        signer: SignerLoader,
        cipher: CipherLoader,
        actor: Mapping[str, Any],
        max_body_bytes: int,
        writer: LogWriter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.log = log
        self.origin = origin
        self._load_signer = signer
        self._load_cipher = cipher
        self._signer: Signer | None = None
        self._cipher: BodyCipher | None = None
        self._actor = dict(actor)
        self._max_body = max_body_bytes
        self.writer = writer or LogWriter(store, log)
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = self._load_signer()
        return self._signer

    @property
    def cipher(self) -> BodyCipher:
        if self._cipher is None:
            self._cipher = self._load_cipher()
        return self._cipher

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()

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
        envelope: dict[str, Any] = {
            "v": 1,
            "kind": kind,
            "ts": ts if ts is not None else format_ts(self._clock()),
            "project": self.log,
            "actor": self._actor,
        }
        envelope.update(meta)
        if sealed is not None:
            envelope["body"] = sealed.digest
        event = Event.from_json(envelope)
        if sign is not None:
            event = Event.from_json(sign(event.to_json()))
        if is_authority_kind(kind):
            # Written here, by FlowLoom's own code: bind the log key's attestation in, so
            # readers can tell it from an event someone appended by hand (ledger/attest.py).
            event = Event.from_json(attest(event.to_json(), self.signer))
        canonical = event.canonical()
        return Prepared(
            event,
            PendingEntry(
                envelope=canonical,
                leaf_hash=merkle.leaf_hash(canonical),
                kind=event.kind,
                body=sealed.stored if sealed is not None else None,
            ),
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
        if stored is None:
            return None
        if stored.subject is None:
            return stored.content
        wrapped = self.store.subject_key(self.log, stored.subject)
        if wrapped is None:
            return None
        return self.cipher.decrypt(stored, wrapped)

    # -- checkpoints and proofs --------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """Sign the durable tree; returns the latest checkpoint if nothing was added."""
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

        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        return StoredCheckpoint(size, root, note)

    def checkpoint_at(self, size: int | None) -> StoredCheckpoint:
        """The stored checkpoint at `size`, or the latest (signing one if none exists)."""
        if size is None:
            latest = self.store.latest_checkpoint(self.log)
            if latest is None or latest.size < self.size():
                latest = self.checkpoint()
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
        checkpoint = self.checkpoint_at(size)
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
        target = self.checkpoint_at(new)
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
