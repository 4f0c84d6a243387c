"""A `flowloom check` verdict, turned into what each code host shows reviewers.

GitHub: one check run named "FlowLoom" per pull-request head (conclusion success or
failure, a summary, and a failure annotation for each unlinked or unapproved commit on
the first file it changed), a pull-request comment listing the decisions behind the
change (found again by its hidden marker and edited), and a commit status
``flowloom/check`` when the target branch is protected. GitLab: the commit status and
a merge-request note. Bitbucket Cloud: a build status. Each becomes a queued item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowloom.integrations.github import COMMENT_MARKER
from flowloom.integrations.store import IntegrationConfig

__all__ = [
    "CHECK_NAME",
    "STATUS_CONTEXT",
    "DecisionLine",
    "Planned",
    "Target",
    "can_check",
    "plan",
    "test_item",
    "waiting",
]

CHECK_NAME = "FlowLoom"
STATUS_CONTEXT = "flowloom/check"
_MAX_ANNOTATIONS = 50  # GitHub's limit per request
_MAX_TEXT = 60000  # GitHub caps a comment at 65,536 characters


@dataclass(frozen=True)
class Target:
    """Where the verdict goes: the head commit, and the pull/merge request if any."""

    sha: str
    number: int | None = None
    branch: str | None = None


@dataclass(frozen=True)
class DecisionLine:
    """A decision as the comment lists it."""

    id: str
    title: str
    status: str
    approvals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Planned:
    op: str
    dedupe: str
    body: Mapping[str, Any]


def _ok(verdict: Mapping[str, Any]) -> bool:
    return bool(verdict.get("ok"))


def _failing(verdict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in verdict.get("commits", []) if not c.get("ok", not c.get("problems"))]


def _summary(verdict: Mapping[str, Any]) -> str:
    checked = int(verdict.get("checked", len(verdict.get("commits", []))))
    linked, failing = int(verdict.get("linked", 0)), len(_failing(verdict))
    text = f"{checked} commit{'' if checked == 1 else 's'}: {linked} linked to a decision"
    overridden = int(verdict.get("overridden", 0))
    if overridden:
        text += f", {overridden} overridden"
    return text + (f", {failing} failing" if failing else ", none failing")


def _problems(commit: Mapping[str, Any]) -> list[str]:
    return [str(p.get("message", p.get("kind", ""))) for p in commit.get("problems", [])]


def check_run(
    verdict: Mapping[str, Any], *, details_url: str | None, files: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """The check run's body (without head_sha, which the call adds)."""
    annotations: list[dict[str, Any]] = []
    lines: list[str] = []
    for commit in _failing(verdict):
        sha, subject = str(commit.get("sha", "")), str(commit.get("subject", ""))
        problems = _problems(commit)
        lines.append(f"- `{sha[:12]}` {subject}: " + "; ".join(problems))
        changed = files.get(sha) or ()
        if changed and len(annotations) < _MAX_ANNOTATIONS:
            annotations.append(
                {
                    "path": changed[0],
                    "start_line": 1,
                    "end_line": 1,
                    "annotation_level": "failure",
                    "title": f"{sha[:12]} {subject}"[:255],
                    "message": "\n".join(problems)[:64000],
                }
            )
    output: dict[str, Any] = {
        "title": "All commits linked and approved" if _ok(verdict) else "Commits need a decision",
        "summary": _summary(verdict),
    }
    if lines:
        output["text"] = "\n".join(lines)[:_MAX_TEXT]
    if annotations:
        output["annotations"] = annotations
    run: dict[str, Any] = {
        "name": CHECK_NAME,
        "status": "completed",
        "conclusion": "success" if _ok(verdict) else "failure",
        "output": output,
    }
    if details_url:
        run["details_url"] = details_url
    return run


def comment(verdict: Mapping[str, Any], decisions: Sequence[DecisionLine]) -> str:
    """The pull-request comment: the decisions behind the change, then what fails."""
    parts = [
        COMMENT_MARKER,
        "### FlowLoom: the decisions behind this change",
        "",
        ("✅ " if _ok(verdict) else "❌ ") + _summary(verdict),
        "",
    ]
    if decisions:
        parts += ["| decision | title | status | approvals |", "|---|---|---|---|"]
        for d in decisions:
            title = d.title.replace("|", "\\|").replace("\n", " ")
            approvals = ", ".join(d.approvals) or "none"
            parts.append(f"| `{d.id}` | {title} | {d.status} | {approvals} |")
    else:
        parts.append("No commit in this change is linked to a decision.")
    failing = _failing(verdict)
    if failing:
        parts += ["", "**Commits that fail the gate**", ""]
        for commit in failing:
            sha, subject = str(commit.get("sha", "")), str(commit.get("subject", ""))
            parts.append(f"- `{sha[:12]}` {subject}: " + "; ".join(_problems(commit)))
    return "\n".join(parts)[:_MAX_TEXT]


