"""The captured event and its follow-ups, written once for every sink.

A captured event, as the outbox stores it and every sink receives it::

    {"kind": "...", "ts": "<when it happened>", "meta": {...}, "body": "...",
     "redactions": {"<type>": <count>}, "amend": {"decision": "D-…", "record": <entry>}}

`meta` holds the envelope fields (`actor`, `session`, `git`, `subject`, `refs`); `ts`
is taken in the hook, so the event keeps the time it happened however late it is
recorded. Two follow-ups are derived from events here and nowhere else:

- `redaction_notice`: the `redaction.apply` that names a recorded event's entry and
  counts what was redacted from it, per type (never the secrets);
- `refused_event`: the `capture.error` recorded in place of an event a sink refuses
  (its kind, the reason and the payload's digest, never its content), and
  `unreadable_file_event` for an outbox file that cannot be read at all.

Standard library only: hooks import it.
"""

from __future__ import annotations

import hashlib
import json

__all__ = [
    "digest",
    "event_meta",
    "happened_at",
    "redaction_notice",
    "refused_event",
    "unreadable_file_event",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_ERROR_CHARS = 2000
_CARRIED = ("actor", "session")
"""Who and which session a follow-up belongs to: copied from the event it follows."""


def digest(data: bytes) -> str:
    """Plain SHA-256 of `data`, as `sha256:<hex>`: names a payload without keeping it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def event_meta(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's envelope fields; an empty dict when it has none (or a bad value)."""
    meta = event.get("meta")
    return meta if isinstance(meta, dict) else {}


def happened_at(event: Mapping[str, Any], created: str | None) -> list[str]:
    """When the event happened, best first: its own `ts`, then its outbox file's time.

    Both are taken in the hook. The sink keeps the first it accepts as a timestamp.
    """
    return [ts for ts in (event.get("ts"), created) if isinstance(ts, str) and ts]


def _carried(meta: Mapping[str, Any], keys: tuple[str, ...] = _CARRIED) -> dict[str, Any]:
    return {key: meta[key] for key in keys if key in meta}


def redaction_notice(
    kind: str, counts: Mapping[str, Any], index: int, meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The `redaction.apply` event naming entry `index` (of `kind`) and what was redacted.

    `meta` is the redacted event's envelope: its actor and session carry over.
    """
    clean = {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
    refs = {"entry": index, "kind": kind, "counts": clean, "total": sum(clean.values())}
    return {"kind": "redaction.apply", "meta": {"subject": kind, "refs": refs, **_carried(meta)}}


def refused_event(event: Mapping[str, Any], agent: str, error: str) -> dict[str, Any]:
    """The `capture.error` recorded in place of `event`, which a sink refused."""
    meta = event_meta(event)
    body = event.get("body")
    raw = (
        body.encode("utf-8", "replace")
        if isinstance(body, str)
        else json.dumps(meta, sort_keys=True).encode()
    )
    kind = str(event.get("kind", "")) or "nameless"
    refs = {
        "error": f"could not record a {kind} event: {error}"[:_ERROR_CHARS],
        "payload_digest": digest(raw),
    }
    return {
        "kind": "capture.error",
        "meta": {"subject": agent or "unknown", "refs": refs, **_carried(meta)},
    }


def unreadable_file_event(name: str, error: str, raw: bytes) -> dict[str, Any]:
    """The `capture.error` recorded in place of outbox file `name`, which cannot be read."""
    refs = {
        "error": f"spool file {name} is unreadable: {error}"[:_ERROR_CHARS],
        "payload_digest": digest(raw),
    }
    return {"kind": "capture.error", "meta": {"subject": "spool", "refs": refs}}


def without_identity(event: Mapping[str, Any]) -> dict[str, Any]:
    """`event` without its actor and session: what is left to record when those are
    what the sink refused."""
    meta = {k: v for k, v in event_meta(event).items() if k not in _CARRIED}
    return {**event, "meta": meta}
