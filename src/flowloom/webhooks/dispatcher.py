"""Dispatcher: feeds the delivery queue from the ledgers and sends what is due.

One background thread per server process. Each round it (1) reads every enabled
subscription's project ledger from the subscription's cursor and queues the entries of
the kinds it wants, moving the cursor in the same transaction, and (2) sends, for each
subscription, the head of its queue while it is due: a 2xx answer delivers it and the
next one follows; anything else schedules a retry after an exponential backoff with
jitter, and after `max_attempts` the message is dead-lettered and the queue moves on.
Everything it knows is in the database, so a restarted server picks up where the last
one stopped, and a message whose send was cut off is sent again when its lease lapses.
"""

from __future__ import annotations

import json
import logging
import os
import random
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx

from flowloom.errors import ConfigError, FlowLoomError
from flowloom.ledger.log import Ledger
from flowloom.outbound import OutboundGuard, guarded_client
from flowloom.webhooks.chat import CHAT_FORMATS, EMAIL, ChatNote, email_text, render
from flowloom.webhooks.digest import DIGEST, digest_summary, digest_text
from flowloom.webhooks.mailer import Mailer
from flowloom.webhooks.message import MAX_BODY_SENT, EntryBody, cloud_event, sign_headers
from flowloom.webhooks.records import Attempt, Delivery, Subscription
from flowloom.webhooks.store import NewDelivery, WebhookStore

__all__ = ["DispatchSettings", "Dispatcher", "LedgerSource"]

_log = logging.getLogger("flowloom.webhooks")
_READ_BATCH = 500


class LedgerSource(Protocol):
    """Where a project's ledger is found (the server's LedgerRegistry)."""

    def get(self, project: str) -> Ledger: ...


@dataclass(frozen=True)
class DispatchSettings:
    """How often the queue is looked at and how failures are retried."""

    poll_s: float = 1.0
    backoff_base_s: float = 5.0
    backoff_max_s: float = 3600.0
    max_attempts: int = 12
    timeout_s: float = 10.0
    lease_s: float = 60.0
    digest_period_s: float = 7 * 86400.0

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> DispatchSettings:
        """Defaults, overridden by FLOWLOOM_WEBHOOKS_POLL_S, _BACKOFF_BASE_S,
        _BACKOFF_MAX_S, _MAX_ATTEMPTS, _TIMEOUT_S and _LEASE_S."""
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for name, kind in (
            ("poll_s", float),
            ("backoff_base_s", float),
            ("backoff_max_s", float),
            ("max_attempts", int),
            ("timeout_s", float),
            ("lease_s", float),
            ("digest_period_s", float),
        ):
            raw = env.get("FLOWLOOM_WEBHOOKS_" + name.upper())
            if raw is None or not raw.strip():
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(
                    f"FLOWLOOM_WEBHOOKS_{name.upper()} must be a number, not {raw!r}"
                ) from None
            if value <= 0:
                raise ConfigError(f"FLOWLOOM_WEBHOOKS_{name.upper()} must be positive")
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds before try `attempt + 1`: doubling from the base up to the cap, of
        which a random half is kept ("equal jitter"), so receivers coming back are not
        hit by every sender at once."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


