"""The outbox: spooled events sent to the server in order, each removed only once acked.

When a server is configured the hook spool (`flowloom.capture.spool`) is the outbox:
every captured or recorded event is first made durable there, then `flush` sends the
files in name (= time) order, several per `POST .../ledger/batch`, and journals and
deletes a file only after the server answered with its indices. Every event carries an
`event_id` derived from this clone's client id, the spool file and its position, so a
batch re-sent after a lost answer returns the first indices instead of appending twice.

The first failure stops the flush and leaves that file and every later one in place:
order is kept and nothing is lost. One exception: an event the server refuses as such
(400/413/422) would block the outbox forever, so it is replaced by a `capture.error`
event that names the refusal and the payload's digest, as the local drainer does. A
file that cannot be read is moved to `spool/bad/` and reported the same way.

The caller holds the spool's lock (`SpoolLock`). Standard library only.
"""

from __future__ import annotations

import json
import os
import secrets

from flowloom.capture import spool
from flowloom.client.http import ServerRejectedError
from flowloom.errors import FlowLoomError

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_EVENTS",
    "FlushReport",
    "Outbox",
    "client_id",
    "server_event",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from flowloom.client.api import LedgerApi

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
    """A spooled event in the server's append shape (see the HTTP API's event input)."""
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    out: dict[str, Any] = {"kind": str(event.get("kind", "")), "event_id": event_id}
    happened = event.get("ts")  # taken in the hook; the file's time otherwise
    if isinstance(happened, str) and happened:
        out["ts"] = happened
    elif ts:
        out["ts"] = ts
    for key in _ENVELOPE_FIELDS:
        if key in meta:
            out[key] = meta[key]
    actor = meta.get("actor")
    if isinstance(actor, dict):
        out["actor"] = actor
    body = event.get("body")
    if isinstance(body, str):
        out["body"] = body
    return out


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error_event(event: dict[str, Any], agent: str, error: str) -> dict[str, Any]:
    """The capture.error sent in place of an event the server refused (never its content)."""
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    body = event.get("body")
    raw = (
        body.encode("utf-8", "replace")
        if isinstance(body, str)
        else json.dumps(meta, sort_keys=True).encode()
    )
    kind = str(event.get("kind", "")) or "nameless"
    refs = {
        "error": f"could not record a {kind} event: {error}"[:2000],
        "payload_digest": _digest(raw),
    }
    replacement: dict[str, Any] = {"subject": agent or "unknown", "refs": refs}
    for key in ("actor", "session"):
        if key in meta:
            replacement[key] = meta[key]
    return {"kind": "capture.error", "meta": replacement}


