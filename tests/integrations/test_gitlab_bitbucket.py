"""GitLab (commit status, a merge-request note kept up to date) and Bitbucket Cloud
(build status): the exact calls, and delivery after an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flowloom.integrations.github import COMMENT_MARKER
from flowloom.integrations.publish import DecisionLine, Target
from tests.integrations.conftest import Opened
from tests.integrations.standin import BitbucketStandIn, GitLabStandIn
from tests.integrations.test_github import HUMAN, SHA, SHA2, verdict

DECISIONS = [DecisionLine("dec_1", "Retry uploads with backoff", "accepted", ("approved by bob",))]


def test_gitlab_status_and_note_kept_up_to_date(opened: Opened) -> None:
    gitlab = GitLabStandIn("glpat-token", "group/app").start()
    try:
        opened.integrations.configure(
            "alpha",
            "gitlab",
            {"repo": "group/app", "api_url": gitlab.url + "/api/v4"},
            {"token": "glpat-token"},
            actor=HUMAN,
        )
        assert opened.integrations.send_test("alpha", "gitlab", actor=HUMAN)["ok"] is True
        gitlab.calls.clear()
        target = Target(SHA2, number=3)
        opened.integrations.publish("alpha", "gitlab", verdict(False), target, DECISIONS)
        assert len(opened.integrations.deliver_due().delivered) == 2
        base = "/api/v4/projects/group/app"
        assert gitlab.made() == [
            ("POST", f"{base}/statuses/{SHA2}"),
            ("GET", f"{base}/merge_requests/3/notes"),
            ("POST", f"{base}/merge_requests/3/notes"),
        ]
        assert gitlab.calls[0].json == {
            "state": "failed",
            "name": "flowloom/check",
            "description": "2 commits: 1 linked to a decision, 1 failing",
        }
        assert gitlab.calls[1].query == {"per_page": ["100"], "page": ["1"]}
        (note,) = gitlab.notes.values()
        assert note["body"].startswith(COMMENT_MARKER)
        gitlab.calls.clear()
        opened.integrations.publish("alpha", "gitlab", verdict(True), target, DECISIONS)
        opened.integrations.deliver_due()
        assert ("PUT", f"{base}/merge_requests/3/notes/{note['id']}") in gitlab.made()
        assert len(gitlab.notes) == 1 and "✅" in note["body"]
        assert [s["state"] for s in gitlab.statuses] == ["failed", "success"]
    finally:
        gitlab.stop()


def test_bitbucket_build_status_after_an_outage(opened: Opened) -> None:
    bitbucket = BitbucketStandIn("bb-token", "team/app").start()
    port = bitbucket.port
    opened.integrations.configure(
        "alpha",
        "bitbucket",
        {"repo": "team/app", "api_url": bitbucket.url, "details_url": "https://flowloom.example/a"},
        {"token": "bb-token"},
        actor=HUMAN,
    )
    bitbucket.stop()
    opened.integrations.publish("alpha", "bitbucket", verdict(True), Target(SHA), [])
    assert opened.integrations.deliver_due().retrying
    opened.reopen()
    bitbucket.port = port
    bitbucket.start()
    try:
        later = datetime.now(UTC) + timedelta(minutes=10)
        assert len(opened.integrations.deliver_due(later).delivered) == 1
        assert bitbucket.made() == [
            ("POST", f"/2.0/repositories/team/app/commit/{SHA}/statuses/build")
        ]
        assert bitbucket.calls[0].json == {
            "state": "SUCCESSFUL",
            "key": "flowloom-check",
            "name": "FlowLoom check",
            "description": "1 commit: 1 linked to a decision, none failing",
            "url": "https://flowloom.example/a",
        }
    finally:
        bitbucket.stop()
