"""CSV tables of an assessment: change population, exceptions, audit trail, controls.

Files follow RFC 4180: comma separated, CRLF line ends, fields quoted when they hold a
comma, a quote or a line break, UTF-8 without a byte-order mark, one header row. Lists
inside a cell are joined with "; ". Because auditors open these files in spreadsheets,
a cell that starts with = + - @ (or a tab or carriage return) is prefixed with an
apostrophe: a commit message must never become a formula on the auditor's machine.
Rows are written one at a time, so a population of any size streams to disk.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from flowloom.compliance.model import (
    Assessment,
    AuditTrailRow,
    ChangeRow,
    ControlResult,
    Finding,
    ResponseRow,
)
from flowloom.compliance.reports.atomic import atomic_text

__all__ = [
    "AUDIT_TRAIL_COLUMNS",
    "CONTROL_COLUMNS",
    "EXCEPTION_COLUMNS",
    "POPULATION_COLUMNS",
    "audit_trail_row",
    "change_row",
    "control_row",
    "exception_row",
    "render",
    "render_audit_trail",
    "render_controls",
    "render_exceptions",
    "safe_cell",
    "write_table",
]

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

POPULATION_COLUMNS: Final = (
    "commit",
    "tree",
    "branch",
    "committed_at",
    "author",
    "committer",
    "title",
    "link",
    "link_entry",
    "decisions",
    "sessions",
    "models",
    "operators",
    "approvers",
    "approval_meanings",
    "approval_times",
    "approval_entries",
    "signature_entries",
    "independent_approval",
    "approval_bound_to_tree",
    "tests",
    "ci_entries",
    "override",
    "override_entry",
    "flags",
)

EXCEPTION_COLUMNS: Final = (
    "id",
    "check",
    "severity",
    "what",
    "message",
    "commit",
    "entry",
    "actor",
    "ts",
    "details",
    "response",
    "response_owner",
    "response_due",
    "response_by",
    "response_entry",
)

AUDIT_TRAIL_COLUMNS: Final = (
    "entry",
    "ts",
    "actor",
    "actor_name",
    "action",
    "record",
    "old",
    "new",
    "why",
    "unverified",
)

CONTROL_COLUMNS: Final = (
    "framework",
    "control",
    "clause",
    "title",
    "requirement",
    "status",
    "reason",
    "coverage",
    "checks",
    "check_statuses",
    "automated_status",
    "automated_evidence",
    "exceptions",
    "notes",
    "evidence_entries",
    "evidence_commits",
    "manual_evidence",
    "requests",
    "catalogue_version",
)

T = TypeVar("T")


def safe_cell(value: Any) -> str:
    """One cell's text: None is empty, booleans are yes/no, formula starts are defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _joined(values: Iterable[Any]) -> str:
    return "; ".join(str(v) for v in values)


def change_row(change: ChangeRow) -> list[str]:
    """A change-population row, in POPULATION_COLUMNS order."""
    approvals = change.approvals
    values: list[Any] = [
        change.commit,
        change.tree,
        change.branch,
        change.committed_at,
        change.author,
        change.committer,
        change.title,
        change.link if change.link is not None else "unlinked",
        change.link_entry,
        _joined(change.decisions),
        _joined(change.sessions),
        _joined(change.models),
        _joined(change.operators),
        _joined(a.printed_name or a.approver for a in approvals),
        _joined(a.meaning for a in approvals),
        _joined(a.ts for a in approvals),
        _joined(a.entry for a in approvals),
        _joined(a.signature for a in approvals if a.signature is not None),
        any(a.independent for a in approvals) if approvals else None,
        any(a.bound_to_tree for a in approvals) if approvals else None,
        change.tests,
        _joined(change.ci_entries),
        change.override,
        change.override_entry,
        _joined(change.flags),
    ]
    return [safe_cell(v) for v in values]


def exception_row(finding: Finding, response: ResponseRow | None = None) -> list[str]:
    """An exceptions-report row, in EXCEPTION_COLUMNS order, with management's latest
    response when one is recorded."""
    details = (
        json.dumps(finding.to_json()["details"], ensure_ascii=False, sort_keys=True)
        if finding.details
        else ""
    )
    values: list[Any] = [
        finding.id,
        finding.check,
        finding.severity,
        finding.what,
        finding.message,
        finding.commit,
        finding.entry,
        finding.actor,
        finding.ts,
        details,
    ]
    if response is None:
        values.extend(["", "", "", "", ""])
    else:
        values.extend(
            [response.response, response.owner, response.due, response.by, response.entry]
        )
    return [safe_cell(v) for v in values]


def audit_trail_row(row: AuditTrailRow) -> list[str]:
    """A Part 11 audit-trail row, in AUDIT_TRAIL_COLUMNS order."""
    values: list[Any] = [
        row.entry,
        row.ts,
        row.actor,
        row.actor_name,
        row.action,
        row.record,
        row.old,
        row.new,
        row.why,
        row.unverified,
    ]
    return [safe_cell(v) for v in values]


def control_row(assessment: Assessment, result: ControlResult) -> list[str]:
    """A controls-to-requirements row, in CONTROL_COLUMNS order."""
    checks = {c.check: c for c in assessment.checks}
    ran = [checks[c] for c in result.checks if c in checks]
    control = result.control
    values: list[Any] = [
        control.framework,
        control.id,
        control.clause,
        control.title,
        control.requirement,
        result.status,
        result.note,
        control.coverage,
        _joined(control.checks),
        _joined(f"{c.check}={c.status}" for c in ran),
        result.automated,
        control.automated,
        sum(len(c.exceptions) for c in ran),
        sum(len(c.notes) for c in ran),
        _joined(sorted({i for c in ran for i in c.evidence_entries})),
        _joined(sorted({s for c in ran for s in c.evidence_commits})),
        control.manual,
        _joined(result.requests),
        control.version or assessment.catalogue_version,
    ]
    return [safe_cell(v) for v in values]


def write_table(
    out: Path, columns: Sequence[str], items: Iterable[T], row: Callable[[T], list[str]]
) -> Path:
    """Write a header and one row per item to `out`, atomically and streaming."""
    with atomic_text(out, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        for item in items:
            writer.writerow(row(item))
    return out


def render(assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """The change population: one row per first-parent commit in the period."""
    return write_table(out, POPULATION_COLUMNS, assessment.changes, change_row)


def render_exceptions(assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """The exceptions report: every finding of every check, in check order."""
    return write_table(
        out,
        EXCEPTION_COLUMNS,
        assessment.exceptions,
        lambda f: exception_row(f, assessment.response_to(f.id)),
    )


def render_audit_trail(
    assessment: Assessment, out: Path, *, bundle_dir: Path | None = None
) -> Path:
    """The Part 11 audit trail: old → new, who, when, why."""
    return write_table(out, AUDIT_TRAIL_COLUMNS, assessment.audit_trail, audit_trail_row)


def render_controls(assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """Controls to requirements: each control, its clause, its checks and their outcome."""
    return write_table(
        out, CONTROL_COLUMNS, assessment.controls, lambda r: control_row(assessment, r)
    )
