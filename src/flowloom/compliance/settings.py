"""Compliance settings: the `[compliance]` table of the committed `.flowloom/config.toml`.

Committed beside `[policy]`, so a change to a retention period or to the window for
approving emergency overrides is reviewed like code. Keys and defaults::

    [compliance]
    override_approval_hours = 72      # an override.grant needs an approval within this
    protected_branches = ["main"]     # default: the [policy] protected_branches
    baseline = 2026-03-01             # FlowLoom's adoption: earlier commits are listed
                                      # apart (default: the log's first entry)

    [compliance.retention]            # record class -> days the bodies are kept
    conversation = 365
    record = 2557                     # about seven years
    security = 2557
    other = 2557

Unknown keys and wrong types are refused, so a typo cannot shorten retention silently.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from flowloom.errors import ConfigError
from flowloom.repo.policy import POLICY_FILE

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "RECORD_CLASSES",
    "ComplianceSettings",
    "load_compliance_settings",
    "record_class",
    "settings_from_table",
]

RECORD_CLASSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "conversation": "AI sessions: prompts, responses, tool use, file writes, model exchanges",
        "record": "Decisions, approvals, signatures, commit links, overrides, CI verdicts, "
        "configuration, retention and erasure events",
        "security": "Sign-in, access and key events (auth.*, key.*)",
        "other": "Every other kind",
    }
)
"""The record classes retention periods are set for, and what each holds."""

DEFAULT_RETENTION_DAYS: Final[Mapping[str, int]] = MappingProxyType(
    {"conversation": 365, "record": 2557, "security": 2557, "other": 2557}
)

_CONVERSATION = ("session.", "agent.", "artifact.", "gateway.", "memory.")
_RECORD = frozenset(
    {
        "decision.record",
        "decision.amend",
        "decision.approve",
        "signature.apply",
        "commit.link",
        "override.grant",
        "ci.result",
        "test.result",
        "config.change",
        "erasure.tombstone",
        "retention.set",
        "checkpoint.anchor",
        "export.generate",
        "redaction.apply",
        "compliance.response",
        "access.review_opened",
        "access.review_decided",
        "access.review_closed",
    }
)


def record_class(kind: str) -> str:
    """The record class an event kind belongs to (RECORD_CLASSES)."""
    if kind.startswith(_CONVERSATION):
        return "conversation"
    if kind in _RECORD:
        return "record"
    if kind.startswith(("auth.", "key.")):
        return "security"
    return "other"


@dataclass(frozen=True)
class ComplianceSettings:
    """What the checks and the retention purge need beyond the capture policy."""

    override_approval_window: timedelta = timedelta(hours=72)
    retention_days: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_RETENTION_DAYS))
    )
    protected_branches: tuple[str, ...] | None = None
    """None: use the capture policy's protected branches."""
    baseline: datetime | None = None
    """When FlowLoom was adopted: commits before it are pre-adoption, listed apart and never
    exceptions. None: the time of the log's first entry."""

    def retention(self, record_class: str) -> timedelta:
        """How long bodies of `record_class` must be kept."""
        days = self.retention_days.get(record_class, self.retention_days.get("other", 2557))
        return timedelta(days=days)


_KEYS = ("override_approval_hours", "protected_branches", "retention", "baseline")


def settings_from_table(table: object, *, where: str = "[compliance]") -> ComplianceSettings:
    """ComplianceSettings from a parsed `[compliance]` table, strictly."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s): {', '.join(unknown)}", hint=f"known: {', '.join(_KEYS)}"
        )
    values: dict[str, Any] = {}
    hours = table.get("override_approval_hours")
    if hours is not None:
        if isinstance(hours, bool) or not isinstance(hours, int) or hours <= 0:
            raise ConfigError(f"{where} override_approval_hours must be a positive integer")
        values["override_approval_window"] = timedelta(hours=hours)
    branches = table.get("protected_branches")
    if branches is not None:
        if not isinstance(branches, list) or not all(isinstance(b, str) and b for b in branches):
            raise ConfigError(f"{where} protected_branches must be a list of branch names")
        values["protected_branches"] = tuple(branches)
    baseline = table.get("baseline")
    if baseline is not None:
        values["baseline"] = _baseline(baseline, where)
    retention = table.get("retention")
    if retention is not None:
        if not isinstance(retention, dict):
            raise ConfigError(f"{where}.retention must be a table of record class = days")
        days = dict(DEFAULT_RETENTION_DAYS)
        for name, value in retention.items():
            if name not in RECORD_CLASSES:
                raise ConfigError(
                    f"{where}.retention has unknown record class {name!r}",
                    hint=f"classes: {', '.join(RECORD_CLASSES)}",
                )
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}.retention {name} must be a positive number of days")
            days[name] = value
        values["retention_days"] = MappingProxyType(days)
    return ComplianceSettings(**values)


def _baseline(value: object, where: str) -> datetime:
    """A baseline date (YYYY-MM-DD, quoted or not): its midnight UTC."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else None
        except ValueError:
            value = None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ConfigError(f"{where} baseline must be a date (YYYY-MM-DD)")
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def load_compliance_settings(repo_top: Path | None) -> ComplianceSettings:
    """The repository's `[compliance]` settings; defaults without a repository or table."""
    if repo_top is None:
        return ComplianceSettings()
    path = repo_top / POLICY_FILE
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return ComplianceSettings()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if "compliance" not in data:
        return ComplianceSettings()
    return settings_from_table(data["compliance"], where=f"{path} [compliance]")
