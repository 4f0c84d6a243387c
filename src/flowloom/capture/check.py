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
from pathlib import Path
from typing import Any

from flowloom.decisions.records import DecisionBook
from flowloom.errors import InputError
from flowloom.git.links import Link, LinkFinder, LinkIndex
from flowloom.git.repo import Commit, GitError, GitRepo
from flowloom.ledger.identity import names_of
from flowloom.policy import Policy

__all__ = [
    "GITHUB_WORKFLOW",
    "GITLAB_JOB",
    "CheckReport",
    "CommitVerdict",
    "Problem",
    "check_commits",
    "ci_branch",
    "default_range",
    "write_ci",
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


# -- ready-made CI jobs ------------------------------------------------------------------

GITHUB_WORKFLOW = """\
# FlowLoom gate, written by `flowloom init --ci github`: fails when a pushed commit has no
# linked decision, an unapproved decision on a protected branch, or an override without
# a reason. Local hooks can be skipped (git commit --no-verify); this check cannot.
#
# The ledger: set FLOWLOOM_DATABASE (a repository or organisation secret) to the team
# ledger's postgresql:// URL, or publish the log with git (refs/flowloom/log, fetched below).
name: FlowLoom
on:
  push:
  pull_request:
jobs:
  flowloom-check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: Fetch the FlowLoom log
        run: git fetch --no-tags origin '+refs/flowloom/*:refs/flowloom/*' || true
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install flowloom
      - name: flowloom check
        env:
          FLOWLOOM_DATABASE: ${{ secrets.FLOWLOOM_DATABASE }}
          FLOWLOOM_VKEY: ${{ vars.FLOWLOOM_VKEY }}
          BEFORE: ${{ github.event.before }}
          BASE_REF: ${{ github.base_ref }}
          DEFAULT_BRANCH: ${{ github.event.repository.default_branch }}
        run: |
          zero=0000000000000000000000000000000000000000
          if [ -n "$BASE_REF" ]; then
            set -- "origin/$BASE_REF..HEAD"
          elif [ -n "$BEFORE" ] && [ "$BEFORE" != "$zero" ] \\
              && git cat-file -e "$BEFORE^{commit}" 2>/dev/null; then
            set -- "$BEFORE..$GITHUB_SHA"
          elif [ "$GITHUB_REF_NAME" != "$DEFAULT_BRANCH" ]; then
            set -- "origin/$DEFAULT_BRANCH..HEAD"
          else
            set -- --all
          fi
          if [ -z "$FLOWLOOM_DATABASE" ] && [ -n "$FLOWLOOM_VKEY" ]; then
            set -- --ledger-ref refs/flowloom/log "$@"
          fi
          flowloom check "$@"
"""

GITLAB_JOB = """\
# FlowLoom gate, written by `flowloom init --ci gitlab`: fails when a pushed commit has no
# linked decision, an unapproved decision on a protected branch, or an override without
# a reason. Local hooks can be skipped (git commit --no-verify); this check cannot.
#
# The ledger: set FLOWLOOM_DATABASE (a masked CI/CD variable) to the team ledger's
# postgresql:// URL, or publish the log with git (refs/flowloom/log, fetched below; the
# pre-push hook publishes it) and set the variable FLOWLOOM_VKEY to `flowloom log vkey`.
flowloom-check:
  stage: test
  image: python:3.11
  variables:
    GIT_DEPTH: "0"
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH
  script:
    - pip install flowloom
    - git fetch --no-tags origin '+refs/flowloom/*:refs/flowloom/*' || true
    - |
      zero=0000000000000000000000000000000000000000
      if [ -n "$CI_MERGE_REQUEST_DIFF_BASE_SHA" ]; then
        set -- "$CI_MERGE_REQUEST_DIFF_BASE_SHA..HEAD"
      elif [ -n "$CI_COMMIT_BEFORE_SHA" ] && [ "$CI_COMMIT_BEFORE_SHA" != "$zero" ] \\
          && git cat-file -e "$CI_COMMIT_BEFORE_SHA^{commit}" 2>/dev/null; then
        set -- "$CI_COMMIT_BEFORE_SHA..$CI_COMMIT_SHA"
      elif [ "$CI_COMMIT_BRANCH" != "$CI_DEFAULT_BRANCH" ]; then
        git fetch --no-tags origin "$CI_DEFAULT_BRANCH"
        set -- "FETCH_HEAD..HEAD"
      else
        set -- --all
      fi
      if [ -z "$FLOWLOOM_DATABASE" ] && [ -n "$FLOWLOOM_VKEY" ]; then
        set -- --ledger-ref refs/flowloom/log "$@"
      fi
      flowloom check "$@"
"""


def write_ci(repo_top: Path, kind: str) -> list[tuple[Path, str]]:
    """Write the CI job for `kind` (github, gitlab); returns (path, what happened) pairs.

    An existing file that differs from the template is left alone: it may be the
    team's own edit. GitLab has one `.gitlab-ci.yml`: if it exists, the job goes to
    `.flowloom/gitlab-ci.yml` and the result says how to include it.
    """
    if kind == "github":
        return [
            _write_if_absent(repo_top / ".github" / "workflows" / "flowloom.yml", GITHUB_WORKFLOW)
        ]
    if kind == "gitlab":
        main = repo_top / ".gitlab-ci.yml"
        if not main.exists():
            return [_write_if_absent(main, GITLAB_JOB)]
        snippet = repo_top / ".flowloom" / "gitlab-ci.yml"
        written = _write_if_absent(snippet, GITLAB_JOB)
        if "flowloom-check" in main.read_text("utf-8", errors="replace"):
            return [written]
        include = "include:\n  - local: .flowloom/gitlab-ci.yml"
        return [(written[0], f"{written[1]}; add to .gitlab-ci.yml:\n{include}")]
    raise InputError(f"unknown CI {kind!r}: use github or gitlab")


def _write_if_absent(path: Path, text: str) -> tuple[Path, str]:
    if path.exists():
        same = path.read_text("utf-8", errors="replace") == text
        return path, "unchanged" if same else "exists, left as is (delete it to regenerate)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path, "created"
