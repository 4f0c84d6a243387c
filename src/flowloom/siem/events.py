"""Which ledger events a SIEM receives, and the one shape every format starts from.

Selected: sign-ins and their failures, every role, user, team and API-key change
(`auth.*`), signing-key events (`key.*`), overrides, capture errors and bypasses,
configuration changes, signatures, and any `*_failed`/`*_denied` kind (verification and
signature failures). Only envelopes travel: bodies (prompts, diffs) never leave, and the
envelope is what erasure leaves in place anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

__all__ = ["SecurityEvent", "is_security_kind"]

_PREFIXES = ("auth.", "key.", "verify.", "siem.")
_KINDS = frozenset(
    {
        "override.grant",
        "capture.error",
        "capture.bypass",
        "config.change",
        "signature.apply",
        "retention.set",
        "erasure.tombstone",
        "export.generate",
    }
)
_FAILURES = ("_failed", ".failed", "_denied", ".denied", ".error")


def is_security_kind(kind: str) -> bool:
    """True for the kinds a SIEM destination receives."""
    return kind.startswith(_PREFIXES) or kind in _KINDS or kind.endswith(_FAILURES)


@dataclass(frozen=True)
class SecurityEvent:
    """One selected ledger entry: where it sits (log, index) and what its envelope says."""

    log: str
    index: int
    kind: str
    ts: datetime
    actor: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None
    refs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_envelope(cls, log: str, index: int, envelope: bytes | Mapping[str, Any]) -> Self:
        data = json.loads(envelope) if isinstance(envelope, bytes | bytearray) else envelope
        refs = data.get("refs")
        actor = data.get("actor")
        subject = data.get("subject")
        return cls(
            log=log,
            index=index,
            kind=str(data.get("kind", "")),
            ts=_parse_ts(str(data.get("ts", ""))),
            actor=dict(actor) if isinstance(actor, Mapping) else {},
            subject=str(subject) if subject is not None else None,
            refs=dict(refs) if isinstance(refs, Mapping) else {},
        )

    @property
    def uid(self) -> str:
        """Stable across re-deliveries: receivers that de-duplicate use it as the id."""
        return f"{self.log}/{self.index}"

    @property
    def failed(self) -> bool:
        return self.kind.endswith(_FAILURES)

    @property
    def severity(self) -> int:
        """0 (informational) .. 10 (very high), CEF's scale."""
        if self.failed:
            return 7
        if self.kind in {"override.grant", "capture.bypass"} or self.kind.startswith("key."):
            return 5
        if self.kind.startswith("auth.") and self.kind != "auth.login":
            return 3
        return 1

    @property
    def actor_name(self) -> str:
        return str(self.actor.get("name") or self.actor.get("id") or "unknown")

    @property
    def actor_id(self) -> str:
        return str(self.actor.get("id") or "unknown")

    @property
    def epoch_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)

    def summary(self) -> str:
        """A one-line human description."""
        about = f" {self.subject}" if self.subject else ""
        outcome = " (failure)" if self.failed else ""
        return f"{self.kind}{outcome} by {self.actor_name}{about}"


def _parse_ts(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
