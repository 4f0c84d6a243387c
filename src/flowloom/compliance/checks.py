"""The automated checks: each reads the ledger (and git) for a period and returns evidence.

A check is a function of a `CheckContext` returning a `CheckResult`; `CHECKS` maps each
check id to its title, its function and what it cannot see (the same words are in
docs/compliance.md). Findings of severity ``info`` are listed but do not flag a check:
they are facts the auditor may want (an override that was approved, an anchor missing)
rather than exceptions.

Checks count only the authority-bearing events whose origin the assessment's `Trust`
proves (`LedgerView.of`): a forged approval, signature, hold, CI verdict, anchor or
erasure never counts. Each one is listed once, by trail_integrity, as what it is
("unverified approval by bob at entry 12: not counted"), and the check it would have
satisfied names it beside its own finding.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from flowloom.compliance.changes import Change, Population, git_object_digest
from flowloom.compliance.history import Entry, LedgerView, Period
from flowloom.compliance.model import CheckResult, CheckStatus, Finding, Severity
from flowloom.compliance.retention import hold_covers, holds
from flowloom.compliance.settings import ComplianceSettings, record_class
from flowloom.decisions.records import DecisionBook, content_digest
from flowloom.errors import FlowLoomError
from flowloom.ledger import merkle
from flowloom.ledger.event import format_ts
from flowloom.ledger.identity import names_of
from flowloom.ledger.log import Ledger
from flowloom.ledger.verify import VerifyReport, verify_store
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import Policy
from flowloom.store.interface import StoredCheckpoint

__all__ = ["CHECKS", "CheckContext", "CheckSpec", "anchor_point", "run_check", "tested_tree_of"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MEANINGS = ("authored", "reviewed", "approved", "responsible")
_APPROVING = ("approved", "reviewed")
_VERSIONED = re.compile(r"\d")


@dataclass
class CheckContext:
    """What every check reads; built once per assessment by flowloom.compliance.assess."""

    ledger: Ledger
    view: LedgerView
    period: Period
    now: datetime
    policy: Policy
    settings: ComplianceSettings
    repo: GitRepo | None = None
    population: Population | None = None
    checkpoint: StoredCheckpoint | None = None
    """The signed checkpoint the assessment reads (its snapshot); None: the latest."""
    size: int | None = None
    """How many entries the assessment reads (the snapshot's size); None: all."""
    _changes: list[Change] | None = field(default=None, repr=False)
    _verify: VerifyReport | None = field(default=None, repr=False)

    @property
    def book(self) -> DecisionBook:
        return DecisionBook(self.ledger, trust=self.view.trust)

    def changes(self) -> list[Change]:
        """The change population (empty without a repository)."""
        if self._changes is None:
            self._changes = self.population.changes() if self.population is not None else []
        return self._changes

    def verification(self) -> VerifyReport:
        """Full verification of the log: every entry, checkpoint and body."""
        if self._verify is None:
            ledger = self.ledger
            self._verify = verify_store(
                ledger.store,
                ledger.log,
                ledger.verifier,
                decrypt=lambda stored: ledger.read_body(stored.digest),
                upto=self.size,
            )
        return self._verify

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint the assessment is computed at (the snapshot's, else the latest)."""
        if self.checkpoint is not None:
            return self.checkpoint
        return self.ledger.store.latest_checkpoint(self.ledger.log)

    def in_period(self, entries: Iterable[Entry]) -> list[Entry]:
        return [e for e in entries if e.at in self.period]


CheckFunction = Callable[[CheckContext], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    """One check: its id, title, function and what it cannot see."""

    id: str
    title: str
    run: CheckFunction
    limits: str
    needs_git: bool = False


def _result(
    spec_id: str,
    findings: list[Finding],
    *,
    examined: int,
    summary: str,
    empty: str,
    entries: Iterable[int] = (),
    commits: Iterable[str] = (),
) -> CheckResult:
    """The check's result; `empty` says what "nothing to examine" means for this check
    (the reason a check that examined nothing is not_applicable)."""
    spec = CHECKS[spec_id]
    status: CheckStatus
    reason = ""
    if any(f.severity != "info" for f in findings):
        status = "flag"
    elif examined == 0:
        status = "not_applicable"
        reason = empty
    else:
        status = "pass"
    return CheckResult(
        check=spec_id,
        title=spec.title,
        status=status,
        summary=summary,
        findings=tuple(findings),
        examined=examined,
        evidence_entries=tuple(sorted(set(entries))),
        evidence_commits=tuple(dict.fromkeys(commits)),
        limits=spec.limits,
        reason=reason,
    )


def _finding(
    check: str,
    severity: Severity,
    what: str,
    message: str,
    *,
    commit: str | None = None,
    entry: Entry | None = None,
    index: int | None = None,
    actor: str | None = None,
    ts: str | None = None,
    **details: Any,
) -> Finding:
    return Finding(
        check=check,
        severity=severity,
        what=what,
        message=message,
        commit=commit,
        entry=entry.index if entry is not None else index,
        actor=actor if actor is not None else (entry.event.actor.id if entry else None),
        ts=ts if ts is not None else (entry.ts if entry else None),
        details={k: v for k, v in details.items() if v is not None},
    )


# -- segregation of duties --------------------------------------------------------------


def check_segregation(ctx: CheckContext) -> CheckResult:
    """Every change approved by someone else, the approval bound to the merged tree."""
    name = "segregation_of_duties"
    if ctx.population is None:
        return _no_git(name, ctx)
    findings: list[Finding] = []
    entries: list[int] = []
    changes = ctx.changes()
    for change in changes:
        sha = change.commit.sha
        when = format_ts(change.committed_at)
        author = str(change.commit.author)
        if not change.decisions:
            if change.overrides and change.linked:
                findings.append(
                    _finding(
                        name, "info", "override",
                        f"{sha[:12]} reached {change.branch} under an override "
                        "(its approval is judged by override_approval)",
                        commit=sha, actor=author, ts=when, reason=change.overrides[0],
                    )
                )  # fmt: skip
                continue
            findings.append(
                _finding(
                    name, "high", "unapproved",
                    f"{sha[:12]} on {change.branch} has no linked decision, so no approval",
                    commit=sha, actor=author, ts=when,
                )
            )  # fmt: skip
            continue
        approving = [a for a in change.approvals if a.counts]
        independent = [a for a in approving if not (a.identities & change.excluded.keys())]
        bound = [a for a in independent if a.bound_to_tree]
        entries.extend(a.entry for a in change.approvals)
        if bound:
            continue
        unverified = _notes(change.unverified)
        if independent:
            findings.append(
                _finding(
                    name, "medium", "approval-not-bound-to-tree",
                    f"{sha[:12]} was approved by "
                    f"{independent[0].printed_name or independent[0].approver}, but no approval "
                    f"names the merged tree {change.tree[:12]}",
                    commit=sha, actor=author, ts=when, tree=change.tree,
                    approvals=[a.entry for a in independent], **unverified,
                )
            )  # fmt: skip
        elif approving:
            people = sorted({a.approver for a in approving})
            why = sorted(
                {
                    change.excluded[i]
                    for a in approving
                    for i in a.identities & change.excluded.keys()
                }
            )
            findings.append(
                _finding(
                    name, "high", "self-approved",
                    f"{sha[:12]} was approved only by {', '.join(people)}, who "
                    f"{' and '.join(why)}",
                    commit=sha, actor=author, ts=when, approvers=people, **unverified,
                )
            )  # fmt: skip
        else:
            findings.append(
                _finding(
                    name, "high", "unapproved",
                    f"{sha[:12]} on {change.branch}: decision "
                    f"{', '.join(d.id for d in change.decisions)} has no proven approval"
                    + _also(change.unverified),
                    commit=sha, actor=author, ts=when,
                    decisions=[d.id for d in change.decisions], **unverified,
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(changes),
        empty="no change reached a protected branch in the period",
        summary=f"{len(changes)} changes on protected branches; "
        f"{_count(findings)} without an independent approval bound to the merged tree",
        entries=entries,
        commits=[c.commit.sha for c in changes],
    )


# -- completeness ---------------------------------------------------------------------


def check_completeness(ctx: CheckContext) -> CheckResult:
    """Commits in git == commits linked in the ledger; rewritten history and bypasses listed."""
    name = "completeness"
    findings: list[Finding] = []
    population = ctx.population
    if population is None:
        return _no_git(name, ctx)
    examined = 0
    commits_seen: list[str] = []
    reachable: dict[str, set[str]] = {}
    for branch in population.branches:
        commits = population.branch_commits(branch, first_parent=False)
        reachable[branch] = set(population.repo.rev_list(f"refs/heads/{branch}"))
        for commit in commits:
            if commit.is_merge:
                continue
            examined += 1
            commits_seen.append(commit.sha)
            link = population.finder.find(commit)
            when = format_ts(population.repo_time(commit))
            author = str(commit.author)
            recorded = population.link_entries.get(commit.sha)
            if link is None or not link.linked:
                findings.append(
                    _finding(
                        name, "high", "unlinked-commit",
                        f"{commit.sha[:12]} on {branch} has no decision link and no commit.link "
                        "event: a direct push, or a commit made with the hooks bypassed",
                        commit=commit.sha, actor=author, ts=when, branch=branch,
                    )
                )  # fmt: skip
            elif recorded is None and link.how in ("trailer", "override"):
                findings.append(
                    _finding(
                        name, "medium", "link-not-recorded",
                        f"{commit.sha[:12]} carries FlowLoom trailers but the ledger has no "
                        "commit.link for it: its post-commit hook did not run",
                        commit=commit.sha, actor=author, ts=when, branch=branch,
                    )
                )  # fmt: skip
            elif link.override is not None and not link.decisions:
                findings.append(
                    _finding(
                        name, "info", "override",
                        f"{commit.sha[:12]} was let through by an override: {link.override}",
                        commit=commit.sha, actor=author, ts=when, branch=branch,
                    )
                )  # fmt: skip
    # Linked in the ledger but gone from the branch: history was rewritten after linking.
    for entry in ctx.in_period(ctx.view.of("commit.link")):
        linked_on = entry.event.refs.get("branch")
        sha = entry.event.subject
        if not isinstance(linked_on, str) or linked_on not in reachable or not sha:
            continue
        if sha not in reachable[linked_on]:
            findings.append(
                _finding(
                    name, "high", "linked-commit-missing",
                    f"the ledger linked {sha[:12]} on {linked_on}, but {linked_on} no longer "
                    "contains it: the branch was rewritten (force push or reset)",
                    commit=sha, entry=entry, branch=linked_on,
                )
            )  # fmt: skip
    for branch in population.branches:
        for move in population.moves[branch]:
            if move.at not in ctx.period or set(move.old) == {"0"}:
                continue
            if not population.repo.is_ancestor(move.old, move.new):
                findings.append(
                    _finding(
                        name, "high", "history-rewritten",
                        f"{branch} moved from {move.old[:12]} to {move.new[:12]}, which does not "
                        f"contain it ({move.message})",
                        commit=move.new, ts=format_ts(move.at), branch=branch, old=move.old,
                    )
                )  # fmt: skip
    return _result(
        name,
        findings,
        examined=examined,
        empty="no commit reached a protected branch in the period",
        summary=f"{examined} commits on protected branches compared with the ledger's links; "
        f"{_count(findings)} exceptions",
        entries=[e.index for e in ctx.in_period(ctx.view.of("commit.link"))],
        commits=commits_seen,
    )


# -- security scanned -----------------------------------------------------------------------


def check_scanned(ctx: CheckContext) -> CheckResult:
    """Security scanner results (SARIF, ``scan.result``) for each change's exact tree.

    Until the project has recorded any scan, the check is not applicable (no scanner is
    in use as far as the ledger shows); from then on every change that reached a
    protected branch needs a scan of its tree, and a scan with error-level results is
    reported with the rules and the decisions behind the flagged lines.
    """
    name = "security_scanned"
    population = ctx.population
    if population is None:
        return _no_git(name, ctx)
    scans = ctx.view.of("scan.result")
    changes = ctx.changes()
    if not scans:
        return _result(
            name,
            [],
            examined=0,
            empty="no security scanner results were ever recorded "
            "('flowloom scan ingest FILE.sarif' records them)",
            summary="no scanner results recorded",
        )
    findings: list[Finding] = []
    evidence: list[int] = []
    for change in changes:
        sha = change.commit.sha
        mine = [e for e in scans if e.event.refs.get("tree") == change.tree]
        when = format_ts(change.committed_at)
        author = str(change.commit.author)
        if not mine:
            findings.append(
                _finding(
                    name, "medium", "unscanned",
                    f"{sha[:12]} on {change.branch}: no security scanner results recorded for "
                    f"its tree {change.tree[:12]}; run the scanners on it and record them with "
                    "'flowloom scan ingest FILE.sarif'",
                    commit=sha, actor=author, ts=when, tree=change.tree,
                )
            )  # fmt: skip
            continue
        latest = max(mine, key=lambda e: e.index)
        evidence.append(latest.index)
        errors = latest.event.refs.get("errors")
        if isinstance(errors, int) and errors > 0:
            listed = latest.event.refs.get("results") or []
            rules = sorted(
                {
                    str(r.get("rule"))
                    for r in listed
                    if isinstance(r, Mapping) and r.get("level") == "error"
                }
            )
            decisions = latest.event.refs.get("decisions") or []
            findings.append(
                _finding(
                    name, "high", "scan-errors",
                    f"{sha[:12]} on {change.branch}: the scan of its tree (entry {latest.index}) "
                    f"has {errors} error-level result{'s' if errors != 1 else ''} "
                    f"({', '.join(rules[:5])})",
                    commit=sha, actor=author, ts=when, scan_entry=latest.index,
                    decisions=list(decisions) or None,
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(changes),
        empty="no change reached a protected branch in the period",
        summary=f"{len(changes)} changes; {_count(findings)} unscanned or with error-level "
        "scanner results",
        entries=evidence,
        commits=[c.commit.sha for c in changes],
    )


# -- tested before deploy -------------------------------------------------------------------


def tested_tree_of(entry: Entry) -> str | None:
    """The tree a ``test.result`` says was tested (refs.tree), when it says so."""
    tree = entry.event.refs.get("tree")
    return tree if isinstance(tree, str) and tree else None


def check_tested(ctx: CheckContext) -> CheckResult:
    """Passing test results for each change's exact tree before it reached the branch.

    The evidence is ``test.result`` (`flowloom ci record`: JUnit results bound to the
    tree that was tested); the gate's own verdict (``ci.result``) says the commits are
    linked and approved, not that any test ran, so it never counts here.
    """
    name = "tested_before_deploy"
    findings: list[Finding] = []
    population = ctx.population
    if population is None:
        return _no_git(name, ctx)
    results = ctx.view.of("test.result")
    forged = ctx.view.unverified("test.result")
    gate = ctx.view.of("ci.result")
    evidence: list[int] = []
    changes = ctx.changes()

    def results_of(change: Change, pool: list[Entry]) -> list[Entry]:
        return [e for e in pool if tested_tree_of(e) == change.tree]

    def gated(change: Change) -> bool:
        for entry in gate:
            head = entry.event.git.head if entry.event.git is not None else None
            if head is not None and (
                head == change.commit.sha or population.tree_of(head) == change.tree
            ):
                return True
        return False

    for change in changes:
        sha = change.commit.sha
        relevant = results_of(change, results)
        passing = [e for e in relevant if e.event.refs.get("ok") is True]
        evidence.extend(e.index for e in passing)
        when = format_ts(change.committed_at)
        author = str(change.commit.author)
        if not passing:
            failing = [e for e in relevant if e.event.refs.get("ok") is not True]
            unproven = [(e.index, ctx.view.note(e)) for e in results_of(change, forged)]
            if failing:
                what = "tests-failed"
                names = [n for e in failing for n in e.event.refs.get("failing") or ()][:5]
                said = f" ({', '.join(map(str, names))})" if names else ""
                message = (
                    f"{sha[:12]} on {change.branch}: the tests recorded for its tree "
                    f"{change.tree[:12]} failed{said}, and no passing run was recorded"
                )
            else:
                what = "untested"
                message = (
                    f"{sha[:12]} on {change.branch}: no test results recorded for its tree "
                    f"{change.tree[:12]}"
                    + (
                        " (a passing gate verdict, ci.result, is not a test run)"
                        if gated(change)
                        else ""
                    )
                    + "; run the tests in CI and record them with "
                    "'flowloom ci record --junit PATH'"
                )
            findings.append(
                _finding(
                    name, "high", what, message + _also(unproven),
                    commit=sha, actor=author, ts=when, tree=change.tree,
                    test_entries=[e.index for e in failing] or None, **_notes(unproven),
                )
            )  # fmt: skip
            continue
        first = min(passing, key=lambda e: e.at)
        if change.reached_at is not None and first.at > change.reached_at:
            findings.append(
                _finding(
                    name, "medium", "tested-after-deploy",
                    f"{sha[:12]} reached {change.branch} at {format_ts(change.reached_at)}, "
                    f"before its first passing test results (entry {first.index})",
                    commit=sha, actor=author, ts=when, test_entry=first.index,
                )
            )  # fmt: skip
        elif not any(_ci_verified(e) for e in passing):
            findings.append(
                _finding(
                    name, "info", "ci-identity-unverified",
                    f"{sha[:12]}: its passing test results (entry {first.index}) name no "
                    "verified CI run (no OIDC identity token): where they ran is only claimed",
                    commit=sha, actor=author, ts=when, test_entry=first.index,
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(changes),
        empty="no change reached a protected branch in the period",
        summary=f"{len(changes)} changes; "
        f"{_count(findings)} without passing test results for their tree "
        "before they reached the branch",
        entries=evidence,
        commits=[c.commit.sha for c in changes],
    )


def _ci_verified(entry: Entry) -> bool:
    run = entry.event.refs.get("ci")
    return isinstance(run, Mapping) and run.get("verified") is True


# -- overrides --------------------------------------------------------------------------


def check_overrides(ctx: CheckContext) -> CheckResult:
    """Every emergency override approved afterwards by someone else within the window."""
    name = "override_approval"
    window = ctx.settings.override_approval_window
    findings: list[Finding] = []
    grants = ctx.in_period(ctx.view.of("override.grant"))
    signatures = ctx.view.of("signature.apply")
    forged = ctx.view.unverified("signature.apply")
    evidence: list[int] = []
    for grant in grants:
        unproven = [
            (s.index, ctx.view.note(s)) for s in forged if s.event.subject == f"entry:{grant.index}"
        ]
        granter = names_of(grant.event.actor.id)
        if grant.event.actor.name:
            granter |= names_of(grant.event.actor.name)
        approvals = [
            s
            for s in signatures
            if s.event.subject == f"entry:{grant.index}"
            and s.event.refs.get("meaning") in _APPROVING
            and s.at >= grant.at
        ]
        independent = [a for a in approvals if not (_signer_names(a) & granter)]
        timely = [a for a in independent if a.at - grant.at <= window]
        reason = grant.event.refs.get("reason")
        if timely:
            evidence.extend([grant.index, timely[0].index])
            findings.append(
                _finding(
                    name, "info", "override-approved",
                    f"override at entry {grant.index} ({reason}) approved by "
                    f"{timely[0].event.actor.name or timely[0].event.actor.id} at {timely[0].ts}",
                    entry=grant, approval=timely[0].index,
                )
            )  # fmt: skip
        elif independent:
            late = independent[0]
            findings.append(
                _finding(
                    name, "medium", "override-approved-late",
                    f"override at entry {grant.index} was approved at {late.ts}, after the "
                    f"{_hours(window)} h window",
                    entry=grant, approval=late.index, reason=reason,
                )
            )  # fmt: skip
        elif approvals:
            findings.append(
                _finding(
                    name, "high", "override-self-approved",
                    f"override at entry {grant.index} was approved only by the person who "
                    "granted it",
                    entry=grant, reason=reason,
                )
            )  # fmt: skip
        elif ctx.now - grant.at <= window:
            findings.append(
                _finding(
                    name, "info", "override-approval-pending",
                    f"override at entry {grant.index} awaits approval (window open until "
                    f"{format_ts(grant.at + window)})" + _also(unproven),
                    entry=grant, reason=reason, **_notes(unproven),
                )
            )  # fmt: skip
        else:
            findings.append(
                _finding(
                    name, "high", "override-unapproved",
                    f"override at entry {grant.index} ({reason}) was never approved within "
                    f"{_hours(window)} h" + _also(unproven),
                    entry=grant, reason=reason, **_notes(unproven),
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(grants),
        empty="no emergency override was granted in the period",
        summary=f"{len(grants)} overrides; {_count(findings)} not approved by someone else "
        f"within {_hours(window)} h",
        entries=evidence,
    )


# -- trail integrity ------------------------------------------------------------------------


def check_integrity(ctx: CheckContext) -> CheckResult:
    """Full verification of the log, its checkpoints and bodies; anchors listed."""
    name = "trail_integrity"
    report = ctx.verification()
    findings = [
        _finding(name, "high", "verification-problem", problem.line(), index=problem.index)
        for problem in report.problems
    ]
    latest = ctx.latest_checkpoint()
    if latest is None:
        findings.append(
            _finding(name, "medium", "no-checkpoint", "the log has no signed checkpoint")
        )
    elif latest.size < report.size:
        tail = [e for e in ctx.view.entries if e.index >= latest.size]
        in_period = any(e.at < ctx.period.end for e in tail)
        findings.append(
            _finding(
                name,
                "low" if in_period else "info",
                "unsigned-tail",
                f"entries {latest.size}..{report.size - 1} are not yet covered by a signed "
                "checkpoint ('flowloom log checkpoint' signs one)",
            )
        )
    anchors = ctx.view.of("checkpoint.anchor")
    for anchor in anchors:
        size, root = anchor_point(anchor)
        known = size is not None and root is not None and size <= report.size
        if known and size is not None and root != merkle.root_at(size, ctx.ledger.lookup()):
            findings.append(
                    _finding(
                        name, "high", "anchor-mismatch",
                        f"anchor at entry {anchor.index} signs another tree at size {size} "
                        "than this log holds",
                        entry=anchor,
                    )
                )  # fmt: skip
        if size is not None and size > report.size:
            findings.append(
                _finding(
                    name, "high", "anchor-beyond-log",
                    f"anchor at entry {anchor.index} covers {size} entries but the log has "
                    f"{report.size}: the log was rolled back",
                    entry=anchor,
                )
            )  # fmt: skip
    if not anchors:
        findings.append(
            _finding(
                name, "info", "no-anchor",
                "no checkpoint is anchored outside the database (TSA, witness, object lock)",
            )
        )  # fmt: skip
    unproven = _unverified_findings(ctx, name)
    findings.extend(unproven)
    return _result(
        name,
        findings,
        examined=report.size,
        empty="the log is empty",
        summary=f"{report.size} entries, {report.checkpoints_checked} checkpoints and "
        f"{report.bodies_checked} bodies verified; {len(report.problems)} problems; "
        f"{len(anchors)} anchors; {len(unproven)} authority-bearing events whose origin is "
        "not proven (not counted)",
        entries=[a.index for a in anchors],
    )


def _unverified_findings(ctx: CheckContext, name: str) -> list[Finding]:
    """Every authority-bearing event of the period that does not count, once each.

    One with no trusted attestation was not written where its rule is enforced (forged,
    or written by a key this reader does not trust): medium. One FlowLoom's own command
    wrote, but whose person nothing proves (a local approval without the approver's
    signature), is listed for information: the check it would satisfy flags the gap.
    """
    findings = []
    for entry in ctx.in_period([*ctx.view.unverified(), *ctx.view.instance_unverified]):
        proven = ctx.view.provenance(entry)
        findings.append(
            _finding(
                name,
                "info" if proven.attested else "medium",
                "person-unproven" if proven.attested else "unverified-event",
                ctx.view.note(entry),
                entry=entry,
                kind=entry.kind,
                log=entry.log if entry.log != ctx.view.log else None,
                reason=proven.reason or None,
            )
        )
    return findings


# -- signatures ---------------------------------------------------------------------------


def check_signatures(ctx: CheckContext) -> CheckResult:
    """Signatures carry name, time, meaning and digest; approvals refer to their signature."""
    name = "signature_manifestation"
    findings: list[Finding] = []
    signatures = ctx.in_period(ctx.view.of("signature.apply"))
    for sig in signatures:
        refs = sig.event.refs
        missing = [
            key
            for key, ok in (
                ("printed_name", bool(_text_ref(refs, "printed_name"))),
                ("signer", bool(_text_ref(refs, "signer"))),
                ("meaning", refs.get("meaning") in _MEANINGS),
                ("content_digest", isinstance(refs.get("content_digest"), str)
                 and _DIGEST.fullmatch(refs["content_digest"])),
                ("components", bool(refs.get("components"))),
                ("subject", bool(sig.event.subject)),
            )
            if not ok
        ]  # fmt: skip
        if missing:
            findings.append(
                _finding(
                    name, "high", "signature-incomplete",
                    f"signature at entry {sig.index} lacks {', '.join(missing)}",
                    entry=sig, missing=missing,
                )
            )  # fmt: skip
            continue
        if refs.get("signer") != sig.event.actor.id:
            findings.append(
                _finding(
                    name, "high", "signature-signer-mismatch",
                    f"signature at entry {sig.index} names signer {refs.get('signer')} but was "
                    f"recorded by {sig.event.actor.id}",
                    entry=sig,
                )
            )  # fmt: skip
        current = _current_digest(ctx, sig.event.subject or "")
        if current is not None and current != refs.get("content_digest"):
            findings.append(
                _finding(
                    name, "high", "signature-content-mismatch",
                    f"signature at entry {sig.index} signed {refs.get('content_digest')} but "
                    f"{sig.event.subject} is {current}",
                    entry=sig,
                )
            )  # fmt: skip
    approvals = ctx.in_period(ctx.view.of("decision.approve"))
    for approval in approvals:
        index = approval.event.refs.get("signature")
        if not isinstance(index, int) or isinstance(index, bool):
            findings.append(
                _finding(
                    name, "medium", "approval-unsigned",
                    f"approval at entry {approval.index} of {approval.event.subject} is not an "
                    "electronic signature",
                    entry=approval,
                )
            )  # fmt: skip
            continue
        sig_entry = ctx.view.at(index)
        problem = None
        if sig_entry is None or sig_entry.kind != "signature.apply":
            problem = f"entry {index} is not a signature"
        elif sig_entry.event.subject != f"decision:{approval.event.subject}":
            problem = f"signature {index} is of {sig_entry.event.subject}"
        elif sig_entry.event.refs.get("content_digest") != approval.event.refs.get(
            "content_digest"
        ):
            problem = f"signature {index} signed other content"
        elif sig_entry.event.actor.id != approval.event.actor.id:
            problem = f"signature {index} was applied by {sig_entry.event.actor.id}"
        if problem is not None:
            findings.append(
                _finding(
                    name, "high", "approval-signature-mismatch",
                    f"approval at entry {approval.index}: {problem}",
                    entry=approval, signature=index,
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(signatures) + len(approvals),
        empty="no electronic signature or approval was recorded in the period",
        summary=f"{len(signatures)} signatures and {len(approvals)} approvals; "
        f"{_count(findings)} exceptions",
        entries=[s.index for s in signatures],
    )


def anchor_point(anchor: Entry) -> tuple[int | None, bytes | None]:
    """(tree size, root) a checkpoint.anchor event anchors, when it says."""
    checkpoint = anchor.event.refs.get("checkpoint")
    if not isinstance(checkpoint, Mapping):
        return None, None
    size = checkpoint.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        return None, None
    try:
        root = base64.b64decode(str(checkpoint.get("root", "")), validate=True)
    except ValueError:
        root = None
    return size, root or None


def _current_digest(ctx: CheckContext, subject: str) -> str | None:
    kind, _, ref = subject.partition(":")
    if kind == "entry" and ref.isdigit():
        stored = ctx.ledger.store.entry(ctx.ledger.log, int(ref))
        return content_digest(stored.envelope) if stored is not None else "missing"
    if kind == "decision":
        try:
            return ctx.book.get(ref).content_digest
        except FlowLoomError:
            return "missing"
    if kind in ("tree", "commit") and ref:
        return git_object_digest(ref)
    return None  # other subjects: the holder of the content checks the binding


# -- access --------------------------------------------------------------------------------


def check_access(ctx: CheckContext) -> CheckResult:
    """No events from users while they were disabled, nor from keys after revocation."""
    name = "access_revocation"
    # user id (and email) -> its disabled spells: (disabled or deleted, enabled again or None)
    spells: dict[str, list[tuple[Entry, Entry | None]]] = {}
    revoked: dict[str, Entry] = {}
    emails: dict[str, str] = {}  # user id -> email, so locally recorded events match too
    security = sorted([*ctx.view.instance, *ctx.view.family("auth.")], key=lambda e: e.at)
    for entry in security:
        refs = entry.event.refs
        if entry.kind == "auth.user_created":
            user, email = refs.get("user_id"), refs.get("email")
            if isinstance(user, str) and isinstance(email, str):
                emails[user] = email
    for entry in security:
        refs = entry.event.refs
        if entry.kind in ("auth.user_disabled", "auth.user_deleted", "auth.user_enabled"):
            user = refs.get("user_id") or entry.event.subject
            if not isinstance(user, str):
                continue
            for who in {user, emails.get(user, user)}:
                seen = spells.setdefault(who, [])
                still = bool(seen) and seen[-1][1] is None
                if entry.kind == "auth.user_enabled" and still:
                    seen[-1] = (seen[-1][0], entry)
                elif entry.kind != "auth.user_enabled" and not still:
                    seen.append((entry, None))
        elif entry.kind == "auth.key_revoked":
            key = refs.get("key_id") or entry.event.subject
            if isinstance(key, str):
                revoked.setdefault(key, entry)
    disabled = list({id(s): s for seen in spells.values() for s, _ in seen}.values())
    findings: list[Finding] = []
    examined = ctx.in_period(ctx.view.entries)
    for entry in examined:
        event = entry.event
        actors = {event.actor.id}
        submitted = event.refs.get("submitted_by")
        if isinstance(submitted, Mapping) and isinstance(submitted.get("id"), str):
            actors.add(submitted["id"])
        for actor in sorted(actors):
            gone = next(
                (
                    start
                    for start, end in spells.get(actor, ())
                    if entry.at > start.at and (end is None or entry.at < end.at)
                ),
                None,
            )
            if gone is not None and entry is not gone:
                findings.append(
                    _finding(
                        name, "high", "disabled-user-activity",
                        f"{actor} acted ({entry.kind}, entry {entry.index}) after being disabled "
                        f"at {gone.ts}",
                        entry=entry, actor=actor, disabled_entry=gone.index, disabled_log=gone.log,
                    )
                )  # fmt: skip
        for key_field in ("auth_key", "key_id"):
            key = event.refs.get(key_field)
            if not isinstance(key, str) or key not in revoked or entry.kind == "auth.key_revoked":
                continue
            gone = revoked[key]
            if entry.at > gone.at:
                findings.append(
                    _finding(
                        name, "high", "revoked-key-used",
                        f"key {key} was used ({entry.kind}, entry {entry.index}) after its "
                        f"revocation at {gone.ts}",
                        entry=entry, key=key, revoked_entry=gone.index,
                    )
                )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(examined),
        empty="no event was recorded in the period",
        summary=f"{len(examined)} events checked against "
        f"{len({s.index for s in disabled})} disabled users and "
        f"{len(revoked)} revoked keys; {_count(findings)} after revocation",
        entries=[e.index for e in [*disabled, *revoked.values()] if e.log == ctx.view.log],
    )


# -- retention and erasure --------------------------------------------------------------------


def check_retention(ctx: CheckContext) -> CheckResult:
    """Nothing purged before its retention ended; nothing erased under a legal hold."""
    name = "retention"
    findings: list[Finding] = []
    all_holds = holds(ctx.view)
    tombstones = ctx.in_period(ctx.view.of("erasure.tombstone"))
    for tomb in tombstones:
        refs = tomb.event.refs
        digests = [d for d in refs.get("bodies", ()) if isinstance(d, str)]
        subject = refs.get("subject") if isinstance(refs.get("subject"), str) else None
        classes: list[str] = []
        early: list[str] = []
        for digest in digests:
            owner = ctx.view.by_body.get(digest)
            if owner is None:
                continue
            cls = record_class(owner.kind)
            classes.append(cls)
            if tomb.at < owner.at + ctx.settings.retention(cls):
                early.append(digest)
        held = [
            h
            for h in all_holds
            if h.active(tomb.at) and hold_covers(h, subject=subject, classes=classes)
        ]
        if held:
            findings.append(
                _finding(
                    name, "high", "erased-under-hold",
                    f"tombstone at entry {tomb.index} erased bodies under legal hold "
                    f"{', '.join(h.id for h in held)}",
                    entry=tomb, holds=[h.id for h in held],
                )
            )  # fmt: skip
        elif early and refs.get("purpose") == "retention":
            findings.append(
                _finding(
                    name, "high", "purged-early",
                    f"retention purge at entry {tomb.index} removed {len(early)} bodies before "
                    "their retention period ended",
                    entry=tomb, bodies=early,
                )
            )  # fmt: skip
        elif early:
            findings.append(
                _finding(
                    name, "info", "erased-on-request",
                    f"tombstone at entry {tomb.index} erased {len(early)} bodies before their "
                    f"retention ended, on request: {refs.get('reason')}",
                    entry=tomb,
                )
            )  # fmt: skip
    hold_events = ctx.in_period(ctx.view.of("retention.set"))
    return _result(
        name,
        findings,
        examined=len(tombstones) + len(hold_events),
        empty="no erasure, purge or legal hold was recorded in the period",
        summary=f"{len(tombstones)} erasures and {len(hold_events)} retention events; "
        f"{_count(findings)} against the retention policy or a legal hold",
        entries=[e.index for e in [*tombstones, *hold_events]],
    )


def check_erasure(ctx: CheckContext) -> CheckResult:
    """Every erased body has a tombstone, really is gone, and the chain still verifies."""
    name = "erasure"
    findings: list[Finding] = []
    tombstones = ctx.in_period(ctx.view.of("erasure.tombstone"))
    store, log = ctx.ledger.store, ctx.ledger.log
    for tomb in tombstones:
        refs = tomb.event.refs
        if not str(refs.get("reason", "")).strip():
            findings.append(
                _finding(
                    name, "medium", "erasure-without-reason",
                    f"tombstone at entry {tomb.index} gives no reason", entry=tomb,
                )
            )  # fmt: skip
        left = [d for d in refs.get("bodies", ()) if isinstance(d, str) and store.body(d)]
        subject = refs.get("subject")
        key_left = isinstance(subject, str) and store.subject_key(log, subject) is not None
        if left or key_left:
            findings.append(
                _finding(
                    name, "high", "erasure-incomplete",
                    f"tombstone at entry {tomb.index}: {len(left)} bodies"
                    f"{' and the subject key' if key_left else ''} are still stored",
                    entry=tomb, bodies=left,
                )
            )  # fmt: skip
    report = ctx.verification()
    # The verifier accepts any tombstone as the reason a body is gone; a tombstone that
    # does not count explains nothing.
    erased = {d for t in ctx.view.of("erasure.tombstone") for d in _bodies(t)}
    for tomb in ctx.in_period(ctx.view.unverified("erasure.tombstone")):
        for digest in _bodies(tomb):
            owner = ctx.view.by_body.get(digest)
            if digest in erased or owner is None:
                continue
            if store.body(digest) is None:
                erased.add(digest)  # reported once
                findings.append(
                    _finding(
                        name, "high", "body-missing-without-tombstone",
                        f"entry {owner.index}: its body is gone and only an unverified "
                        f"tombstone (entry {tomb.index}) records an erasure",
                        index=owner.index, tombstone=tomb.index,
                    )
                )  # fmt: skip
    for problem in report.problems:
        if problem.what == "body missing":
            findings.append(
                _finding(
                    name, "high", "body-missing-without-tombstone",
                    f"entry {problem.index}: its body is gone and no tombstone records an "
                    "erasure",
                    index=problem.index,
                )
            )  # fmt: skip
    chain_ok = not [p for p in report.problems if p.what != "body missing"]
    if tombstones and not chain_ok:
        findings.append(
            _finding(
                name, "high", "chain-broken-after-erasure",
                "the log does not verify after erasures (see trail_integrity)",
            )
        )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(tombstones),
        empty="no erasure was recorded in the period",
        summary=f"{len(tombstones)} erasures; the chain "
        f"{'verifies' if chain_ok else 'does NOT verify'}; {_count(findings)} exceptions",
        entries=[t.index for t in tombstones],
    )


# -- AI traceability ---------------------------------------------------------------------------


def check_ai_traceability(ctx: CheckContext) -> CheckResult:
    """Every AI-assisted commit links to a recorded session with its model and version."""
    name = "ai_traceability"
    population = ctx.population
    if population is None:
        return _no_git(name, ctx)
    findings: list[Finding] = []
    sessions: dict[str, list[Entry]] = {}
    for entry in ctx.view.of("session.start", "gateway.exchange"):
        if entry.event.session:
            sessions.setdefault(entry.event.session, []).append(entry)
    examined = 0
    evidence: list[int] = []
    seen: set[str] = set()
    for change in ctx.changes():
        decision_models = {d.session: d.model for d in change.decisions if d.session}
        for member in change.members:
            if member.sha in seen:
                continue
            seen.add(member.sha)
            link = change.links.get(member.sha)
            member_sessions = _member_sessions(change, member.sha, population)
            if link is not None:
                for decision in change.decisions:
                    if decision.id in link.decisions and decision.session:
                        member_sessions.append(decision.session)
            member_sessions = list(dict.fromkeys(member_sessions))
            models_only = [
                d.model for d in change.decisions
                if link is not None and d.id in link.decisions and d.model and not d.session
            ]  # fmt: skip
            if not member_sessions and not models_only:
                continue  # no sign of AI assistance
            examined += 1
            when = format_ts(population.repo_time(member))
            if not member_sessions:
                findings.append(
                    _finding(
                        name, "medium", "no-session",
                        f"{member.sha[:12]} was made with {models_only[0]} but links to no session",
                        commit=member.sha, actor=str(member.author), ts=when,
                    )
                )  # fmt: skip
                continue
            for session in member_sessions:
                recorded = sessions.get(session, [])
                evidence.extend(e.index for e in recorded)
                if not recorded:
                    findings.append(
                        _finding(
                            name, "high", "session-unrecorded",
                            f"{member.sha[:12]} names session {session}, which the ledger does "
                            "not record",
                            commit=member.sha, actor=str(member.author), ts=when, session=session,
                        )
                    )  # fmt: skip
                    continue
                model, version = _model_of(recorded, decision_models.get(session))
                if model is None:
                    findings.append(
                        _finding(
                            name, "medium", "model-unknown",
                            f"{member.sha[:12]}: session {session} does not record its model",
                            commit=member.sha, actor=str(member.author), ts=when, session=session,
                        )
                    )  # fmt: skip
                elif version is None:
                    findings.append(
                        _finding(
                            name, "low", "model-version-unknown",
                            f"{member.sha[:12]}: session {session} records model {model} "
                            "without a version",
                            commit=member.sha, actor=str(member.author), ts=when,
                            session=session, model=model,
                        )
                    )  # fmt: skip
    return _result(
        name,
        findings,
        examined=examined,
        empty="no commit of the period was AI-assisted (none names a session or a model)",
        summary=f"{examined} AI-assisted commits; {_count(findings)} without a recorded "
        "session, model and version",
        entries=evidence,
    )


def _member_sessions(change: Change, sha: str, population: Population) -> list[str]:
    found: list[str] = []
    entry = change.link_entries.get(sha)
    if entry is not None:
        session = entry.event.session or entry.event.refs.get("session")
        if isinstance(session, str):
            found.append(session)
    for member in change.members:
        if member.sha == sha:
            from flowloom.repo.trailers import Links

            found.extend(Links.of(member.message, population.comment_char).sessions)
    return found


def _model_of(entries: list[Entry], fallback: str | None) -> tuple[str | None, str | None]:
    model: str | None = None
    version: str | None = None
    for entry in entries:
        refs = entry.event.refs
        value = refs.get("model")
        if isinstance(value, str) and value and model is None:
            model = value
        for key in ("model_version", "version"):
            found = refs.get(key)
            if isinstance(found, str) and found and version is None:
                version = found
    model = model or fallback
    if model is not None and version is None and _VERSIONED.search(model):
        version = model  # a pinned id such as claude-sonnet-4-5-20250929 names its version
    return model, version


# -- access provisioning and privileged access ----------------------------------------------

_GRANTS = (
    "auth.user_created",
    "auth.oidc_linked",
    "auth.saml_linked",
    "auth.role_granted",
    "auth.team_member_added",
)
_REMOVALS = (
    "auth.user_disabled",
    "auth.user_deleted",
    "auth.role_revoked",
    "auth.team_member_removed",
)
_PRIVILEGED = ("owner", "admin")


def _security_events(ctx: CheckContext) -> list[Entry]:
    """The counted ``auth.*`` events of the project's log and of the instance log, in time
    order (only events whose origin the assessment's trust proves: `LedgerView`)."""
    found = [*ctx.view.instance, *ctx.view.family("auth.")]
    return sorted(found, key=lambda e: (e.at, e.log != ctx.view.log, e.index))


def _grantee(entry: Entry) -> str | None:
    """Whom an access event is about: ``user:<id>`` or ``team:<name>``."""
    refs = entry.event.refs
    user = refs.get("user_id") or (
        entry.event.subject if entry.kind.startswith("auth.user_") else None
    )
    if isinstance(user, str) and user:
        return f"user:{user}"
    team = refs.get("team")
    return f"team:{team}" if isinstance(team, str) and team else None


def _granted_how(entry: Entry) -> tuple[str, bool]:
    """How the person who made an access change is known, and whether it was proven by
    authentication (an API key or a sign-in session) rather than named."""
    refs = entry.event.refs
    actor = entry.event.actor.name or entry.event.actor.id
    via = refs.get("auth_via")
    if via in ("key", "session"):
        means = "an API key" if via == "key" else "a sign-in session"
        return f"by {actor}, authenticated with {means}", True
    if via == "scim":
        return f"by the identity provider ({actor}), authenticated with its SCIM token", True
    if via == "cli":
        ran = refs.get("os_user")
        return (
            f"on the server host with 'flowloom admin --as {entry.event.actor.id}'"
            + (f" (run by {ran})" if isinstance(ran, str) else "")
            + ": named, not authenticated",
            False,
        )
    issuer = refs.get("issuer")
    if isinstance(issuer, str) and issuer:
        return f"by single sign-on from {issuer}", False
    return (
        f"by {actor}, with no authenticated person (FlowLoom itself, as for single "
        "sign-on, or 'flowloom admin' on the server host)",
        False,
    )


def _access_what(entry: Entry) -> str:
    refs = entry.event.refs
    who = (_grantee(entry) or "someone").partition(":")[2] or "someone"
    if entry.kind in ("auth.role_granted", "auth.role_revoked"):
        return f"role {refs.get('role')} on {refs.get('project')} for {who}"
    if entry.kind in ("auth.team_member_added", "auth.team_member_removed"):
        return f"membership of team {refs.get('team')} for {who}"
    if entry.kind in ("auth.oidc_linked", "auth.saml_linked"):
        return f"a single sign-on identity for account {who}"
    return f"account {who}"


def check_provisioning(ctx: CheckContext) -> CheckResult:
    """Every access grant and removal of the period recorded, with who made it; none
    granted by the person who receives it."""
    name = "access_provisioning"
    findings: list[Finding] = []
    events = ctx.in_period(_security_events(ctx))
    grants = [e for e in events if e.kind in _GRANTS]
    removals = [e for e in events if e.kind in _REMOVALS]
    proven = 0
    for entry in grants:
        what = _access_what(entry)
        how, authenticated = _granted_how(entry)
        proven += authenticated
        log = entry.log if entry.log != ctx.view.log else None
        grantee = _grantee(entry)
        if entry.kind != "auth.user_created" and grantee == f"user:{entry.event.actor.id}":
            findings.append(
                _finding(
                    name, "high", "self-granted",
                    f"{entry.event.actor.id} granted themselves {what} (entry {entry.index}"
                    f"{' of ' + log if log else ''})",
                    entry=entry, kind=entry.kind, log=log,
                )
            )  # fmt: skip
            continue
        findings.append(
            _finding(
                name, "info", "access-granted",
                f"{what} granted {how}", entry=entry, kind=entry.kind, log=log,
                authenticated=authenticated,
            )
        )  # fmt: skip
    for entry in removals:
        how, _ = _granted_how(entry)
        verb = {"auth.user_disabled": "disabled", "auth.user_deleted": "deleted"}
        log = entry.log if entry.log != ctx.view.log else None
        findings.append(
            _finding(
                name, "info", "access-removed",
                f"{_access_what(entry)} {verb.get(entry.kind, 'revoked')} {how}",
                entry=entry, kind=entry.kind, log=log,
            )
        )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(grants) + len(removals),
        summary=f"{len(grants)} access grants ({proven} by an authenticated person) and "
        f"{len(removals)} removals recorded; {_count(findings)} self-granted",
        empty="no account, role or team membership was granted or removed in the period",
        entries=[e.index for e in [*grants, *removals] if e.log == ctx.view.log],
    )


def check_privileged(ctx: CheckContext) -> CheckResult:
    """Owner and admin roles: who was given them in the period, by whom, and who holds
    them at its end (the population a periodic access review starts from)."""
    name = "privileged_access"
    findings: list[Finding] = []
    scope = (ctx.view.log, "*")
    holders: dict[tuple[str, str, str], Entry] = {}  # (grantee, project, role) -> grant
    disabled: set[str] = set()
    changes: list[Entry] = []
    for entry in _security_events(ctx):
        if entry.at >= ctx.period.end:
            break
        refs = entry.event.refs
        grantee = _grantee(entry)
        if entry.kind in ("auth.user_disabled", "auth.user_deleted") and grantee:
            disabled.add(grantee)
        elif entry.kind == "auth.user_enabled" and grantee:
            disabled.discard(grantee)
        if entry.kind not in ("auth.role_granted", "auth.role_revoked") or grantee is None:
            continue
        role, project = refs.get("role"), refs.get("project")
        if role not in _PRIVILEGED or project not in scope:
            continue
        key = (grantee, str(project), str(role))
        if entry.kind == "auth.role_granted":
            holders.setdefault(key, entry)
        else:
            holders.pop(key, None)
        if entry.at in ctx.period:
            changes.append(entry)
    for entry in changes:
        what = _access_what(entry)
        how, _ = _granted_how(entry)
        log = entry.log if entry.log != ctx.view.log else None
        granted = entry.kind == "auth.role_granted"
        if granted and _grantee(entry) == f"user:{entry.event.actor.id}":
            findings.append(
                _finding(
                    name, "high", "privileged-self-granted",
                    f"{entry.event.actor.id} gave themselves the privileged {what}",
                    entry=entry, log=log,
                )
            )  # fmt: skip
            continue
        findings.append(
            _finding(
                name, "info", "privileged-granted" if granted else "privileged-revoked",
                f"privileged {what} {'granted' if granted else 'revoked'} {how}",
                entry=entry, log=log,
            )
        )  # fmt: skip
    for (grantee, project, role), grant in sorted(holders.items()):
        who = grantee.partition(":")[2]
        where = "every project" if project == "*" else project
        log = grant.log if grant.log != ctx.view.log else None
        if grantee in disabled:
            findings.append(
                _finding(
                    name, "low", "privileged-holder-disabled",
                    f"{who} still holds {role} on {where} while disabled: remove the grant",
                    entry=grant, actor=who, ts=format_ts(ctx.period.end), log=log,
                )
            )  # fmt: skip
            continue
        findings.append(
            _finding(
                name, "info", "privileged-holder",
                f"{who} holds {role} on {where} at the end of the period (granted at "
                f"{grant.ts}, entry {grant.index}{' of ' + log if log else ''})",
                entry=grant, actor=who, ts=format_ts(ctx.period.end), log=log, role=role,
            )
        )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(changes) + len(holders),
        summary=f"{len(changes)} owner/admin grants and revocations in the period; "
        f"{len(holders)} holders at its end; {_count(findings)} exceptions",
        empty="the ledger records no owner or admin role on this project or on every project",
        entries=[e.index for e in [*changes, *holders.values()] if e.log == ctx.view.log],
    )


# -- periodic access review ----------------------------------------------------------------

_REVIEW_OPEN = "access.review_opened"
_REVIEW_DECIDE = "access.review_decided"
_REVIEW_CLOSE = "access.review_closed"


def _review_events(ctx: CheckContext, kind: str) -> list[Entry]:
    """Counted access review events of the project's log and of the instance log (whose
    campaigns cover every project)."""
    return [*ctx.view.of(kind), *(e for e in ctx.view.instance if e.kind == kind)]


def _signed(ctx: CheckContext, decide: Entry, campaign: str) -> bool:
    """Whether a decision names its e-signature, and (in this project's log) the counted
    signature.apply entry there signs exactly this line and decision."""
    refs = decide.event.refs
    signature = refs.get("signature")
    if not isinstance(signature, int) or isinstance(signature, bool):
        return False
    if decide.log != ctx.view.log:
        return True  # the instance log's signatures are read by the instance's own report
    entry = ctx.view.at(signature)
    subject = f"access_review:{campaign}/{refs.get('line')}/{refs.get('decision')}"
    return (
        entry is not None
        and entry.kind == "signature.apply"
        and ctx.view.counts(entry)
        and entry.event.subject == subject
        and entry.event.refs.get("signer") == decide.event.actor.id
    )


def check_access_review(ctx: CheckContext) -> CheckResult:
    """A completed, signed access review closed in the period (of the project or of the
    whole instance); overdue campaigns; the removals each review made."""
    name = "access_review"
    findings: list[Finding] = []
    decisions: dict[str, list[Entry]] = {}
    for entry in _review_events(ctx, _REVIEW_DECIDE):
        if entry.at < ctx.period.end:
            decisions.setdefault(str(entry.event.refs.get("campaign")), []).append(entry)
    closes = [e for e in _review_events(ctx, _REVIEW_CLOSE) if e.at < ctx.period.end]
    closed_ids = {str(e.event.refs.get("campaign")) for e in closes}
    complete: list[Entry] = []
    evidence: list[Entry] = []
    for close in (e for e in closes if e.at in ctx.period):
        refs = close.event.refs
        campaign = str(refs.get("campaign"))
        lines = refs.get("lines")
        its = decisions.get(campaign, [])
        signed = [d for d in its if _signed(ctx, d, campaign)]
        log = close.log if close.log != ctx.view.log else None
        evidence += [close, *its]
        if not isinstance(lines, int) or len(signed) < lines:
            findings.append(
                _finding(
                    name, "high", "access-review-unsigned",
                    f"access review {campaign} was closed with {lines} lines but only "
                    f"{len(signed)} decisions carry a proven e-signature",
                    entry=close, log=log,
                )
            )  # fmt: skip
            continue
        complete.append(close)
        findings.append(
            _finding(
                name, "info", "access-review-completed",
                f"access review {campaign} of {refs.get('scope')} completed: {lines} lines, "
                f"{refs.get('certified')} certified, {refs.get('revoked')} revoked"
                f"{' (closed after its due date)' if refs.get('late') else ''}",
                entry=close, log=log,
            )
        )  # fmt: skip
        for decide in its:
            if decide.event.refs.get("decision") == "revoke":
                dr = decide.event.refs
                findings.append(
                    _finding(
                        name, "info", "access-review-revoked",
                        f"review {campaign} revoked {dr.get('role')} on {dr.get('project')} "
                        f"from {dr.get('user_id')}",
                        entry=decide, log=decide.log if decide.log != ctx.view.log else None,
                    )
                )  # fmt: skip
    for opened in _review_events(ctx, _REVIEW_OPEN):
        refs = opened.event.refs
        campaign = str(refs.get("campaign"))
        due = refs.get("due_at")
        if campaign in closed_ids or opened.at >= ctx.period.end or not isinstance(due, str):
            continue
        if due < format_ts(min(ctx.period.end, ctx.now)):
            evidence.append(opened)
            findings.append(
                _finding(
                    name, "medium", "access-review-overdue",
                    f"access review {campaign} of {refs.get('scope')} was due at {due} and "
                    "is not closed",
                    entry=opened, log=opened.log if opened.log != ctx.view.log else None,
                )
            )  # fmt: skip
    if not complete:
        findings.append(
            _finding(
                name, "high", "access-review-missing",
                "no completed, signed access review of this project or of the instance was "
                "closed in the period",
                ts=format_ts(ctx.period.end),
            )
        )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(evidence) + 1,
        summary=f"{len(complete)} completed access reviews closed in the period; "
        f"{_count(findings)} exceptions",
        empty="",
        entries=[e.index for e in evidence if e.log == ctx.view.log],
    )


# -- separation of development and deployment -------------------------------------------------

_HOST_COMMITTERS = frozenset({"noreply@github.com"})
"""Committer addresses of code hosts' merge buttons: the person who merged is in the
host's records, not in git."""


def _deployer(change: Change) -> tuple[str | None, str]:
    """Who put the change on its branch, and how that is known."""
    if change.reached_by:
        return change.reached_by, "the branch's reflog"
    if change.commit.is_merge and change.commit.committer.email not in _HOST_COMMITTERS:
        return str(change.commit.committer), "the merge commit's committer"
    return None, ""


def check_deploy_separation(ctx: CheckContext) -> CheckResult:
    """No change put on a protected branch by a person who developed it."""
    name = "deploy_separation"
    population = ctx.population
    if population is None:
        return _no_git(name, ctx)
    from flowloom.compliance.changes import session_operators

    findings: list[Finding] = []
    changes = ctx.changes()
    for change in changes:
        sha = change.commit.sha
        when = format_ts(change.committed_at)
        developers: dict[str, str] = {}
        for member in change.members:
            for ident, why in ((member.author, "authored"), (member.committer, "committed")):
                for alias in names_of(str(ident)):
                    developers.setdefault(alias, f"{why} {member.sha[:12]}")
        for session in change.sessions:
            for person in session_operators(ctx.view, session):
                for alias in names_of(person):
                    developers.setdefault(alias, f"operated the AI session {session}")
        deployer, known_from = _deployer(change)
        if deployer is None:
            findings.append(
                _finding(
                    name, "low", "deployer-unknown",
                    f"{sha[:12]} reached {change.branch}, but who put it there is not recorded "
                    "in git (no reflog entry; a code host's merge commits as the host): the "
                    "host's merge record is the evidence",
                    commit=sha, ts=when,
                )
            )  # fmt: skip
            continue
        overlap = sorted(names_of(deployer) & developers.keys())
        if overlap:
            findings.append(
                _finding(
                    name, "medium", "self-deployed",
                    f"{sha[:12]} was put on {change.branch} by {deployer} ({known_from}), who "
                    f"{developers[overlap[0]]}",
                    commit=sha, actor=deployer, ts=when, deployer=deployer,
                )
            )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(changes),
        summary=f"{len(changes)} changes on protected branches; {_count(findings)} put there by "
        "someone who developed them, or by someone git does not name",
        empty="no change reached a protected branch in the period",
        commits=[c.commit.sha for c in changes],
    )


# -- AI providers as processors ----------------------------------------------------------------


def _sent_to(entry: Entry) -> list[tuple[str, str | None, str | None]]:
    """(provider, region, model) of every upstream an exchange's data was sent to."""
    refs = entry.event.refs
    sent: list[tuple[str, str | None, str | None]] = []
    attempts = refs.get("fallback")
    if isinstance(attempts, list | tuple) and attempts:
        for attempt in attempts:
            if not isinstance(attempt, Mapping) or attempt.get("error_kind") == "not_allowed":
                continue  # refused before anything was sent
            provider = attempt.get("provider")
            if isinstance(provider, str) and provider:
                sent.append((provider, _text_ref(attempt, "region"), _text_ref(attempt, "model")))
    else:
        provider = refs.get("provider")
        if isinstance(provider, str) and provider:
            model = _text_ref(refs, "upstream_model") or _text_ref(refs, "model")
            sent.append((provider, _text_ref(refs, "region"), model))
    return list(dict.fromkeys(sent))


def check_ai_processors(ctx: CheckContext) -> CheckResult:
    """Which AI providers received the period's data, and where: the gateway records the
    provider and its configured region for each exchange; sessions that did not go
    through the gateway sent their data to a provider the ledger does not name."""
    name = "ai_processors"
    findings: list[Finding] = []
    exchanges = ctx.in_period(ctx.view.of("gateway.exchange"))
    providers: dict[str, dict[str, Any]] = {}
    for entry in exchanges:
        for provider, region, model in _sent_to(entry):
            seen = providers.setdefault(
                provider, {"entries": [], "regions": set(), "unplaced": [], "models": set()}
            )
            seen["entries"].append(entry.index)
            if model:
                seen["models"].add(model)
            if region:
                seen["regions"].add(region)
            else:
                seen["unplaced"].append(entry.index)
    through_gateway = {e.event.session for e in exchanges if e.event.session}
    sessions = [e for e in ctx.in_period(ctx.view.of("session.start")) if e.event.session]
    outside: dict[str, Entry] = {}
    for entry in sessions:
        session = entry.event.session
        if session and session not in through_gateway:
            outside.setdefault(session, entry)
    for provider, seen in sorted(providers.items()):
        regions = ", ".join(sorted(seen["regions"])) or "no recorded region"
        findings.append(
            _finding(
                name, "info", "processor",
                f"AI provider {provider} ({regions}) received {len(seen['entries'])} exchanges"
                f" (models: {', '.join(sorted(seen['models'])) or 'not recorded'})",
                provider=provider, regions=sorted(seen["regions"]),
                exchanges=len(seen["entries"]), models=sorted(seen["models"]),
            )
        )  # fmt: skip
        if seen["unplaced"]:
            findings.append(
                _finding(
                    name, "low", "region-unrecorded",
                    f"{len(seen['unplaced'])} exchanges went to {provider} with no recorded "
                    "region: where the data was processed is not known (set the provider's "
                    "region in the gateway's routing file)",
                    index=seen["unplaced"][0], provider=provider,
                    entries=seen["unplaced"][:100],
                )
            )  # fmt: skip
    for session, entry in outside.items():
        model = _text_ref(entry.event.refs, "model")
        findings.append(
            _finding(
                name, "low", "provider-unrecorded",
                f"AI session {session}{' (' + model + ')' if model else ''} did not go through "
                "the gateway: which provider processed its data, and where, is not recorded",
                entry=entry, session=session, model=model,
            )
        )  # fmt: skip
    return _result(
        name,
        findings,
        examined=len(exchanges) + len(outside),
        summary=f"{len(exchanges)} gateway exchanges to {len(providers)} AI providers; "
        f"{len(outside)} AI sessions outside the gateway; {_count(findings)} exceptions",
        empty="no AI session started and no gateway exchange was recorded in the period",
        entries=[i for seen in providers.values() for i in seen["entries"]]
        + [e.index for e in outside.values()],
    )


# -- helpers --------------------------------------------------------------------------------


def _no_git(name: str, ctx: CheckContext) -> CheckResult:
    """A commit check without a repository: not assessed, and what it would need."""
    spec = CHECKS[name]
    links = len(ctx.in_period(ctx.view.of("commit.link")))
    reason = (
        "needs the git repository, which this assessment was not given: git alone lists "
        "every commit that reached a protected branch, and the ledger's "
        f"{links} commit.link event{'s' if links != 1 else ''} of the period show only the "
        "commits that were linked. Run 'flowloom report' in a clone, or configure the "
        "project's repository on the server ([server.repositories])"
    )
    return CheckResult(
        check=name,
        title=spec.title,
        status="not_assessed",
        summary="not assessed: no git repository",
        limits=spec.limits,
        reason=reason,
    )


def _count(findings: list[Finding]) -> int:
    return sum(1 for f in findings if f.severity != "info")


def _bodies(tomb: Entry) -> list[str]:
    bodies = tomb.event.refs.get("bodies", ())
    return [d for d in bodies if isinstance(d, str)] if isinstance(bodies, tuple | list) else []


def _notes(unverified: list[tuple[int, str]]) -> dict[str, Any]:
    """Finding details naming the unverified events that did not count."""
    if not unverified:
        return {}
    return {"unverified": [entry for entry, _ in unverified]}


def _also(unverified: list[tuple[int, str]]) -> str:
    """A message tail: "; unverified approval by bob at entry 12: not counted (…)"."""
    return "".join(f"; {note}" for _, note in unverified)


def _hours(window: Any) -> int:
    return int(window.total_seconds() // 3600)


def _text_ref(refs: Mapping[str, Any], key: str) -> str | None:
    value = refs.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _signer_names(entry: Entry) -> set[str]:
    names = names_of(entry.event.actor.id)
    for key in ("printed_name", "email", "signer"):
        value = entry.event.refs.get(key)
        if isinstance(value, str) and value:
            names |= names_of(value)
    if entry.event.actor.name:
        names |= names_of(entry.event.actor.name)
    return names


def run_check(spec: CheckSpec, ctx: CheckContext) -> CheckResult:
    """Run one check; a FlowLoom error makes it not_assessed (with the error), not a crash.
    A check that needs git is not assessed without a repository, whatever it would find."""
    if spec.needs_git and ctx.population is None:
        return _no_git(spec.id, ctx)
    try:
        return spec.run(ctx)
    except FlowLoomError as exc:
        return CheckResult(
            check=spec.id,
            title=spec.title,
            status="not_assessed",
            summary=f"the check could not run: {exc}",
            limits=spec.limits,
            reason=f"the check could not run: {exc}",
        )


CHECKS: Final[Mapping[str, CheckSpec]] = MappingProxyType(
    {
        spec.id: spec
        for spec in (
            CheckSpec(
                "segregation_of_duties",
                "Segregation of duties: independent approval bound to the merged tree",
                check_segregation,
                "Identities are compared by id, email, its local part and name; one person "
                "using two accounts is not detected. A decision approval is bound to a tree when "
                "it was given after a commit.link of that decision recorded the same tree, or "
                "when a signature names tree:<id> or commit:<sha>.",
                needs_git=True,
            ),
            CheckSpec(
                "completeness",
                "Completeness: commits in git equal commits linked in the ledger",
                check_completeness,
                "Force pushes are seen through the local reflog (absent on most bare server "
                "repositories) and through commit.link events of commits the branch lost; a "
                "rewrite of commits never linked and never in a reflog is invisible. A direct "
                "push and a commit made with --no-verify look the same: an unlinked commit.",
                needs_git=True,
            ),
            CheckSpec(
                "security_scanned",
                "Security scanned: scanner results (SARIF) for each change's tree",
                check_scanned,
                "Reads scan.result events (flowloom scan ingest: SARIF bound to the scanned "
                "tree). Which rules the scanners ran, and results never recorded with FlowLoom, "
                "are not seen; until a first scan is recorded the check is not applicable.",
                needs_git=True,
            ),
            CheckSpec(
                "tested_before_deploy",
                "Tested before deploy: passing test results for the change's tree before it "
                "reached the branch",
                check_tested,
                "Reads test.result events (flowloom ci record: JUnit results bound to the tested "
                "tree); what the tests cover is not seen, and results never recorded with "
                "FlowLoom are not seen. When the change reached the branch is known only from "
                "the reflog.",
                needs_git=True,
            ),
            CheckSpec(
                "override_approval",
                "Emergency overrides approved afterwards within the policy window",
                check_overrides,
                "An approval is a signature over entry:<override index> by someone other than "
                "the person who granted it; an approver named in a trailer is not an approval.",
            ),
            CheckSpec(
                "trail_integrity",
                "Trail integrity: full verification, checkpoints and anchors",
                check_integrity,
                "Verification uses the store's own checkpoints; a rollback of the whole "
                "database is caught only against a checkpoint or anchor kept elsewhere. Anchors "
                "are listed from checkpoint.anchor events; their tokens are verified by the "
                "anchors module, not here.",
            ),
            CheckSpec(
                "signature_manifestation",
                "Signature manifestation and linking",
                check_signatures,
                "Content binding is recomputed for decision:<id> and entry:<n> subjects; other "
                "subjects are checked by whoever holds the content. Re-authentication itself "
                "happened on the server and is seen only as the recorded components.",
            ),
            CheckSpec(
                "access_revocation",
                "Access: no activity from disabled users or revoked keys",
                check_access,
                "Reads auth.user_disabled and auth.key_revoked events (project and instance "
                "logs). Events recorded locally without the server carry no key id and are "
                "matched by actor id only.",
            ),
            CheckSpec(
                "retention",
                "Retention respected and legal holds honoured",
                check_retention,
                "Judges erasures recorded by tombstones against the retention classes in force "
                "when the report runs and the holds recorded by retention.set events.",
            ),
            CheckSpec(
                "erasure",
                "Erasures handled: tombstones, bodies gone, chain still verifies",
                check_erasure,
                "Only bodies are erased; envelopes (and so pseudonymous metadata) stay by design.",
            ),
            CheckSpec(
                "access_provisioning",
                "Access provisioning and deprovisioning: grants and removals recorded, none "
                "self-granted",
                check_provisioning,
                "Reads auth.* events of the project and instance logs whose origin is proven. "
                "Who authorised a grant is proven only when an authenticated person made it "
                "(API key or sign-in session); grants by single sign-on or on the server host "
                "name their origin, and their authorisation is evidenced outside FlowLoom. "
                "Whether each grant was requested and approved is not in the ledger.",
            ),
            CheckSpec(
                "privileged_access",
                "Privileged access: owner and admin grants, and who holds them",
                check_privileged,
                "Holders are rebuilt from the auth.role_granted / auth.role_revoked events the "
                "ledger proves; a grant made before the ledger recorded it, and members of a "
                "team holding a role, are not seen (compare with the server's member listing).",
            ),
            CheckSpec(
                "access_review",
                "Periodic access review: a completed campaign, every line signed, in the period",
                check_access_review,
                "Reads access.review_* events of the project and instance logs (flowloom "
                "access reviews); a review done outside FlowLoom is not seen. Signatures are "
                "matched in the project's log; an instance campaign's decisions count as "
                "signed when the server attested them. Whether the reviewer was accountable "
                "for the access is not in the ledger.",
            ),
            CheckSpec(
                "deploy_separation",
                "Separation of development and deployment: no change put on a protected "
                "branch by someone who developed it",
                check_deploy_separation,
                "Deploying is taken to be reaching a protected branch; who moved the branch is "
                "read from its reflog (absent on most bare server repositories) or a merge "
                "commit's committer. A code host's merge button commits as the host, so the "
                "person who merged is in the host's records. Releases from the branch to "
                "production are outside git.",
                needs_git=True,
            ),
            CheckSpec(
                "ai_processors",
                "AI providers as processors: who received the data, and in which region",
                check_ai_processors,
                "Reads gateway.exchange events (the provider and, when the routing file sets "
                "one, its region, for every attempt) and session.start events. Sessions that "
                "did not use the gateway name no provider. Whether a data processing agreement "
                "covers each provider, and whether a region is an adequate destination, is "
                "not in the ledger.",
            ),
            CheckSpec(
                "ai_traceability",
                "AI traceability: AI-assisted commits link to a session with model and version",
                check_ai_traceability,
                "A commit counts as AI-assisted when it, its commit.link or its decision names a "
                "session or model. A model id containing a digit is taken as pinned (it names "
                "its version); aliases such as 'sonnet' are reported as unversioned.",
                needs_git=True,
            ),
        )
    }
)
"""Every check by id, in report order."""
