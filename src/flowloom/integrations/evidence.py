"""What a code host's webhook proves, as ledger events (the ``integration.*`` family).

The sender is the code host's account that acted, taken from the payload the webhook
signature (GitHub) or token (GitLab) authenticated: that is the verified identity,
recorded as ``github:<id>`` / ``gitlab:<id>`` with its login as name. A GitHub review
by an account mapped to a FlowLoom user names that user too, but stays evidence: a
FlowLoom approval is an electronic signature over the decision's exact recorded
content (``decision.approve``), which a review of a pull request is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Evidence", "github_evidence", "gitlab_evidence"]

_REVIEW_NOTE = (
    "evidence only: a FlowLoom approval is a signature over the decision's recorded "
    "content (decision.approve); a pull-request review signs no decision"
)


@dataclass(frozen=True)
class Evidence:
    """One ledger event to record: its kind, subject and meta (actor, git, refs)."""

    kind: str
    meta: Mapping[str, Any]


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _github_actor(payload: Mapping[str, Any]) -> dict[str, str]:
    sender = _dict(payload.get("sender"))
    login = str(sender.get("login") or "unknown")
    kind = "service" if sender.get("type") == "Bot" else "human"
    return {"type": kind, "id": f"github:{sender.get('id', login)}", "name": login}


def github_evidence(
    event: str,
    payload: Mapping[str, Any],
    *,
    delivery: str,
    user_map: Mapping[str, str],
) -> Evidence | None:
    """The event to record for one GitHub delivery; None for events that prove nothing."""
    repo = str(_dict(payload.get("repository")).get("full_name") or "")
    action = str(payload.get("action") or "")
    refs: dict[str, Any] = {"host": "github", "event": event, "delivery": delivery}
    if repo:
        refs["repository"] = repo
    if action:
        refs["action"] = action
    actor = _github_actor(payload)
    git: dict[str, str] = {}
    if event == "pull_request":
        pr = _dict(payload.get("pull_request"))
        head, base = _dict(pr.get("head")), _dict(pr.get("base"))
        refs.update(
            number=pr.get("number"),
            head=head.get("sha"),
            base=base.get("ref"),
            title=str(pr.get("title") or "")[:200],
        )
        if action == "closed" and pr.get("merged"):
            merger = _dict(pr.get("merged_by"))
            refs.update(merge_commit=pr.get("merge_commit_sha"), merged_by=merger.get("login"))
            if base.get("ref") and pr.get("merge_commit_sha"):
                git = {"branch": str(base["ref"]), "head": str(pr["merge_commit_sha"])}
            return Evidence("integration.github_merge", _meta(actor, refs, git, repo))
        return Evidence("integration.github_pull_request", _meta(actor, refs, git, repo))
    if event == "pull_request_review":
        review, pr = _dict(payload.get("review")), _dict(payload.get("pull_request"))
        reviewer = _dict(review.get("user"))
        mapped = user_map.get(str(reviewer.get("id"))) or user_map.get(str(reviewer.get("login")))
        refs.update(
            number=pr.get("number"),
            review=review.get("id"),
            state=review.get("state"),
            commit=review.get("commit_id"),
            reviewer=reviewer.get("login"),
            counts_as_approval=False,
            approval_note=_REVIEW_NOTE,
        )
        if mapped:
            refs["flowloom_user"] = mapped
        return Evidence("integration.github_review", _meta(actor, refs, git, repo))
    if event == "push":
        ref = str(payload.get("ref") or "")
        commits = [c.get("id") for c in payload.get("commits") or [] if isinstance(c, Mapping)]
        refs.update(
            ref=ref,
            before=payload.get("before"),
            after=payload.get("after"),
            forced=bool(payload.get("forced")),
            commits=commits[:100],
        )
        if ref.startswith("refs/heads/") and payload.get("after"):
            git = {"branch": ref.removeprefix("refs/heads/"), "head": str(payload["after"])}
        return Evidence("integration.github_push", _meta(actor, refs, git, repo))
    if event == "check_suite":
        suite = _dict(payload.get("check_suite"))
        refs.update(
            head=suite.get("head_sha"),
            branch=suite.get("head_branch"),
            status=suite.get("status"),
            conclusion=suite.get("conclusion"),
        )
        return Evidence("integration.github_check_suite", _meta(actor, refs, git, repo))
    if event == "installation":
        installation = _dict(payload.get("installation"))
        refs.update(
            installation=installation.get("id"),
            app=installation.get("app_id"),
            account=_dict(installation.get("account")).get("login"),
            repositories=[
                r.get("full_name")
                for r in payload.get("repositories") or []
                if isinstance(r, Mapping)
            ][:100],
        )
        return Evidence("integration.github_installation", _meta(actor, refs, git, repo))
    return None


def _meta(
    actor: Mapping[str, str], refs: Mapping[str, Any], git: Mapping[str, str], subject: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "actor": dict(actor),
        "refs": {k: v for k, v in refs.items() if v is not None},
    }
    if git:
        meta["git"] = dict(git)
    if subject:
        meta["subject"] = subject
    return meta


def gitlab_evidence(
    event: str, payload: Mapping[str, Any], *, user_map: Mapping[str, str]
) -> Evidence | None:
    """The event to record for one GitLab delivery (``X-Gitlab-Event``)."""
    project = str(_dict(payload.get("project")).get("path_with_namespace") or "")
    user = _dict(payload.get("user"))
    login = str(user.get("username") or payload.get("user_username") or "unknown")
    ident = user.get("id", payload.get("user_id", login))
    actor = {"type": "human", "id": f"gitlab:{ident}", "name": login}
    refs: dict[str, Any] = {"host": "gitlab", "event": event, "repository": project}
    git: dict[str, str] = {}
    if event == "Merge Request Hook":
        attrs = _dict(payload.get("object_attributes"))
        action = str(attrs.get("action") or "")
        last = _dict(attrs.get("last_commit"))
        refs.update(
            action=action,
            number=attrs.get("iid"),
            head=last.get("id"),
            base=attrs.get("target_branch"),
            title=str(attrs.get("title") or "")[:200],
        )
        if action == "merge":
            if attrs.get("target_branch") and attrs.get("merge_commit_sha"):
                refs["merge_commit"] = attrs.get("merge_commit_sha")
                git = {
                    "branch": str(attrs["target_branch"]),
                    "head": str(attrs["merge_commit_sha"]),
                }
            return Evidence("integration.gitlab_merge", _meta(actor, refs, git, project))
        if action in ("approved", "approval", "unapproved", "unapproval"):
            mapped = user_map.get(str(ident)) or user_map.get(login)
            refs.update(counts_as_approval=False, approval_note=_REVIEW_NOTE)
            if mapped:
                refs["flowloom_user"] = mapped
            return Evidence("integration.gitlab_review", _meta(actor, refs, git, project))
        return Evidence("integration.gitlab_merge_request", _meta(actor, refs, git, project))
    if event == "Push Hook":
        ref = str(payload.get("ref") or "")
        commits = [c.get("id") for c in payload.get("commits") or [] if isinstance(c, Mapping)]
        refs.update(ref=ref, before=payload.get("before"), after=payload.get("after"))
        refs["commits"] = commits[:100]
        if ref.startswith("refs/heads/") and payload.get("after"):
            git = {"branch": ref.removeprefix("refs/heads/"), "head": str(payload["after"])}
        return Evidence("integration.gitlab_push", _meta(actor, refs, git, project))
    return None
