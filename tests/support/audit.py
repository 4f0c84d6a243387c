"""An audit hook that keeps what it is told: (kind, project, meta), checked to be plain JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditLog:
    """Collects audit callbacks: (kind, project, meta)."""

    events: list[tuple[str, str | None, Mapping[str, Any]]] = field(default_factory=list)

    def __call__(self, kind: str, project: str | None, meta: Mapping[str, Any]) -> None:
        json.dumps(meta)  # must be plain JSON, as Ledger.record needs
        self.events.append((kind, project, meta))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def of(self, kind: str) -> list[tuple[str, str | None, Mapping[str, Any]]]:
        return [e for e in self.events if e[0] == kind]