class Dispatcher:
    """Feeds and drains the webhook queue; `start()` runs it in a thread, `run_once()`
    does one round (tests and the "send test event" action use it directly)."""

    def __init__(
        self,
        store: WebhookStore,
        ledgers: LedgerSource,
        *,
        secret_of: Callable[[str], str],
        source_of: Callable[[str], str],
        url_of: Callable[[Subscription], str] = lambda sub: sub.url,
        public_url: str = "",
        mailer: Mailer | None = None,
        email_of: Callable[[str], str | None] = lambda user_id: None,
        settings: DispatchSettings,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        http: httpx.Client | None = None,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._store = store
        self._ledgers = ledgers
        self._secret_of = secret_of
        self._source_of = source_of
        self._url_of = url_of
        self._public_url = public_url
        self._mailer = mailer
        self._email_of = email_of
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        # Every connection passes the outbound guard, after DNS resolution (flowloom.outbound).
        self._http = http or guarded_client(outbound or OutboundGuard(), timeout=settings.timeout_s)
        self._owns_http = http is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._round = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="flowloom-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_s + 30)
            self._thread = None
        if self._owns_http:
            self._http.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end deliveries for good
                _log.exception("webhook dispatch round failed; trying again")
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()

    # -- one round ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Queue new entries, then send what is due; returns how many sends were tried."""
        with self._round:
            subscriptions = self._store.subscriptions(enabled_only=True)
            for sub in subscriptions:
                self._feed(sub)
            tried = 0
            for sub in subscriptions:
                if self._stop.is_set():
                    break
                tried += self._drain(sub)
            return tried

    def _feed(self, sub: Subscription) -> None:
        ledger = self._ledgers.get(sub.project)
        size = ledger.size()
        if sub.format == DIGEST:
            self._digest(sub, ledger, size)
            return
        cursor = sub
        while cursor.cursor < size:
            end = min(size, cursor.cursor + _READ_BATCH)
            queued: list[NewDelivery] = [
                (f"msg_{uuid.uuid4().hex}", entry.kind, entry.index, None)
                for entry in ledger.store.entries(sub.project, cursor.cursor, end)
                if sub.wants(entry.kind)
            ]
            if not self._store.advance(cursor, end, queued, self._clock()):
                return  # another process moved it: it queued these
            cursor = _moved(cursor, end)

    def _digest(self, sub: Subscription, ledger: Ledger, size: int) -> None:
        """Queue one digest of what was recorded since the last, once it is due."""
        now = self._clock()
        if now < sub.next_digest_at:
            return
        summary = digest_summary(
            sub.project, ledger.store.entries(sub.project, sub.cursor, size), self._public_url
        )
        queued: list[NewDelivery] = []
        if summary["counts"]:  # a quiet period sends nothing
            queued.append((f"msg_{uuid.uuid4().hex}", "digest", None, json.dumps(summary)))
        next_at = now + self.settings.digest_period_s
        self._store.advance(sub, size, queued, now, next_digest_at=next_at)

    def _drain(self, sub: Subscription) -> int:
        tried = 0
        while not self._stop.is_set():
            delivery = self._store.claim_head(sub.id, self._clock(), self.settings.lease_s)
            if delivery is None:
                return tried
            tried += 1
            if not self._send(sub, delivery):
                return tried  # the head waits for its retry; the rest wait behind it
        return tried

    def _body_of(self, sub: Subscription, delivery: Delivery) -> bytes:
        if sub.format in CHAT_FORMATS:
            return render(sub.format, self._note(sub, delivery))
        if delivery.payload is not None:
            return delivery.payload.encode("utf-8")
        assert delivery.ledger_index is not None
        ledger = self._ledgers.get(sub.project)
        entry = ledger.entry(delivery.ledger_index)
        return cloud_event(
            source=self._source_of(sub.project),
            project=sub.project,
            entry=entry,
            body=_entry_body(ledger, entry.envelope, wanted=sub.include_bodies),
            message_id=delivery.message_id,
        )

    def _note(self, sub: Subscription, delivery: Delivery) -> ChatNote:
        if delivery.ledger_index is None:
            return ChatNote.test(public_url=self._public_url, project=sub.project)
        entry = self._ledgers.get(sub.project).entry(delivery.ledger_index)
        return ChatNote.of_entry(
            public_url=self._public_url,
            project=sub.project,
            index=entry.index,
            kind=entry.kind,
            envelope=json.loads(entry.envelope),
        )

    def _send(self, sub: Subscription, delivery: Delivery) -> bool:
        number = delivery.attempts + 1
        started = time.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            if sub.format in (EMAIL, DIGEST):
                self._mail(sub, delivery)
                return self._finish(delivery, number, started, None, None)
            body = self._body_of(sub, delivery)
            headers = sign_headers(
                self._secret_of(sub.id), delivery.message_id, body, datetime.now(UTC)
            )
            if sub.format in CHAT_FORMATS:
                headers = {**headers, "content-type": "application/json"}
            response = self._http.post(self._url_of(sub), content=body, headers=dict(headers))
            code = response.status_code
            if not 200 <= code < 300:
                error = f"the receiver answered {code}"
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except FlowLoomError as exc:
            error = exc.message[:500]
        return self._finish(delivery, number, started, code, error)

    def _mail(self, sub: Subscription, delivery: Delivery) -> None:
        """A person's notification: to their address now (a changed or disabled account
        is looked up at each send), never with a body."""
        if self._mailer is None:
            raise ConnectionError("this server sends no email")
        user_id = sub.url.removeprefix("mailto:")
        address = self._email_of(user_id)
        if address is None:
            raise ConnectionError(f"{user_id} has no usable email address (or is disabled)")
        if sub.format == DIGEST and delivery.payload is not None:
            subject, text = digest_text(json.loads(delivery.payload))
        else:
            subject, text = email_text(self._note(sub, delivery))
        self._mailer.send(address, subject, text, message_id=delivery.message_id)

    def _finish(
        self,
        delivery: Delivery,
        number: int,
        started: float,
        code: int | None,
        error: str | None,
    ) -> bool:
        elapsed = int((time.monotonic() - started) * 1000)
        attempt = Attempt(delivery.id, number, _now_text(), code, error, elapsed)
        if error is None:
            status, next_at = "delivered", self._clock()
        elif number >= self.settings.max_attempts:
            status, next_at = "dead", self._clock()
        else:
            status = "pending"
            next_at = self._clock() + self.settings.backoff(number, self._rng)
        self._store.finish_attempt(delivery, attempt, status=status, next_attempt_at=next_at)
        return error is None or status == "dead"


def _moved(sub: Subscription, cursor: int) -> Subscription:
    from dataclasses import replace

    return replace(sub, cursor=cursor)


def _entry_body(ledger: Ledger, envelope: bytes, *, wanted: bool) -> EntryBody:
    digest = json.loads(envelope).get("body")
    if not isinstance(digest, str):
        return EntryBody(None, "none")
    if not wanted:
        return EntryBody(None, "not_requested")
    content = ledger.read_body(digest)
    if content is None:
        return EntryBody(None, "erased")
    if len(content) > MAX_BODY_SENT:
        return EntryBody(None, "too_large")
    try:
        return EntryBody(content.decode("utf-8"), "included")
    except UnicodeDecodeError:
        return EntryBody(None, "binary")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
