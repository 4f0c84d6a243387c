"""The assessment model: what a compliance run found, as plain immutable data.

One `Assessment` is the result of checking one framework's controls over one period of
one project's ledger and repository. Renderers (JSON, CSV, HTML, PDF, evidence-pack
ZIP in `flowloom.compliance.reports`) read only these classes, so a report can be
rebuilt from the JSON form (`Assessment.to_json` / `Assessment.from_json`).

Conventions:

- every timestamp is a string in the ledger's event form, UTC with six fractional
  digits and `Z` (``2026-11-22T02:40:00.123456Z``); periods are half-open,
  ``period_from <= t < period_to``;
- a check's `status` is ``pass`` (examined something and found nothing to report),
  ``flag`` (exceptions an auditor should look at), ``not_applicable`` (nothing in the
  period to examine) or ``not_assessed`` (it could not look: no repository, or it could
  not run); `reason` says why for the last two;
- a control has one of exactly five statuses (`CONTROL_STATUSES`): ``pass`` (automated
  checks cover the whole control and found nothing), ``flag``, ``manual`` (evidence the
  organisation must bring, listed in `Control.requests`), ``not_applicable`` and
  ``not_assessed``, each with its reason (`ControlResult.note`). A control only partly
  automated is never ``pass``: its automated part has its own status
  (`ControlResult.automated`) and the rest stays ``manual``;
- reports speak of "evidence for" a control, never of compliance or certification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, cast

__all__ = [
    "CHECK_STATUSES",
    "CONTROL_STATUSES",
    "DISCLAIMER",
    "SEVERITIES",
    "AnchorRow",
    "ApprovalRow",
    "Assessment",
    "AuditTrailRow",
    "ChangeRow",
    "CheckResult",
    "CheckStatus",
    "Control",
    "ControlResult",
    "ControlStatus",
    "Finding",
    "LedgerSummary",
    "Severity",
]

CheckStatus = Literal["pass", "flag", "not_applicable", "not_assessed"]
ControlStatus = Literal["pass", "flag", "manual", "not_applicable", "not_assessed"]
Severity = Literal["info", "low", "medium", "high"]

CHECK_STATUSES: Final = ("pass", "flag", "not_applicable", "not_assessed")
CONTROL_STATUSES: Final = ("pass", "flag", "manual", "not_applicable", "not_assessed")
"""The five statuses a control can have, in the order reports list them."""
SEVERITIES: Final = ("info", "low", "medium", "high")

DISCLAIMER: Final = (
    "This report presents evidence for the listed controls, produced automatically from "
    "the FlowLoom ledger and the git repository. It is not a certification or an "
    "attestation of compliance; the assessment of the controls remains the auditor's."
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Control:
    """One requirement of one framework, in FlowLoom's own words, and how it is evidenced.

    `checks` names the automated checks (`CheckResult.check`) that give evidence for
    it and `automated` says what exactly they evidence; `manual` says what stays with
    the organisation and `requests` lists that evidence item by item (what an auditor
    asks to be provided). A control with checks and requests is partly automated.
    """

    framework: str  # sox, part11, iso27001, hipaa, gdpr, soc2, euaiact, ssdf, sec17a4
    id: str  # unique within the catalogue, e.g. "part11-11.10e"
    clause: str  # as the framework numbers it, e.g. "§11.10(e)"
    title: str
    requirement: str  # paraphrased, not the regulation's text
    checks: tuple[str, ...] = ()
    manual: str = ""
    version: str = ""  # the catalogue version the control comes from
    automated: str = ""  # what the checks evidence (empty without checks)
    requests: tuple[str, ...] = ()  # the evidence the organisation must still provide

    @property
    def coverage(self) -> Literal["automated", "partly automated", "manual"]:
        """How far the automated checks cover the control."""
        if not self.checks:
            return "manual"
        return "partly automated" if self.requests else "automated"

    def to_json(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "id": self.id,
            "clause": self.clause,
            "title": self.title,
            "requirement": self.requirement,
            "checks": list(self.checks),
            "manual": self.manual,
            "version": self.version,
            "automated": self.automated,
            "requests": list(self.requests),
            "coverage": self.coverage,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Control:
        return cls(
            framework=str(data["framework"]),
            id=str(data["id"]),
            clause=str(data["clause"]),
            title=str(data["title"]),
            requirement=str(data["requirement"]),
            checks=tuple(str(c) for c in data.get("checks", ())),
            manual=str(data.get("manual", "")),
            version=str(data.get("version", "")),
            automated=str(data.get("automated", "")),
            requests=tuple(str(r) for r in data.get("requests", ())),
        )


@dataclass(frozen=True)
class Finding:
    """One thing an auditor should look at: what, where (commit / entry), who and when."""

    check: str  # the check that found it
    severity: Severity
    what: str  # a short code, e.g. "self-approved", "unlinked-commit", "revoked-actor"
    message: str  # one line, for people
    commit: str | None = None
    entry: int | None = None  # ledger index
    actor: str | None = None
    ts: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "what": self.what,
            "message": self.message,
            "commit": self.commit,
            "entry": self.entry,
            "actor": self.actor,
            "ts": self.ts,
            "details": _plain(self.details),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            check=str(data["check"]),
            severity=cast(Severity, data["severity"]),
            what=str(data["what"]),
            message=str(data["message"]),
            commit=data.get("commit"),
            entry=data.get("entry"),
            actor=data.get("actor"),
            ts=data.get("ts"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one automated check over the period."""

    check: str  # e.g. "segregation_of_duties"
    title: str
    status: CheckStatus
    summary: str  # one line: what was examined and what was found
    findings: tuple[Finding, ...] = ()
    examined: int = 0  # size of the population examined (commits, events, ...)
    evidence_entries: tuple[int, ...] = ()  # ledger indices that support the result
    evidence_commits: tuple[str, ...] = ()
    limits: str = ""  # what this check cannot see (also in docs/compliance.md)
    reason: str = ""  # why it is not_applicable or not_assessed (empty otherwise)

    @property
    def flagged(self) -> bool:
        return self.status == "flag"

    @property
    def exceptions(self) -> tuple[Finding, ...]:
        """The findings that flag it (severity other than ``info``)."""
        return tuple(f for f in self.findings if f.severity != "info")

    @property
    def notes(self) -> tuple[Finding, ...]:
        """The informational findings: listed for the auditor, never exceptions."""
        return tuple(f for f in self.findings if f.severity == "info")

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "examined": self.examined,
            "findings": [f.to_json() for f in self.findings],
            "evidence_entries": list(self.evidence_entries),
            "evidence_commits": list(self.evidence_commits),
            "limits": self.limits,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            check=str(data["check"]),
            title=str(data["title"]),
            status=cast(CheckStatus, _status(data["status"])),
            summary=str(data["summary"]),
            findings=tuple(Finding.from_json(f) for f in data.get("findings", ())),
            examined=int(data.get("examined", 0)),
            evidence_entries=tuple(int(i) for i in data.get("evidence_entries", ())),
            evidence_commits=tuple(str(c) for c in data.get("evidence_commits", ())),
            limits=str(data.get("limits", "")),
            reason=str(
                data.get("reason") or (data["summary"] if data["status"] == "error" else "")
            ),
        )


