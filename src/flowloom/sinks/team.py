"""The team's record as a ledger: reads from the mirror, writes through the outbox.

In server mode the commands that record for the user (`flowloom decide`, `decision
approve`, an override, memory changes, an auto-commit, `ci record`) are the same code as
without a server: they call `Ledger.prepare` and `Ledger.writer`. `TeamLedger` is the
ledger they get then. Its store is the mirror of the server's log
(`flowloom.client.mirror`), so what they read — decisions to approve, links, memory — is
the team's record; its writer (`OutboxWriter`) turns each prepared entry into an outbox
event and sends the outbox at once (`flowloom.sinks.record`), so the server appends it
in order, exactly once (the outbox's event ids), after everything spooled before it.

The server writes the envelope (actor from the API key, its own salt and attestation),
so an entry prepared here is a proposal: the acknowledgement carries the server's index,
and the entry as stored is read back from the mirror. Authority kinds are not attested
here (no local key speaks for the server); a person-signed one travels as signed for the
server to verify. When the server is out of reach the event stays queued
(`Ack.queued`) and goes with the next hook run, drainer or `flowloom sync`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from flowloom.client.link import ServerLink
from flowloom.client.mirror import Mirror, MirrorState
from flowloom.errors import InputError, NotFoundError, PermissionDeniedError
from flowloom.ledger.event import Event
from flowloom.ledger.log import EnvelopeSigner, Ledger, Prepared
from flowloom.ledger.provenance import SSH_SIGNATURE_FIELD
from flowloom.ledger.writer import Ack, LogWriter
from flowloom.sinks.record import Recorded, record_via_server
from flowloom.store.interface import PendingEntry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier

__all__ = ["OutboxWriter", "TeamLedger", "outbox_event", "queued_subjects"]


def outbox_event(entry: PendingEntry) -> dict[str, Any]:
    """The outbox (spool) event that asks the server to append `entry`."""
    envelope = json.loads(entry.envelope)
    refs = envelope.get("refs")
    if isinstance(refs, dict) and isinstance(refs.get(SSH_SIGNATURE_FIELD), str):
        return {
            "kind": entry.kind,
            "ts": envelope["ts"],
            "signed_envelope": entry.envelope.decode("utf-8"),
        }
    meta = {k: envelope[k] for k in ("actor", "session", "git", "subject", "refs") if k in envelope}
    event: dict[str, Any] = {"kind": entry.kind, "ts": envelope["ts"], "meta": meta}
    if entry.body is not None:
        if entry.body.nonce is not None:
            raise InputError(
                "a body kept for a data subject cannot be sent to the team server from here",
                hint="record it without --data-subject, or on the server",
            )
        try:
            event["body"] = entry.body.content.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(
                "a binary body cannot be sent through the outbox", hint="send text"
            ) from None
    return event


class OutboxWriter(LogWriter):
    """A LogWriter whose appends go through the outbox to the server (see module doc)."""

    def __init__(self, link: ServerLink, mirror: Mirror, *, agent: str = "cli") -> None:
        super().__init__(mirror.store, link.project)
        self.link = link
        self.mirror = mirror
        self.agent = agent
        self.last: Recorded | None = None
        self.mirror_state: MirrorState | None = None
        self.ledger: TeamLedger | None = None
        self.lock_held = False
        """The caller holds the spool lock (an auto-commit): send without taking it."""

    def append_many(self, entries: Sequence[PendingEntry], *, at: int | None = None) -> list[Ack]:
        """Send `entries` through the outbox. `at` (entries naming their own indices, as
        a local sink's follow-ups do) cannot be kept: the server assigns the indices."""
        from datetime import UTC, datetime

        if at is not None:
            raise InputError(
                "entries that name their own indices cannot be sent to the team server",
                hint="record them without an index; the server assigns it",
            )

        from flowloom.ledger.event import format_ts

        events = [outbox_event(entry) for entry in entries]
        recorded = record_via_server(
            self.link,
            events,
            self.agent,
            project=self.link.project,
            created=format_ts(datetime.now(UTC)),
            lock_held=self.lock_held,
        )
        self.last = recorded
        if recorded.refused:
            # The server refused it as such: its place in the record holds a
            # capture.error naming why; the command must not pretend it was recorded.
            raise PermissionDeniedError(
                recorded.refused[0].removeprefix("the server refused a ").strip(),
                hint="the refusal itself is in the team's record (a capture.error)",
            )
        if not recorded.queued:
            self.mirror_state = self.mirror.refresh(self.link)
            if self.ledger is not None:
                self.ledger.store = self.mirror.store
        acks = []
        for entry, index in zip(entries, recorded.indices, strict=True):
            if index is None:
                acks.append(Ack(-1, entry.leaf_hash, queued=True))
                continue
            stored = self.mirror.store.entry(self.link.project, index)
            leaf = entry.leaf_hash
            if stored is not None:
                from flowloom.ledger.merkle import leaf_hash

                leaf = leaf_hash(stored.envelope)
            acks.append(Ack(index, leaf))
        return acks

    def append(self, entry: PendingEntry) -> Ack:
        return self.append_many([entry])[0]

    def submit(self, entry: PendingEntry) -> Future[Ack]:
        future: Future[Ack] = Future()
        try:
            future.set_result(self.append(entry))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        self.mirror.close()


class TeamLedger(Ledger):
    """The team's record on the server, as a Ledger (see the module docstring)."""

    def __init__(
        self,
        link: ServerLink,
        mirror: Mirror,
        *,
        origin: str,
        actor: Mapping[str, Any],
        max_body_bytes: int,
        agent: str = "cli",
    ) -> None:
        writer = OutboxWriter(link, mirror, agent=agent)
        super().__init__(
            mirror.store,
            log=link.project,
            origin=origin,
            signer=_no_signer,
            cipher=_no_cipher,
            actor=actor,
            max_body_bytes=max_body_bytes,
            writer=writer,
        )
        writer.ledger = self
        self.link = link
        self.mirror = mirror

    @property
    def verifier(self) -> Verifier:
        """The server's key this clone pinned: it signed the checkpoints the mirror keeps."""
        from flowloom.ledger.note import Verifier

        vkey = self.link.given_vkey or self.link.trust().load().vkey
        if vkey is None:
            raise NotFoundError(
                f"no key of {self.link.server_url} is pinned yet",
                hint="run 'flowloom sync' once the server can be reached",
            )
        return Verifier.from_vkey(vkey)

    def current_verifier(self) -> Verifier | None:
        try:
            return self.verifier
        except NotFoundError:
            return None

    def record_with_ci_token(
        self, kind: str, meta: Mapping[str, Any], token: str, body: bytes | None = None
    ) -> int | None:
        """Send a CI run's result with its OIDC token, for the server to verify and attest
        (an authority kind: no other way in); its index, or None while it waits queued."""
        from datetime import UTC, datetime

        from flowloom.ledger.event import format_ts

        now = format_ts(datetime.now(UTC))
        event: dict[str, Any] = {"kind": kind, "ts": now, "meta": dict(meta), "ci_token": token}
        if body is not None:
            event["body"] = body.decode("utf-8")
        recorded = record_via_server(self.link, [event], "ci", project=self.log, created=now)
        if recorded.refused:
            raise PermissionDeniedError(
                recorded.refused[0].removeprefix("the server refused a ").strip(),
                hint="the refusal itself is in the team's record (a capture.error)",
            )
        if not recorded.queued:
            self.outbox.mirror_state = self.mirror.refresh(self.link)
            self.store = self.mirror.store
        return recorded.indices[0]

    @property
    def outbox(self) -> OutboxWriter:
        assert isinstance(self.writer, OutboxWriter)
        return self.writer

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
        """Validate an event for the server: no local attestation (the server attests
        what its rules allow); a person's signature (`sign`) is kept for it to verify."""
        if data_subject is not None:
            raise InputError(
                "a body kept for a data subject cannot be sent to the team server from here",
                hint="record it without --data-subject, or on the server",
            )
        prepared = self._prepare(kind, body, meta, None, ts)
        if sign is None:
            return prepared
        event = Event.from_json(dict(sign(prepared.event.to_json())))
        return Prepared(event, self._pending(event, prepared.entry.body))


def _no_signer() -> Any:
    from flowloom.errors import KeyMissingError

    raise KeyMissingError(
        "the team's record is signed by its server, not by this clone",
        hint="ask the server for checkpoints and proofs ('flowloom sync')",
    )


def _no_cipher() -> Any:
    raise InputError("bodies for a data subject are sealed by the team server, not this clone")


def queued_subjects(spool_dir: str) -> dict[str, set[str]]:
    """Kind → subjects of the events still queued in the outbox (and its fallback): what
    this clone recorded that the server has not acknowledged yet (a decision recorded
    while the server was out of reach still links the next commit)."""
    import contextlib

    from flowloom.events.model import event_meta
    from flowloom.events.outbox import outbox_dirs, read_file, waiting

    found: dict[str, set[str]] = {}
    for directory in outbox_dirs(spool_dir):
        with contextlib.suppress(OSError):
            for name in waiting(directory):
                try:
                    item = read_file(directory, name)
                except (OSError, ValueError):
                    continue
                for event in item.events:
                    subject = event_meta(event).get("subject")
                    if isinstance(subject, str):
                        found.setdefault(str(event.get("kind", "")), set()).add(subject)
    return found
