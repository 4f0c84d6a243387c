"""What a receiver gets: a CloudEvents 1.0 JSON body, signed per Standard Webhooks.

The body is built when the message is sent, from the ledger entry as stored (its
envelope was redacted before it was sealed), so an entry whose body was erased after
it was queued goes out without it. A body is included only when the subscription asks
for bodies, and only as the stored, redacted text. Each send is signed anew (a fresh
``webhook-timestamp``) under the same ``webhook-id``, so receivers can deduplicate
retries and redeliveries.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks.webhooks import Webhook

from flowloom.ledger import merkle
from flowloom.store.interface import StoredEntry

__all__ = [
    "CONTENT_TYPE",
    "MAX_BODY_SENT",
    "SECRET_PREFIX",
    "EntryBody",
    "cloud_event",
    "new_secret",
    "sign_headers",
    "test_event",
]

CONTENT_TYPE = "application/cloudevents+json"
SECRET_PREFIX = "whsec_"
TYPE_PREFIX = "dev.flowloom."
MAX_BODY_SENT = 64 * 1024
"""Larger bodies are left out of messages (the receiver can read them through the API)."""


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


@dataclass(frozen=True)
class EntryBody:
    """What became of an entry's body: its text, or why there is none."""

    text: str | None
    state: str
    """"included", "not_requested", "erased" (gone from the store), "binary", "too_large",
    or "none" (the entry has no body)."""


def cloud_event(
    *, source: str, project: str, entry: StoredEntry, body: EntryBody, message_id: str
) -> bytes:
    """The CloudEvent (structured JSON) for one ledger entry."""
    envelope: dict[str, Any] = json.loads(entry.envelope)
    attributes: dict[str, Any] = {
        "id": message_id,
        "source": source,
        "type": TYPE_PREFIX + entry.kind,
        "datacontenttype": "application/json",
        "time": _time_of(envelope.get("ts")),
        "flowloomproject": project,
        "flowloomindex": entry.index,
    }
    subject = envelope.get("subject")
    if isinstance(subject, str) and subject:
        attributes["subject"] = subject
    data: dict[str, Any] = {
        "project": project,
        "index": entry.index,
        "kind": entry.kind,
        "leaf_hash": merkle.leaf_hash(entry.envelope).hex(),
        "envelope": envelope,
        "body": body.text,
        "body_state": body.state,
    }
    return JSONFormat().write(CloudEvent(attributes, data))


def test_event(*, source: str, project: str, message_id: str, subscription_id: str) -> bytes:
    """The CloudEvent a "send test event" action queues: no ledger content at all."""
    attributes: dict[str, Any] = {
        "id": message_id,
        "source": source,
        "type": TYPE_PREFIX + "webhook.test",
        "datacontenttype": "application/json",
        "time": datetime.now(UTC),
        "flowloomproject": project,
    }
    data = {"project": project, "subscription": subscription_id, "test": True}
    return JSONFormat().write(CloudEvent(attributes, data))


def sign_headers(secret: str, message_id: str, body: bytes, at: datetime) -> Mapping[str, str]:
    """The Standard Webhooks headers for sending `body` at `at`."""
    signature = Webhook(secret).sign(message_id, at, body.decode("utf-8"))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": CONTENT_TYPE,
    }


def _time_of(ts: object) -> datetime:
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)