def _redaction_event(event: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The redaction.apply event that follows a redacted event (counts, never secrets)."""
    counts = event.get("redactions")
    if not isinstance(counts, dict) or not counts:
        return None
    meta: dict[str, Any] = event["meta"] if isinstance(event.get("meta"), dict) else {}
    refs = {
        "entry": index,
        "kind": str(event.get("kind", "")),
        "counts": {str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
        "total": sum(v for v in counts.values() if isinstance(v, int)),
    }
    redaction: dict[str, Any] = {"subject": str(event.get("kind", "")), "refs": refs}
    for key in ("actor", "session"):
        if key in meta:
            redaction[key] = meta[key]
    return {"kind": "redaction.apply", "meta": redaction}


class FlushReport:
    """What one flush did: events sent, files done, files left, and why it stopped."""

    __slots__ = ("error", "files", "indices", "remaining", "replaced", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.files = 0
        self.replaced = 0
        self.remaining = 0
        self.indices: list[int] = []
        self.error: FlowLoomError | None = None

    @property
    def last_index(self) -> int | None:
        return max(self.indices) if self.indices else None


class _File:
    """One spool file on its way: its events in server shape, with their ids."""

    __slots__ = ("agent", "created", "events", "name", "project")

    def __init__(self, name: str, record: dict[str, Any], default_project: str) -> None:
        self.name = name
        self.agent = str(record.get("agent", ""))
        created = record.get("created")
        self.created = created if isinstance(created, str) else None
        project = record.get("project")
        self.project = project if isinstance(project, str) and project else default_project
        self.events = [e for e in record["events"] if isinstance(e, dict)]


class Outbox:
    """Sends one spool directory's files to the server, per project (`api_for`)."""

    def __init__(
        self,
        spool_dir: str,
        api_for: Callable[[str], LedgerApi],
        *,
        default_project: str,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        observer: Callable[[str], None] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.api_for = api_for
        self.default_project = default_project
        self.batch_events = max(1, batch_events)
        self.batch_bytes = batch_bytes
        self.observer = observer or (lambda _line: None)
        self._client_id: str | None = None

    def depth(self) -> int:
        """Spool files waiting to be sent."""
        done = spool.recorded_names(self.spool_dir)
        return sum(1 for name in spool.pending(self.spool_dir) if name not in done)

    def _event_id(self, name: str, position: int, suffix: str = "") -> str:
        if self._client_id is None:
            self._client_id = client_id(os.path.dirname(self.spool_dir))
        return f"{self._client_id}-{name.removesuffix('.json')}-{position}{suffix}"

    def flush(self) -> FlushReport:
        """Send every pending file in order; stops at the first failure (kept for later)."""
        report = FlushReport()
        done = spool.recorded_names(self.spool_dir)
        names = spool.pending(self.spool_dir)
        position = 0
        try:
            while position < len(names):
                name = names[position]
                if name in done:  # sent, but its file outlived a crash
                    os.unlink(os.path.join(self.spool_dir, name))
                    position += 1
                    continue
                group = self._group(names, position, done, report)
                if not group:
                    position += 1  # quarantined
                    continue
                self._send_group(group, report)
                position += len(group)
        except FlowLoomError as exc:
            report.error = exc
        report.remaining = self.depth()
        return report

    def _group(
        self, names: list[str], start: int, done: set[str], report: FlushReport
    ) -> list[_File]:
        """Consecutive readable files for one project, up to the batch size."""
        group: list[_File] = []
        count = 0
        total = 0
        for name in names[start:]:
            if name in done:
                break
            try:
                record = spool.read_record(self.spool_dir, name)
            except (OSError, ValueError) as exc:
                if group:
                    break
                self._quarantine(name, str(exc), report)
                return []
            item = _File(name, record, self.default_project)
            try:
                size = os.path.getsize(os.path.join(self.spool_dir, name))
            except OSError:
                size = 0
            if group and (
                item.project != group[0].project
                or count + len(item.events) > self.batch_events
                or total + size > self.batch_bytes
            ):
                break
            group.append(item)
            count += len(item.events)
            total += size
        return group

    def _quarantine(self, name: str, error: str, report: FlushReport) -> None:
        path = os.path.join(self.spool_dir, name)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            raw = b""
        refs = {
            "error": f"spool file {name} is unreadable: {error}"[:2000],
            "payload_digest": _digest(raw),
        }
        event = {"kind": "capture.error", "meta": {"subject": "spool", "refs": refs}}
        api = self.api_for(self.default_project)
        indices = api.append_batch(
            [server_event(event, ts=None, event_id=self._event_id(name, 0, "bad"))]
        )
        spool.note_recorded(self.spool_dir, name, indices)
        bad = os.path.join(self.spool_dir, "bad")
        os.makedirs(bad, mode=0o700, exist_ok=True)
        os.replace(path, os.path.join(bad, name))
        report.replaced += 1
        report.indices.extend(indices)
        self.observer(f"spool file {name} is unreadable: moved to bad/, reported as capture.error")

    def _send_group(self, group: list[_File], report: FlushReport) -> None:
        api = self.api_for(group[0].project)
        batch: list[dict[str, Any]] = []
        sources: list[tuple[_File, int, dict[str, Any]]] = []
        for item in group:
            for position, event in enumerate(item.events):
                event = self._unless_authority(item, event, report)
                batch.append(
                    server_event(
                        event, ts=item.created, event_id=self._event_id(item.name, position)
                    )
                )
                sources.append((item, position, event))
        try:
            indices = api.append_batch(batch) if batch else []
        except ServerRejectedError:
            indices = [self._send_one(api, *source, report) for source in sources]
        redactions: list[dict[str, Any]] = []
        for (item, position, event), index in zip(sources, indices, strict=True):
            redaction = _redaction_event(event, index)
            if redaction is not None:
                event_id = self._event_id(item.name, position, "r")
                redactions.append(server_event(redaction, ts=item.created, event_id=event_id))
        if redactions:
            try:
                api.append_batch(redactions)
            except ServerRejectedError as exc:  # a note about a note: say so, do not block
                self.observer(f"the server refused the redaction notes: {exc.message}")
        offset = 0
        for item in group:
            mine = indices[offset : offset + len(item.events)]
            offset += len(item.events)
            spool.note_recorded(self.spool_dir, item.name, mine)
            os.unlink(os.path.join(self.spool_dir, item.name))
            report.files += 1
        report.sent += len(batch)
        report.indices.extend(indices)
        self.observer(
            f"sent {len(batch)} event(s) from {len(group)} spool file(s) to project "
            f"{group[0].project}"
            + (f" (indices {min(indices)}..{max(indices)})" if indices else "")
        )

    def _unless_authority(
        self, item: _File, event: dict[str, Any], report: FlushReport
    ) -> dict[str, Any]:
        """`event`, or a capture.error in its place when its kind carries authority.

        The server refuses those through the append it syncs to (403), and a 403 would
        stop the outbox for good: say here, once, where such an event must be made.
        """
        from flowloom.ledger.attest import refuse_generic

        try:
            refuse_generic(str(event.get("kind", "")))
        except FlowLoomError as exc:
            report.replaced += 1
            self.observer(f"not synced: {exc.message}; {exc.hint}")
            return _error_event(event, item.agent, f"{exc.message}; {exc.hint}")
        return event

    def _send_one(
        self,
        api: LedgerApi,
        item: _File,
        position: int,
        event: dict[str, Any],
        report: FlushReport,
    ) -> int:
        """Send one event alone; a refused one becomes a capture.error in its place."""
        event_id = self._event_id(item.name, position)
        try:
            return api.append_batch([server_event(event, ts=item.created, event_id=event_id)])[0]
        except ServerRejectedError as exc:
            replacement = _error_event(event, item.agent, exc.message)
            report.replaced += 1
            self.observer(f"the server refused a {event.get('kind')} event: {exc.message}")
            event_id = self._event_id(item.name, position, "e")
            return api.append_batch(
                [server_event(replacement, ts=item.created, event_id=event_id)]
            )[0]
