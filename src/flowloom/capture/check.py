"""The CI gate: every commit in a range linked to a recorded, approved decision.

Local hooks can be skipped (`git commit --no-verify`; Aider skips them by default), so
`flowloom check` judges the commits themselves, on the server side. A commit fails
when it has no linked decision (no trailer and no re-link by patch-id), names a
decision the ledger does not record, carries an override without a reason (or without
an approver when the policy wants one), or, on a protected branch, is linked to a
decision nobody else approved: approval is a `decision.approve` event with meaning
"approved" of the decision's exact recorded content, by a person who is not the commit's
author and not involved in the decision (requested it, recorded it, operated the AI
session: `DecisionBook.involved`) when `forbid_self_approval`. Merge commits carry no
change of their own and are not judged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from flowloom.decisions.records import DecisionBook
from flowloom.ledger.identity import names_of
from flowloom.repo.git import Commit, GitError, GitRepo
from flowloom.repo.links import Link, LinkFinder, LinkIndex
from flowloom.repo.policy import Policy

__all__ = [
    "CheckReport",
    "CommitVerdict",
    "Problem",
    "check_commits",
    "ci_branch",
    "default_range",
]


@dataclass(frozen=True)
class Problem:
    """One reason one commit fails the gate."""

    # unlinked, unknown-decision, invalid-decision, unapproved, override-reason,
    # override-approver
    kind: str
    message: str
    decision: str | None = None


@dataclass
class CommitVerdict:
    sha: str
    subject: str
    author: str
    how: str | None  # trailer, override, ledger, patch-id, squash; None when unlinked
    decisions: list[str] = field(default_factory=list)
    override: str | None = None
    via: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    range: str
    branch: str | None
    protected: bool
    commits: list[CommitVerdict]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.commits)

    @property
    def failing(self) -> list[CommitVerdict]:
        return [c for c in self.commits if not c.ok]

    @property
    def linked(self) -> int:
        return sum(1 for c in self.commits if c.how is not None and c.decisions)

    @property
    def overridden(self) -> int:
        return sum(1 for c in self.commits if not c.decisions and c.override)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "range": self.range,
            "branch": self.branch,
            "protected": self.protected,
            "checked": len(self.commits),
            "linked": self.linked,
            "overridden": self.overridden,
            "failing": len(self.failing),
            "commits": [
                {**asdict(c), "ok": c.ok, "problems": [asdict(p) for p in c.problems]}
                for c in self.commits
            ],
        }


def ci_branch(env: dict[str, str] | None = None) -> str | None:
    """The branch CI is checking for: a pull request's target, else the pushed branch."""
    env = dict(os.environ) if env is None else env
    for var in (
        "FLOWLOOM_BRANCH",
        "GITHUB_BASE_REF",  # pull_request: the target branch
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
        "CI_COMMIT_BRANCH",
    ):
        if env.get(var):
            return env[var]
    if env.get("GITHUB_REF_TYPE", "branch") == "branch" and env.get("GITHUB_REF_NAME"):
        return env["GITHUB_REF_NAME"]
    return None


def default_range(repo: GitRepo) -> tuple[list[str], str]:
    """The commits on HEAD not yet on the upstream (or the default branch).

    On the default branch itself, with no upstream, that is every commit on HEAD.
    """
    if repo.head() is None:
        return [], "no commits yet"
    upstream = repo.upstream()
    if upstream:
        return [f"{upstream}..HEAD"], f"{upstream}..HEAD"
    default = repo.default_branch()
    branch = repo.branch()
    if default and default != branch and repo.resolve(default):
        return [f"{default}..HEAD"], f"{default}..HEAD"
    return ["HEAD"], "HEAD (all commits)"


def _approval_problems(
    verdict: CommitVerdict, commit: Commit, book: DecisionBook, policy: Policy, branch: str
) -> list[Problem]:
    problems: list[Problem] = []
    for decision_id in verdict.decisions:
        decision = book.get(decision_id)
        excluded: set[str] = set()
        if policy.forbid_self_approval:
            excluded = names_of(str(commit.author))
        # involved() names the requester and/or the AI session's operator, by policy.
        for person in book.involved(decision):
            excluded |= names_of(person)
        # Only proven approvals count (a server's attestation or the approver's own SSH
        # signature): an approval someone appended by hand names whoever they like.
        standing = [
            a for a in decision.approvals if a.counts and not (names_of(a.approver) & excluded)
        ]
        if not standing:
            others = " by someone other than the author and the session's operator"
            problems.append(
                Problem(
                    "unapproved",
                    f"decision {decision_id} is not approved; protected branch {branch} needs "
                    f"approval{others if policy.forbid_self_approval else ''}",
                    decision_id,
                )
            )
    return problems


def _judge(
    commit: Commit, link: Link | None, book: DecisionBook, policy: Policy, branch: str | None
) -> CommitVerdict:
    verdict = CommitVerdict(
        sha=commit.sha,
        subject=commit.subject,
        author=str(commit.author),
        how=None,
    )
    if link is None:
        verdict.problems.append(
            Problem(
                "unlinked",
                "no linked decision (no FlowLoom-Decision trailer, no re-link by patch-id)",
            )
        )
        return verdict
    verdict.how = link.how
    verdict.decisions = list(link.decisions)
    verdict.override = link.override
    verdict.via = list(link.via)
    override_problem: Problem | None = None
    if link.override is not None:
        if not link.override.strip():
            override_problem = Problem("override-reason", "override without a reason")
        elif policy.override_requires_approver and not (link.approver or "").strip():
            override_problem = Problem(
                "override-approver", "override without an approver (the policy requires one)"
            )
    overridden = link.override is not None and override_problem is None
    if override_problem is not None:
        verdict.problems.append(override_problem)
    if not overridden:
        # An accepted override covers a link that does not hold: that is what it is for.
        for value in link.invalid:
            verdict.problems.append(
                Problem("invalid-decision", f"FlowLoom-Decision {value!r} is not a decision id")
            )
        for decision in link.missing:
            verdict.problems.append(
                Problem(
                    "unknown-decision",
                    f"decision {decision} is not recorded in the ledger",
                    decision,
                )
            )
        if not link.decisions and not verdict.problems:
            verdict.problems.append(Problem("unlinked", "no linked decision"))
    if link.decisions and policy.require_approval_on_protected and policy.is_protected(branch):
        assert branch is not None
        verdict.problems += _approval_problems(verdict, commit, book, policy, branch)
    return verdict


def check_commits(
    repo: GitRepo,
    book: DecisionBook,
    policy: Policy,
    revs: list[str],
    *,
    description: str,
    branch: str | None,
) -> CheckReport:
    """Judge every non-merge commit `revs` selects (rev-list syntax)."""
    comment_char = repo.config_get("core.commentChar") or "#"
    if len(comment_char) != 1:
        comment_char = "#"  # "auto" and friends: git chose a character we cannot know
    try:
        commits = repo.commits(*revs, no_merges=True) if revs else []
    except GitError as exc:
        raise GitError(
            f"cannot list the commits of {description}: {exc.message}",
            hint="give a range git understands, such as origin/main..HEAD",
        ) from None
    index = LinkIndex.from_store(book.ledger.store, book.ledger.log)
    finder = LinkFinder(repo, index, comment_char=comment_char)
    verdicts = [_judge(c, finder.find(c), book, policy, branch) for c in commits]
    return CheckReport(
        range=description,
        branch=branch,
        protected=bool(branch) and policy.is_protected(branch),
        commits=verdicts,
    )
