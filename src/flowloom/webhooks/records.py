"""What the webhook tables hold, as values: subscriptions, deliveries, attempts.

Also the rules for what a subscription may name: an http(s) URL without user-info, and
event kinds that are catalogued kinds, ``<family>.*`` patterns or ``*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from flowloom.errors import InputError
from flowloom.ledger.event import KIND_FAMILIES, KINDS, is_known_kind

__all__ = [
    "DELIVERY_STATUSES",
    "Attempt",
    "Delivery",
    "Subscription",
    "check_kinds",
    "check_url",
    "matches",
]

DELIVERY_STATUSES = ("pending", "delivered", "dead")
"""A queued message waits (pending), reached its receiver (delivered) or gave up (dead)."""


@dataclass(frozen=True)
class Subscription:
    """One receiver of one project's events of the kinds it names."""

    id: str
    project: str
    url: str
    kinds: tuple[str, ...]
    description: str
    include_bodies: bool
    enabled: bool
    cursor: int
    """The next ledger index of the project that is not yet queued for this receiver."""
    created_by: str
    created_at: str
    updated_at: str
    format: str = "cloudevents"
    next_digest_at: float = 0.0
    """For an email digest: when the next one is due (POSIX seconds)."""
    """"cloudevents", or a chat target ("slack", "teams"), whose URL is stored sealed
    (`url` is then only what may be shown of it)."""

    def wants(self, kind: str) -> bool:
        return matches(self.kinds, kind)


@dataclass(frozen=True)
class Delivery:
    """One message queued for one subscription; retries keep its message id."""

    id: int
    subscription_id: str
    project: str
    message_id: str
    kind: str
    ledger_index: int | None
    """The entry the message is about; None for a test event (then `payload` is set)."""
    payload: str | None
    status: str
    attempts: int
    next_attempt_at: float
    redelivery_of: int | None
    created_at: str
    finished_at: str | None


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery: the receiver's status code, or why none came."""

    delivery_id: int
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


def matches(patterns: Sequence[str], kind: str) -> bool:
    """Whether `kind` is one of `patterns` ("*", a kind, or "<prefix>.*")."""
    for pattern in patterns:
        if pattern == "*" or pattern == kind:
            return True
        if pattern.endswith(".*") and kind.startswith(pattern[:-1]):
            return True
    return False


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """`kinds` deduplicated, each a known kind, a known prefix with ".*", or "*"."""
    clean: list[str] = []
    for raw in kinds:
        kind = raw.strip()
        if kind == "*" or is_known_kind(kind):
            clean.append(kind)
            continue
        prefix = kind[:-2] if kind.endswith(".*") else None
        if prefix and (prefix in KIND_FAMILIES or any(k.startswith(prefix + ".") for k in KINDS)):
            clean.append(kind)
            continue
        raise InputError(
            f"unknown event kind {kind!r} for a webhook",
            hint="name catalogued kinds (docs/events.md), a family such as 'decision.*', or '*'",
        )
    if not clean:
        raise InputError("a webhook needs at least one event kind", hint="'*' sends every kind")
    return tuple(dict.fromkeys(clean))


def check_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL without user-info; InputError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"a webhook URL must be an absolute http(s) URL, not {url!r}",
            hint="e.g. https://hooks.example.org/flowloom",
        )
    if parts.username is not None or parts.password is not None:
        raise InputError(
            "a webhook URL must not carry a user name or password",
            hint="receivers authenticate FlowLoom by the signature, with the secret shown once",
        )
    if len(url) > 2000:
        raise InputError("a webhook URL must be at most 2000 characters")
    return url.strip()