@dataclass(frozen=True)
class ControlResult:
    """One control with its status and the reason for it.

    `status` is one of `CONTROL_STATUSES`; `note` says why, in one line (which checks
    flagged, what a not-assessed check needs, why nothing applied, what stays manual).
    `automated` is the status of the automated part alone (a `CheckStatus`, empty for a
    control without checks): for a partly automated control it differs from `status`.
    """

    control: Control
    status: ControlStatus
    checks: tuple[str, ...]  # the check ids that ran for it (results in Assessment.checks)
    note: str = ""
    automated: str = ""

    @property
    def requests(self) -> tuple[str, ...]:
        """The evidence still to collect from the organisation (empty when none)."""
        return self.control.requests

    def to_json(self) -> dict[str, Any]:
        return {
            "control": self.control.to_json(),
            "status": self.status,
            "checks": list(self.checks),
            "note": self.note,
            "automated": self.automated,
            "requests": list(self.requests),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControlResult:
        return cls(
            control=Control.from_json(data["control"]),
            status=cast(ControlStatus, _status(data["status"])),
            checks=tuple(str(c) for c in data.get("checks", ())),
            note=str(data.get("note", "")),
            automated=str(data.get("automated", "")),
        )


@dataclass(frozen=True)
class ApprovalRow:
    """One approval of a change, with its Part 11 manifestation when it was signed."""

    approver: str  # user id as recorded
    printed_name: str | None
    meaning: str  # approved, reviewed, ...
    ts: str
    entry: int  # the decision.approve (or signature.apply) entry
    signature: int | None = None  # the signature.apply entry, when signed
    decision: str | None = None
    bound_to_tree: bool = False  # the approval names the tree that was merged
    independent: bool = True  # not the author, committer or AI operator

    def to_json(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "printed_name": self.printed_name,
            "meaning": self.meaning,
            "ts": self.ts,
            "entry": self.entry,
            "signature": self.signature,
            "decision": self.decision,
            "bound_to_tree": self.bound_to_tree,
            "independent": self.independent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalRow:
        return cls(
            approver=str(data["approver"]),
            printed_name=data.get("printed_name"),
            meaning=str(data["meaning"]),
            ts=str(data["ts"]),
            entry=int(data["entry"]),
            signature=data.get("signature"),
            decision=data.get("decision"),
            bound_to_tree=bool(data.get("bound_to_tree", False)),
            independent=bool(data.get("independent", True)),
        )


@dataclass(frozen=True)
class ChangeRow:
    """One first-parent commit of a protected branch in the period: the change population."""

    commit: str
    tree: str
    branch: str
    title: str  # the commit's subject line
    author: str  # "Name <email>"
    committer: str
    committed_at: str  # event-form timestamp
    link: str | None  # trailer, override, ledger, patch-id, squash; None = unlinked
    decisions: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # "model@version" of the AI sessions involved
    operators: tuple[str, ...] = ()  # people who operated those AI sessions
    approvals: tuple[ApprovalRow, ...] = ()
    tests: str = "none"  # pass, fail, none: the test results (test.result) for its tree
    ci_entries: tuple[int, ...] = ()
    override: str | None = None  # the override reason, when one let it through
    override_entry: int | None = None
    link_entry: int | None = None  # the commit.link entry
    flags: tuple[str, ...] = ()  # the `what` of every finding about this commit

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "tree": self.tree,
            "branch": self.branch,
            "title": self.title,
            "author": self.author,
            "committer": self.committer,
            "committed_at": self.committed_at,
            "link": self.link,
            "decisions": list(self.decisions),
            "sessions": list(self.sessions),
            "models": list(self.models),
            "operators": list(self.operators),
            "approvals": [a.to_json() for a in self.approvals],
            "tests": self.tests,
            "ci_entries": list(self.ci_entries),
            "override": self.override,
            "override_entry": self.override_entry,
            "link_entry": self.link_entry,
            "flags": list(self.flags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangeRow:
        return cls(
            commit=str(data["commit"]),
            tree=str(data.get("tree", "")),
            branch=str(data.get("branch", "")),
            title=str(data.get("title", "")),
            author=str(data["author"]),
            committer=str(data["committer"]),
            committed_at=str(data["committed_at"]),
            link=data.get("link"),
            decisions=tuple(data.get("decisions", ())),
            sessions=tuple(data.get("sessions", ())),
            models=tuple(data.get("models", ())),
            operators=tuple(data.get("operators", ())),
            approvals=tuple(ApprovalRow.from_json(a) for a in data.get("approvals", ())),
            tests=str(data.get("tests", "none")),
            ci_entries=tuple(int(i) for i in data.get("ci_entries", ())),
            override=data.get("override"),
            override_entry=data.get("override_entry"),
            link_entry=data.get("link_entry"),
            flags=tuple(data.get("flags", ())),
        )


@dataclass(frozen=True)
class AuditTrailRow:
    """One audit-trail line for the Part 11 view (§11.10(e)): old → new, who, when, why."""

    entry: int
    ts: str
    actor: str  # actor id
    actor_name: str | None
    action: str  # the event kind
    record: str  # what changed: a decision id, a user id, a setting, a commit
    old: str | None  # the previous value, when the event says it
    new: str | None
    why: str | None  # reason, meaning or rationale
    unverified: str | None = None
    """Why the event does not count, when it carries authority its origin does not prove
    ("unverified approval by bob at entry 12: not counted (...)"); None when it counts."""

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "ts": self.ts,
            "actor": self.actor,
            "actor_name": self.actor_name,
            "action": self.action,
            "record": self.record,
            "old": self.old,
            "new": self.new,
            "why": self.why,
            "unverified": self.unverified,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditTrailRow:
        return cls(
            entry=int(data["entry"]),
            ts=str(data["ts"]),
            actor=str(data["actor"]),
            actor_name=data.get("actor_name"),
            action=str(data["action"]),
            record=str(data["record"]),
            old=data.get("old"),
            new=data.get("new"),
            why=data.get("why"),
            unverified=data.get("unverified"),
        )


@dataclass(frozen=True)
class AnchorRow:
    """A `checkpoint.anchor` event: where a checkpoint was anchored outside the database."""

    entry: int
    ts: str
    type: str  # tsa, witness, s3, git-ref, ... as the anchoring event says
    checkpoint_size: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "ts": self.ts,
            "type": self.type,
            "checkpoint_size": self.checkpoint_size,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnchorRow:
        return cls(
            entry=int(data["entry"]),
            ts=str(data["ts"]),
            type=str(data["type"]),
            checkpoint_size=data.get("checkpoint_size"),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class LedgerSummary:
    """The state of the log the assessment read, for the chain-verification certificate."""

    project: str
    origin: str
    size: int  # entries verified
    root: str  # hex root of the tree at `size`
    checkpoint_size: int | None  # the latest signed checkpoint
    checkpoint_note: str | None  # its signed-note text (verifiable with `vkey`)
    checkpoints_checked: int
    vkey: str | None
    verified: bool  # full verification found no problem
    problems: tuple[str, ...] = ()  # one line each, from flowloom.ledger.verify
    anchors: tuple[AnchorRow, ...] = ()
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "checkpoint_size": self.checkpoint_size,
            "checkpoint_note": self.checkpoint_note,
            "checkpoints_checked": self.checkpoints_checked,
            "vkey": self.vkey,
            "verified": self.verified,
            "problems": list(self.problems),
            "anchors": [a.to_json() for a in self.anchors],
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerSummary:
        return cls(
            project=str(data["project"]),
            origin=str(data["origin"]),
            size=int(data["size"]),
            root=str(data["root"]),
            checkpoint_size=data.get("checkpoint_size"),
            checkpoint_note=data.get("checkpoint_note"),
            checkpoints_checked=int(data.get("checkpoints_checked", 0)),
            vkey=data.get("vkey"),
            verified=bool(data["verified"]),
            problems=tuple(data.get("problems", ())),
            anchors=tuple(AnchorRow.from_json(a) for a in data.get("anchors", ())),
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class Assessment:
    """Everything one compliance run found, ready to render."""

    framework: str  # sox, part11, ...
    framework_title: str  # "SOX IT general controls: change management"
    catalogue_version: str
    period_from: str  # inclusive, event-form timestamp
    period_to: str  # exclusive
    generated_at: str
    repository: str  # the repository path or remote URL
    branches: tuple[str, ...]  # the protected branches examined
    project: str
    ledger: LedgerSummary
    verifier_version: str  # the FlowLoom version that ran the checks
    controls: tuple[ControlResult, ...]
    checks: tuple[CheckResult, ...]
    changes: tuple[ChangeRow, ...] = ()  # the change population
    exceptions: tuple[Finding, ...] = ()  # every finding of every check, in check order
    audit_trail: tuple[AuditTrailRow, ...] = ()
    statement: str = DISCLAIMER
    period_label: str = ""
    """The period as requested ("2026-12-01 to 2026-12-07 (both days included, UTC)")."""
    generated_by: str = ""
    """Who generated it, and how that is known ("ann@example.com (SSH signature)")."""

    @property
    def flagged(self) -> bool:
        """Whether any check flagged something or could not look (not assessed)."""
        return any(c.status in ("flag", "not_assessed") for c in self.checks)

    def check(self, check_id: str) -> CheckResult:
        """The result of one check; KeyError when it did not run."""
        for result in self.checks:
            if result.check == check_id:
                return result
        raise KeyError(check_id)

    def counts(self) -> dict[str, int]:
        """How many controls have each status (for the report's summary line)."""
        counts = dict.fromkeys(CONTROL_STATUSES, 0)
        for result in self.controls:
            counts[result.status] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "flowloom-assessment/1",
            "framework": self.framework,
            "framework_title": self.framework_title,
            "catalogue_version": self.catalogue_version,
            "period_from": self.period_from,
            "period_to": self.period_to,
            "generated_at": self.generated_at,
            "repository": self.repository,
            "branches": list(self.branches),
            "project": self.project,
            "ledger": self.ledger.to_json(),
            "verifier_version": self.verifier_version,
            "statement": self.statement,
            "summary": self.counts(),
            "controls": [c.to_json() for c in self.controls],
            "checks": [c.to_json() for c in self.checks],
            "changes": [c.to_json() for c in self.changes],
            "exceptions": [f.to_json() for f in self.exceptions],
            "audit_trail": [r.to_json() for r in self.audit_trail],
            "period_label": self.period_label,
            "generated_by": self.generated_by,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assessment:
        return cls(
            framework=str(data["framework"]),
            framework_title=str(data["framework_title"]),
            catalogue_version=str(data["catalogue_version"]),
            period_from=str(data["period_from"]),
            period_to=str(data["period_to"]),
            generated_at=str(data["generated_at"]),
            repository=str(data["repository"]),
            branches=tuple(data.get("branches", ())),
            project=str(data["project"]),
            ledger=LedgerSummary.from_json(data["ledger"]),
            verifier_version=str(data["verifier_version"]),
            controls=tuple(ControlResult.from_json(c) for c in data.get("controls", ())),
            checks=tuple(CheckResult.from_json(c) for c in data.get("checks", ())),
            changes=tuple(ChangeRow.from_json(c) for c in data.get("changes", ())),
            exceptions=tuple(Finding.from_json(f) for f in data.get("exceptions", ())),
            audit_trail=tuple(AuditTrailRow.from_json(r) for r in data.get("audit_trail", ())),
            statement=str(data.get("statement", DISCLAIMER)),
            period_label=str(data.get("period_label", "")),
            generated_by=str(data.get("generated_by", "")),
        )


def _status(value: Any) -> str:
    """A status as read back; ``error`` (before there were five) is ``not_assessed``."""
    return "not_assessed" if value == "error" else str(value)


def _plain(value: Any) -> Any:
    """Read-only mappings and tuples back to JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
