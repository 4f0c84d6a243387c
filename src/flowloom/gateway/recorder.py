"""The exchange recorder: every gateway exchange becomes a `gateway.exchange` ledger event.

Recording is off the hot path. The event loop only appends an `Exchange` (raw bytes and
a few numbers) to a queue; one writer thread reassembles streams, counts tokens, settles
cost, redacts secrets, seals the events and appends them in batches (group commit).

Bounded by construction: a request must `reserve()` a slot before it is served, and the
slot is released only once its exchange is durable (in the ledger or the spool), so the
queue never holds more than `capacity` exchanges and `record()` never blocks.

When the ledger is unavailable the policy decides:
- "fail_closed": `available` turns False and the gateway refuses new requests (503);
  exchanges already in hand are retried until the ledger is back.
- "spool": exchanges go to a durable outbox directory (`flowloom.events.outbox`, the
  one every capture path uses: a file per batch, fsynced, redacted before it touches
  the disk) and the gateway keeps serving; the outbox is drained into the ledger, in
  order (`flowloom.events.drain`), once the ledger accepts writes again. A full outbox
  falls back to fail-closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flowloom.errors import InputError
from flowloom.events import outbox
from flowloom.events.drain import drain
from flowloom.events.redaction import Redactor
from flowloom.gateway.providers.interface import Format
from flowloom.gateway.wire.common import Tokens
from flowloom.gateway.wire.formats import wire_for
from flowloom.gateway.wire.intake import MalformedRequestError, parse_json
from flowloom.gateway.wire.sse import SseSplitter, iter_events
from flowloom.sinks.ledger import Intents

if TYPE_CHECKING:
    from flowloom.events.outbox import OutboxFile
    from flowloom.ledger.log import Ledger
    from flowloom.store.interface import PendingEntry

__all__ = ["Attempt", "Exchange", "Finalized", "RecordMode", "Recorder", "exchange_record"]

log = logging.getLogger("flowloom.gateway.recorder")

RecordMode = Literal["fail_closed", "spool"]
KIND = "gateway.exchange"
_GATEWAY_ACTOR = {"type": "service", "id": "flowloom-gateway"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream try within an exchange (the fallback chain is the list of these)."""

    provider: str
    model: str
    format: str
    status: int | None
    error_kind: str | None
    latency_ms: float
    region: str | None = None  # the provider's configured region: where the data went


