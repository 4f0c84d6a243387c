"""The team server as a sink: outbox files sent in order, each removed only once acked.

Files are sent in name (= time) order, several per `POST .../ledger/batch` (same
project, within the batch limits). Every event carries an `event_id` derived from this
clone's client id, the outbox file and its position, so a batch re-sent after a lost
answer returns the first indices instead of appending twice.

An event the server refuses as such (400/413/422) would block the outbox forever, so
it is replaced by a `capture.error` (`flowloom.events.model.refused_event`), as the
ledger sink does; so is an authority-bearing kind, which the server refuses (403)
through the append it syncs to. A redacted event is followed by its `redaction.apply`.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from flowloom.client.http import ServerRejectedError
from flowloom.errors import FlowLoomError
from flowloom.events.drain import DrainReport, drain, waiting_total
from flowloom.events.model import event_meta, happened_at, redaction_notice, refused_event
from flowloom.events.outbox import outbox_dirs

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_EVENTS",
    "ServerSink",
    "client_id",
    "outbox_depth",
    "send_outbox",
    "server_event",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from flowloom.client.api import LedgerApi
    from flowloom.client.link import ServerLink
    from flowloom.events.outbox import OutboxFile

DEFAULT_BATCH_EVENTS = 500
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
"""A batch stays well below the server's request limit; a bigger file goes alone."""
_CLIENT_ID_FILE = "client-id"
_ENVELOPE_FIELDS = ("session", "git", "subject", "refs")