def _description(verdict: Mapping[str, Any]) -> str:
    return _summary(verdict)[:140]  # GitHub truncates descriptions at 140 characters


def plan(
    config: IntegrationConfig,
    verdict: Mapping[str, Any],
    target: Target,
    decisions: Sequence[DecisionLine],
    *,
    details_url: str | None = None,
    files: Mapping[str, Sequence[str]] | None = None,
) -> list[Planned]:
    """The queued items that show `verdict` on `config`'s code host."""
    repo = str(config.settings.get("repo", ""))
    ok = _ok(verdict)
    protected = bool(verdict.get("protected")) or (
        target.branch is not None
        and target.branch in (config.settings.get("protected_branches") or ())
    )
    items: list[Planned] = []
    if config.kind == "github" and not can_check(config):
        protected = True  # no check run without an App: the status stands in for it
    if config.kind == "github" and can_check(config):
        run = check_run(verdict, details_url=details_url, files=files or {})
        items.append(
            Planned(
                "github.check_run",
                f"check:{target.sha}",
                {"repo": repo, "sha": target.sha, "run": run},
            )
        )
    if config.kind == "github":
        if target.number is not None:
            body = {"repo": repo, "number": target.number, "body": comment(verdict, decisions)}
            items.append(Planned("github.comment", f"comment:{target.number}", body))
        if protected:
            status: dict[str, Any] = {
                "state": "success" if ok else "failure",
                "context": STATUS_CONTEXT,
                "description": _description(verdict),
            }
            if details_url:
                status["target_url"] = details_url
            items.append(
                Planned(
                    "github.status",
                    f"status:{target.sha}",
                    {"repo": repo, "sha": target.sha, "status": status},
                )
            )
    elif config.kind == "gitlab":
        status = {
            "state": "success" if ok else "failed",
            "name": STATUS_CONTEXT,
            "description": _description(verdict),
        }
        if details_url:
            status["target_url"] = details_url
        items.append(
            Planned(
                "gitlab.status",
                f"status:{target.sha}",
                {"repo": repo, "sha": target.sha, "status": status},
            )
        )
        if target.number is not None:
            body = {"repo": repo, "iid": target.number, "body": comment(verdict, decisions)}
            items.append(Planned("gitlab.note", f"note:{target.number}", body))
    elif config.kind == "bitbucket":
        status = {
            "state": "SUCCESSFUL" if ok else "FAILED",
            "key": "flowloom-check",
            "name": "FlowLoom check",
            "description": _description(verdict),
            "url": details_url or str(config.settings.get("details_url") or ""),
        }
        items.append(
            Planned(
                "bitbucket.status",
                f"status:{target.sha}",
                {"repo": repo, "sha": target.sha, "status": status},
            )
        )
    return items


def can_check(config: IntegrationConfig) -> bool:
    """Whether GitHub lets these credentials create check runs: only a GitHub App can
    (its installation token, ``ghs_``); a personal token gets a commit status instead."""
    if config.settings.get("app_id"):
        return True
    return str(config.secrets.get("token", "")).startswith("ghs_")


def waiting(config: IntegrationConfig, sha: str) -> Planned:
    """The check run shown while CI has not sent its verdict (a pull request just opened
    or pushed to); the verdict replaces it, and it never replaces a verdict."""
    run = {
        "name": CHECK_NAME,
        "status": "in_progress",
        "output": {
            "title": "Waiting for the FlowLoom gate",
            "summary": "CI has not sent the verdict of `flowloom check` for this head yet.",
        },
    }
    repo = str(config.settings.get("repo", ""))
    return Planned("github.check_run", f"check:{sha}", {"repo": repo, "sha": sha, "run": run})


def test_item(config: IntegrationConfig) -> Planned:
    """The "send test" call: a read that proves the credentials and the repository."""
    repo = str(config.settings.get("repo", ""))
    op = {"github": "github.repository", "gitlab": "gitlab.project"}.get(
        config.kind, "bitbucket.repository"
    )
    return Planned(op, f"test:{repo}", {"repo": repo})