@dataclass(slots=True)
class Exchange:
    """What the hot path hands to the recorder: raw bytes and measurements, nothing parsed.

    `response` is the body as sent to the caller; for a stream, the SSE bytes in order.
    `admission` is the Access admission to settle (None when nothing was admitted).
    """

    endpoint: str
    format: Format
    model: str
    stream: bool
    request: bytes
    response: bytes
    status: int
    started_at: float
    latency_s: float
    ttft_s: float | None = None
    provider: str | None = None
    upstream_model: str | None = None
    upstream_format: Format | None = None
    region: str | None = None  # the serving provider's configured region
    attempts: Sequence[Attempt] = ()
    virtual_key: str | None = None
    project: str | None = None
    session: str | None = None
    error: str | None = None
    admission: Any = None
    traceparent: str | None = None
    user_agent: str | None = None
    max_tokens: int | None = None
    usage: Tokens | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finalized:
    """An exchange ready for the ledger: redacted body (UTF-8 JSON) and meta, in its project."""

    project: str
    meta: Mapping[str, Any]
    body: bytes

    def to_line(self) -> bytes:
        return (
            json.dumps(
                {
                    "project": self.project,
                    "meta": self.meta,
                    "body": self.body.decode("utf-8"),
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )

    @staticmethod
    def from_line(line: bytes) -> Finalized:
        data = json.loads(line)
        return Finalized(data["project"], data["meta"], data["body"].encode("utf-8"))


def _decode_json(raw: bytes) -> Any:
    """A stored body as JSON when it is strict JSON, else as text: what the gateway refused
    as malformed (100,000 arrays deep, NaN, not UTF-8) is recorded too, and safely."""
    if not raw:
        return None
    try:
        return parse_json(raw)
    except MalformedRequestError:
        return raw.decode("utf-8", "replace")


def reassemble(exchange: Exchange) -> Any:
    """The caller-format response object of `exchange` (a stream is reassembled)."""
    if not exchange.stream or not exchange.response.startswith((b"event:", b"data:", b":", b"id:")):
        return _decode_json(exchange.response)
    splitter = SseSplitter(max_event_bytes=len(exchange.response) + 1)
    raw = splitter.feed(exchange.response)
    rest = splitter.rest()
    if rest:
        raw.append(rest)
    return wire_for(exchange.format).reassemble(iter_events(raw))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


SettleHook = Callable[[Exchange, Tokens], float | None]
"""Settles an exchange's usage (Access.settle) and returns its cost in USD, if known."""
ObserveHook = Callable[[Exchange, Tokens, Any], None]
"""Sees each finalized exchange with its tokens and response (OpenTelemetry)."""


def exchange_record(
    exchange: Exchange,
    *,
    default_project: str,
    max_body_bytes: int,
    settle: SettleHook | None = None,
    observe: ObserveHook | None = None,
) -> Finalized:
    """Reassemble, count, settle and redact one exchange into a ledger-ready record."""
    response = reassemble(exchange)
    tokens = Tokens()
    if isinstance(response, dict):
        try:
            tokens = wire_for(exchange.format).usage(response)
        except Exception:  # a malformed usage object must not lose the record
            tokens = Tokens()
    if tokens.total == 0 and exchange.usage is not None:
        tokens = exchange.usage  # reported upstream, withheld from the caller
    estimated = False
    if tokens.total == 0 and exchange.status < 400 and response is not None:
        # The provider reported no usage (an OpenAI stream without include_usage):
        # estimate, about four bytes per token, so budgets still move.
        text = (
            json.dumps(response, ensure_ascii=False) if not isinstance(response, str) else response
        )
        tokens = Tokens(len(exchange.request) // 4 + 1, len(text) // 8 + 1)
        estimated = True
    cost: float | None = None
    if settle is not None:
        try:
            cost = settle(exchange, tokens)
        except Exception:
            log.exception("settling usage failed")
    if observe is not None:
        try:
            observe(exchange, tokens, response)
        except Exception:
            log.exception("telemetry failed")
    redactor = Redactor()
    body_obj = {
        "request": redactor.value(_decode_json(exchange.request)),
        "response": redactor.value(response),
    }
    try:
        body = json.dumps(body_obj, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # an unpaired surrogate escape: keep it escaped
        body = json.dumps(body_obj, separators=(",", ":")).encode()
    if len(body) > max_body_bytes:
        half = max(max_body_bytes // 2 - 256, 0)
        body = json.dumps(
            {
                "truncated": True,
                "original_bytes": len(body),
                "head": body[:half].decode("utf-8", "ignore"),
            },
            separators=(",", ":"),
        ).encode()
    refs: dict[str, Any] = {
        "endpoint": exchange.endpoint,
        "format": exchange.format,
        "model": exchange.model,
        "stream": exchange.stream,
        "status": exchange.status,
        "started_at": datetime.fromtimestamp(exchange.started_at, UTC).isoformat(),
        "latency_ms": _ms(exchange.latency_s),
        "input_tokens": tokens.input_tokens,
        "output_tokens": tokens.output_tokens,
    }
    optional: dict[str, Any] = {
        "provider": exchange.provider,
        "upstream_model": exchange.upstream_model,
        "upstream_format": exchange.upstream_format,
        "region": exchange.region,
        "ttft_ms": _ms(exchange.ttft_s),
        "cache_read_tokens": tokens.cache_read or None,
        "cache_write_tokens": tokens.cache_write or None,
        "cost_usd": cost,
        "virtual_key": exchange.virtual_key,
        "error": redactor.text(exchange.error)[:500] if exchange.error else None,
        "user_agent": exchange.user_agent[:200] if exchange.user_agent else None,
    }
    refs.update({k: v for k, v in optional.items() if v is not None})
    if exchange.attempts:
        refs["fallback"] = [
            {
                "provider": a.provider,
                "model": a.model,
                "format": a.format,
                "status": a.status,
                "error_kind": a.error_kind,
                "latency_ms": round(a.latency_ms, 3),
                **({"region": a.region} if a.region is not None else {}),
            }
            for a in exchange.attempts
        ]
    if estimated:
        refs["usage_estimated"] = True
    if redactor.total:
        refs["redacted"] = dict(redactor.counts)
    refs.update(exchange.extra)
    meta: dict[str, Any] = {
        "actor": _GATEWAY_ACTOR,
        "subject": exchange.upstream_model or exchange.model or "unknown",
        "refs": refs,
    }
    if exchange.session:
        meta["session"] = redactor.text(exchange.session, entropy=False)[:200]
    return Finalized(exchange.project or default_project, meta, body)


def _now_ts() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z"


class _ReplaySink:
    """The recorder's ledgers as the drainer's sink: one outbox file per append, exactly
    once (the ledger sink's `Intents`: a replay killed after its append and before its
    journal line finds the file's entries instead of appending them again)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def accepts(self, group: Sequence[OutboxFile], item: OutboxFile) -> bool:
        return False

    def record(self, files: Sequence[OutboxFile]) -> list[list[int]]:
        out = []
        for item in files:
            project = item.project or self.recorder._default_project
            ledger = self.recorder._ledger_for(project)
            intents = Intents(item.directory)
            found = intents.recorded(ledger, item.name)
            if found is not None:
                out.append(found)
                continue
            records = [
                Finalized(
                    project,
                    e["meta"] if isinstance(e.get("meta"), dict) else {},
                    str(e.get("body", "")).encode("utf-8"),
                )
                for e in item.events
            ]
            entries = [self.recorder._prepare(ledger, r) for r in records]
            intents.note(item.name, ledger.store.size(ledger.log), entries)
            acks = ledger.writer.append_many(entries)
            self.recorder.recorded += len(records)
            out.append([ack.index for ack in acks])
        return out


class Recorder:
    """Records exchanges in the background; see the module docstring for the policies."""

    def __init__(
        self,
        ledger_for: Callable[[str], Ledger],
        *,
        default_project: str,
        mode: RecordMode = "fail_closed",
        spool_path: Path | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        capacity: int = 10_000,
        max_batch: int = 512,
        retry_interval_s: float = 1.0,
        max_body_bytes: int = 16 * 1024 * 1024,
        settle: SettleHook | None = None,
        observe: ObserveHook | None = None,
    ) -> None:
        if mode == "spool" and spool_path is None:
            raise ValueError("the spool mode needs a spool_path")
        self._ledger_for = ledger_for
        self._default_project = default_project
        self.mode: RecordMode = mode
        self._spool_path = spool_path
        self._spool_max = spool_max_bytes
        self._capacity = capacity
        self._max_batch = max_batch
        self._retry_s = retry_interval_s
        self._max_body = max_body_bytes
        self._settle = settle
        self.observe = observe
        self._queue: queue.SimpleQueue[Exchange | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._reserved = 0
        self._thread: threading.Thread | None = None
        self._held: list[Finalized] = []  # fail_closed: finalized but not yet durable
        self._ledger_ok = True
        self._spool_full = False
        self._error: str | None = None  # the last ledger failure, while it lasts
        self.recorded = 0
        self.spooled = 0
        self.replayed = 0
        self._idle = threading.Condition(self._lock)

    # -- hot path ----------------------------------------------------------------------

    @property
    def reason(self) -> str | None:
        """Why the recorder refuses requests or cannot write now; None when all is well."""
        if self._spool_full:
            return "the ledger is unavailable and the spool is full"
        return None if self._ledger_ok else self._error

    @property
    def available(self) -> bool:
        """True while new requests may be served (recording can keep its promise)."""
        if self.mode == "spool":
            return not self._spool_full
        return self._ledger_ok

    def reserve(self) -> bool:
        """Take a slot for one exchange; False when the recorder cannot promise to record."""
        if not self.available:
            return False
        with self._lock:
            if self._reserved >= self._capacity:
                return False
            self._reserved += 1
        return True

    def release(self) -> None:
        """Give back a reserved slot that will not be recorded."""
        with self._lock:
            self._reserved -= 1
            if self._reserved == 0:
                self._idle.notify_all()

    def record(self, exchange: Exchange) -> None:
        """Queue `exchange` (its slot was reserved); never blocks."""
        self._queue.put(exchange)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            if self.mode == "spool" and self._spool_pending():
                self._ledger_ok = False  # replay what an earlier process left first
            self._thread = threading.Thread(
                target=self._run, name="flowloom-gateway-recorder", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Record what is queued (waiting up to `timeout`), then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every reserved exchange is durable (tests, shutdown); True if so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._reserved > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "available": self.available,
            "ledger_ok": self._ledger_ok,
            "reason": self.reason,
            "queued": self._reserved,
            "recorded": self.recorded,
            "spooled": self.spooled,
            "replayed": self.replayed,
        }

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while True:
            batch: list[Exchange] = []
            timeout = self._retry_s if (self._held or not self._ledger_ok) else None
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                first = None
                if not stopping:
                    self._retry()
                    continue
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._handle(batch)
            if stopping and self._queue.empty():
                self._retry()
                return

    def _handle(self, batch: list[Exchange]) -> None:
        records: list[Finalized] = []
        for exchange in batch:
            try:
                records.append(
                    exchange_record(
                        exchange,
                        default_project=self._default_project,
                        max_body_bytes=self._max_body,
                        settle=self._settle,
                        observe=self.observe,
                    )
                )
            except Exception:
                log.exception("could not build the gateway.exchange event; recording a stub")
                records.append(
                    Finalized(
                        exchange.project or self._default_project,
                        {
                            "actor": _GATEWAY_ACTOR,
                            "subject": exchange.model or "unknown",
                            "refs": {"endpoint": exchange.endpoint, "status": exchange.status},
                        },
                        b"{}",
                    )
                )
        if self.mode == "spool":
            self._persist_spooling(records)
            self._release(len(records))
            return
        self._held.extend(records)
        if self._ledger_ok:
            self._release(self._flush_held())

    def _release(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._reserved -= count
            if self._reserved <= 0:
                self._idle.notify_all()

    def _append(self, records: Sequence[Finalized]) -> list[int]:
        """Append `records` to their ledgers, one batch per project, in order; their
        indices (each in its project's log)."""
        by_project: dict[str, list[tuple[int, Finalized]]] = {}
        for position, record in enumerate(records):
            by_project.setdefault(record.project, []).append((position, record))
        indices = [0] * len(records)
        for project, items in by_project.items():
            ledger = self._ledger_for(project)
            entries = [self._prepare(ledger, r) for _, r in items]
            acks = ledger.writer.append_many(entries)
            for (position, _), ack in zip(items, acks, strict=True):
                indices[position] = ack.index
        self.recorded += len(records)
        return indices

    @staticmethod
    def _prepare(ledger: Ledger, record: Finalized) -> PendingEntry:
        try:
            return ledger.prepare(KIND, body=record.body, meta=record.meta).entry
        except InputError as exc:
            # The record itself is at fault, not the ledger: keep a stub that says why.
            refs = record.meta.get("refs") or {}
            stub = {
                "actor": _GATEWAY_ACTOR,
                "subject": str(record.meta.get("subject", "unknown"))[:200],
                "refs": {
                    "endpoint": refs.get("endpoint"),
                    "status": refs.get("status"),
                    "unrecordable": str(exc)[:300],
                },
            }
            return ledger.prepare(KIND, meta=stub).entry

    def _flush_held(self) -> int:
        """Append the held records; returns how many became durable (all or none)."""
        held = self._held
        try:
            self._append(held)
        except Exception as exc:
            self._fail(exc)
            return 0
        self._held = []
        if not self._ledger_ok:
            log.warning("the ledger accepts writes again; the gateway serves again")
        self._ledger_ok = True
        return len(held)

    def _fail(self, exc: BaseException) -> None:
        if self._ledger_ok:
            log.error("the ledger is unavailable (%s: %s)", type(exc).__name__, exc)
        self._ledger_ok = False
        self._error = f"the ledger is unavailable: {type(exc).__name__}: {exc}"[:300]

    def _retry(self) -> None:
        if self.mode == "spool":
            self._replay_spool()
        elif self._held:
            self._release(self._flush_held())
        else:
            self._ledger_ok = True  # nothing held: let the next request try again

    # -- spool ---------------------------------------------------------------------------

    def _spool_dir(self) -> str:
        assert self._spool_path is not None
        return str(self._spool_path)

    def _spool_pending(self) -> bool:
        return self._spool_path is not None and bool(outbox.waiting(self._spool_dir()))

    def _spool_bytes(self) -> int:
        total = 0
        for name in outbox.pending(self._spool_dir()):
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(self._spool_dir(), name))
        return total

    def _persist_spooling(self, records: list[Finalized]) -> None:
        if self._ledger_ok and not self._spool_pending():  # nothing may overtake the spool
            try:
                self._append(records)
                return
            except Exception as exc:
                self._fail(exc)
        self._spool(records)

    def _spool(self, records: list[Finalized]) -> None:
        """One outbox file per run of records for the same project, in order."""
        runs: list[list[Finalized]] = []
        for record in records:
            if runs and runs[-1][0].project == record.project:
                runs[-1].append(record)
            else:
                runs.append([record])
        size = self._spool_bytes()
        created = _now_ts()
        for run in runs:
            events = [
                {"kind": KIND, "ts": created, "meta": r.meta, "body": r.body.decode("utf-8")}
                for r in run
            ]
            name = outbox.write(
                self._spool_dir(), "gateway", events, created, project=run[0].project
            )
            size += os.path.getsize(os.path.join(self._spool_dir(), name))
        if size > self._spool_max:
            # Nothing may be lost: these went in, but no new request is accepted.
            if not self._spool_full:
                log.error("the gateway spool is full; refusing new requests (fail-closed)")
            self._spool_full = True
        self.spooled += len(records)

    def _replay_spool(self) -> None:
        """Drain the outbox into the ledger, in order (`flowloom.events.drain`)."""
        if self._spool_path is None or not self._spool_pending():
            self._spool_full = False
            self._ledger_ok = True
            return
        try:
            with outbox.SpoolLock(self._spool_dir()) as lock:
                if not lock.acquired:
                    return  # another gateway process drains it
                report = drain([self._spool_dir()], _ReplaySink(self))
            if report.error is not None:
                raise report.error
        except Exception as exc:
            self._fail(exc)
            return
        self.replayed += report.sent
        if report.remaining:
            return
        self._spool_full = False
        if not self._ledger_ok:
            log.warning("the ledger accepts writes again; the spool was replayed")
        self._ledger_ok = True