def client_id(state_dir: str) -> str:
    """This clone's random id (created once), the prefix of every event_id it sends."""
    path = os.path.join(state_dir, _CLIENT_ID_FILE)
    try:
        with open(path, encoding="ascii") as fh:
            value = fh.read().strip()
        if value:
            return value
    except OSError:
        pass
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    value = secrets.token_hex(8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner
    except FileExistsError:
        os.unlink(tmp)
        return client_id(state_dir)
    os.unlink(tmp)
    return value


def server_event(event: dict[str, Any], *, ts: str | None, event_id: str) -> dict[str, Any]:
    """An outbox event in the server's append shape (see the HTTP API's event input).

    A person-signed event (``signed_envelope``: an approval made with the approver's SSH
    key) goes as signed, so the server can verify it and keep the signature valid.
    """
    signed = event.get("signed_envelope")
    if isinstance(signed, str):
        return {"kind": str(event.get("kind", "")), "event_id": event_id, "signed_envelope": signed}
    meta = event_meta(event)
    out: dict[str, Any] = {"kind": str(event.get("kind", "")), "event_id": event_id}
    times = happened_at(event, ts)  # taken in the hook; the file's time otherwise
    if times:
        out["ts"] = times[0]
    for key in _ENVELOPE_FIELDS:
        if key in meta:
            out[key] = meta[key]
    actor = meta.get("actor")
    if isinstance(actor, dict):
        out["actor"] = actor
    body = event.get("body")
    if isinstance(body, str):
        out["body"] = body
    token = event.get("ci_token")
    if isinstance(token, str):
        out["ci_token"] = token  # a CI run's proof, verified by the server, not stored
    return out


def _size(item: OutboxFile) -> int:
    try:
        return os.path.getsize(item.path)
    except OSError:
        return 0


class ServerSink:
    """Sends outbox files to the server, per project (`api_for`)."""

    def __init__(
        self,
        api_for: Callable[[str], LedgerApi],
        *,
        state_dir: str,
        default_project: str,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.api_for = api_for
        self.state_dir = state_dir
        self.default_project = default_project
        self.batch_events = max(1, batch_events)
        self.batch_bytes = batch_bytes
        self.observer = observer or (lambda _line: None)
        self.replaced = 0
        self._client_id: str | None = None

    def _project(self, item: OutboxFile) -> str:
        return item.project or self.default_project

    def _event_id(self, item: OutboxFile, position: int, suffix: str = "") -> str:
        if self._client_id is None:
            self._client_id = client_id(self.state_dir)
        return f"{self._client_id}-{item.name.removesuffix('.json')}-{position}{item.tag}{suffix}"

    def accepts(self, group: Sequence[OutboxFile], item: OutboxFile) -> bool:
        if self._project(item) != self._project(group[0]):
            return False
        count = sum(len(f.events) for f in group)
        size = sum(_size(f) for f in group)
        return (
            count + len(item.events) <= self.batch_events and size + _size(item) <= self.batch_bytes
        )

    def record(self, files: Sequence[OutboxFile]) -> list[list[int]]:
        api = self.api_for(self._project(files[0]))
        batch: list[dict[str, Any]] = []
        sources: list[tuple[OutboxFile, int, dict[str, Any]]] = []
        for item in files:
            for position, event in enumerate(item.events):
                event = self._unless_authority(item, event)
                batch.append(
                    server_event(event, ts=item.created, event_id=self._event_id(item, position))
                )
                sources.append((item, position, event))
        try:
            indices = api.append_batch(batch) if batch else []
        except ServerRejectedError:
            indices = [self._send_one(api, *source) for source in sources]
        redactions: list[dict[str, Any]] = []
        for (item, position, event), index in zip(sources, indices, strict=True):
            counts = event.get("redactions")
            if isinstance(counts, dict) and counts:
                notice = redaction_notice(
                    str(event.get("kind", "")), counts, index, event_meta(event)
                )
                event_id = self._event_id(item, position, "r")
                redactions.append(server_event(notice, ts=item.created, event_id=event_id))
        if redactions:
            try:
                api.append_batch(redactions)
            except ServerRejectedError as exc:  # a note about a note: say so, do not block
                self.observer(f"the server refused the redaction notes: {exc.message}")
        per_file: list[list[int]] = []
        offset = 0
        for item in files:
            per_file.append(indices[offset : offset + len(item.events)])
            offset += len(item.events)
        self.observer(
            f"sent {len(batch)} event(s) from {len(files)} spool file(s) to project "
            f"{self._project(files[0])}"
            + (f" (indices {min(indices)}..{max(indices)})" if indices else "")
        )
        return per_file

    def _unless_authority(self, item: OutboxFile, event: dict[str, Any]) -> dict[str, Any]:
        """`event`, or a capture.error in its place when its kind carries authority.

        The server refuses those through the append it syncs to (403), and a 403 would
        stop the outbox for good: say here, once, where such an event must be made.
        """
        from flowloom.ledger.attest import refuse_generic

        if isinstance(event.get("signed_envelope"), str) or isinstance(event.get("ci_token"), str):
            return event  # a signature or CI token is its proof: the server verifies it
        try:
            refuse_generic(str(event.get("kind", "")))
        except FlowLoomError as exc:
            self.replaced += 1
            self.observer(f"not synced: {exc.message}; {exc.hint}")
            return refused_event(event, item.agent, f"{exc.message}; {exc.hint}")
        return event

    def _send_one(
        self, api: LedgerApi, item: OutboxFile, position: int, event: dict[str, Any]
    ) -> int:
        """Send one event alone; a refused one becomes a capture.error in its place."""
        event_id = self._event_id(item, position)
        try:
            return api.append_batch([server_event(event, ts=item.created, event_id=event_id)])[0]
        except ServerRejectedError as exc:
            replacement = refused_event(event, item.agent, exc.message)
            self.replaced += 1
            said = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
            self.observer(f"the server refused a {event.get('kind')} event: {said}")
            event_id = self._event_id(item, position, "e")
            return api.append_batch(
                [server_event(replacement, ts=item.created, event_id=event_id)]
            )[0]


def send_outbox(
    link: ServerLink,
    *,
    observer: Callable[[str], None] | None = None,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> DrainReport:
    """Send the link's outbox (and its fallback) in order; the caller holds the lock.

    Server and network failures end up in the report (`error`), not raised: what was
    sent is journaled, the rest waits. Only local file-system errors propagate.
    """
    sink = ServerSink(
        link.guarded_api,
        state_dir=link.state_dir,
        default_project=link.project,
        batch_events=batch_events,
        batch_bytes=batch_bytes,
        observer=observer or link.observer,
    )
    report = drain(outbox_dirs(link.spool_dir), sink, observer=sink.observer)
    report.replaced += sink.replaced
    # The state is a convenience for `sync status`; the report says it all.
    with contextlib.suppress(OSError, FlowLoomError):
        link.trust().note_error(report.error.message if report.error else None)
    return report


def outbox_depth(link: ServerLink) -> int:
    """Outbox files (with the fallback's) waiting to be sent."""
    return waiting_total(outbox_dirs(link.spool_dir))
