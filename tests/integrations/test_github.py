"""GitHub: App and token auth, check run, comment kept up to date, statuses, branch
protection, signed webhooks, and delivery through an outage and a restart."""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from flowloom.errors import AuthError, InputError
from flowloom.integrations.github import COMMENT_MARKER
from flowloom.integrations.publish import DecisionLine, Target
from flowloom.integrations.signatures import github_signature, verify_github, verify_gitlab
from tests.integrations.conftest import Opened
from tests.integrations.standin import FIXTURES, GitHubStandIn, rsa_key

REPO = "octokit-fixture-org/create-status"
SHA = "0000000000000000000000000000000000000001"
SHA2 = "0000000000000000000000000000000000000002"
HUMAN = {"type": "human", "id": "usr_admin", "name": "Admin"}
SECRET = "It's a Secret to Everybody"


def verdict(ok: bool, *, protected: bool = True) -> dict[str, Any]:
    commits = [
        {
            "sha": SHA,
            "subject": "Add retries",
            "ok": True,
            "decisions": ["dec_1"],
            "problems": [],
        }
    ]
    if not ok:
        commits.append(
            {
                "sha": SHA2,
                "subject": "Quick fix",
                "ok": False,
                "decisions": [],
                "problems": [{"kind": "unlinked", "message": "no linked decision"}],
            }
        )
    return {
        "ok": ok,
        "range": "main..HEAD",
        "branch": "main",
        "protected": protected,
        "checked": len(commits),
        "linked": 1,
        "overridden": 0,
        "failing": 0 if ok else 1,
        "commits": commits,
    }


DECISIONS = [DecisionLine("dec_1", "Retry uploads with backoff", "approved", ("approved by bob",))]


# -- signatures ------------------------------------------------------------------------


def test_github_signature_matches_githubs_documented_test_vector() -> None:
    # docs.github.com, "Validating webhook deliveries": this secret and payload give this.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(SECRET, b"Hello, World!") == expected
    assert verify_github(SECRET, b"Hello, World!", expected)
    assert not verify_github(SECRET, b"Hello, World?", expected)
    assert not verify_github(SECRET, b"Hello, World!", expected.replace("sha256=", "sha1="))
    assert not verify_github(SECRET, b"Hello, World!", None)
    assert not verify_github("", b"Hello, World!", expected)
    assert verify_gitlab("tok", "tok") and not verify_gitlab("tok", "tok2")
    assert not verify_gitlab("tok", None) and not verify_gitlab("", "")


# -- settings --------------------------------------------------------------------------


def test_secrets_are_sealed_at_rest_and_changes_recorded(opened: Opened) -> None:
    integrations = opened.integrations
    integrations.configure(
        "alpha",
        "github",
        {"repo": REPO},
        {"token": "ghp_sekrit_token_value", "webhook_secret": SECRET},
        actor=HUMAN,
    )
    raw = sqlite3.connect(opened.path).execute("SELECT settings, sealed FROM integration_configs")
    settings, sealed = raw.fetchone()
    assert b"ghp_sekrit" not in bytes(sealed) and "ghp_sekrit" not in settings
    shown = integrations.config("alpha", "github").public()
    assert shown["secrets"] == {"token": True, "private_key": False, "webhook_secret": True}
    assert "ghp_sekrit" not in json.dumps(shown)
    kind, project, meta = opened.audit.events[-1]
    assert (kind, project) == ("integration.configured", "alpha")
    assert meta["actor"] == HUMAN and meta["refs"]["secrets_changed"] == ["token", "webhook_secret"]
    assert "ghp_sekrit" not in json.dumps(meta)
    with pytest.raises(InputError, match="owner/name"):
        integrations.configure("alpha", "github", {"repo": "nope"}, {}, actor=HUMAN)
    with pytest.raises(InputError, match="private key"):
        integrations.configure(
            "alpha", "github", {"repo": REPO, "app_id": "1", "installation_id": 2}, {}, actor=HUMAN
        )
    with pytest.raises(InputError, match="unknown github setting"):
        integrations.configure("alpha", "github", {"repo": REPO, "colour": 1}, {}, actor=HUMAN)


# -- publishing through a GitHub App -----------------------------------------------------


def test_app_publishes_check_run_comment_and_status_then_edits_them(opened: Opened) -> None:
    private, public = rsa_key()
    with_app = GitHubStandIn(app=("4242", public)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {
                "repo": REPO,
                "api_url": with_app.url,
                "app_id": "4242",
                "installation_id": 42,
                "details_url": "https://flowloom.example/alpha",
            },
            {"private_key": private, "webhook_secret": SECRET},
            actor=HUMAN,
        )
        target = Target(SHA, number=7, branch="main")
        ids = opened.integrations.publish("alpha", "github", verdict(False), target, DECISIONS)
        run = opened.integrations.deliver_due()
        assert run.delivered == ids and not run.retrying and not run.dead
        base = f"/repos/{REPO}"
        assert with_app.made() == [
            ("POST", "/app/installations/42/access_tokens"),
            ("GET", f"{base}/commits/{SHA}/check-runs"),
            ("POST", f"{base}/check-runs"),
            ("GET", f"{base}/issues/7/comments"),
            ("POST", f"{base}/issues/7/comments"),
            ("POST", f"{base}/statuses/{SHA}"),
        ]
        calls = with_app.calls
        assert calls[1].query == {"check_name": ["FlowLoom"]}
        check = calls[2].json
        assert check["head_sha"] == SHA and check["conclusion"] == "failure"
        assert check["details_url"] == "https://flowloom.example/alpha"
        assert "no linked decision" in check["output"]["text"]
        comment = calls[4].json["body"]
        assert comment.startswith(COMMENT_MARKER)
        assert "`dec_1` | Retry uploads with backoff | approved | approved by bob" in comment
        assert calls[5].json == {
            "state": "failure",
            "context": "flowloom/check",
            "description": "2 commits: 1 linked to a decision, 1 failing",
            "target_url": "https://flowloom.example/alpha",
        }
        assert all(c.headers["accept"] == "application/vnd.github+json" for c in calls)
        assert calls[1].headers["authorization"].startswith("Bearer ghs_standin")

        # A second verdict for the same head: the check run and the comment are edited.
        with_app.calls.clear()
        files = {SHA2: ["src/app.py"]}
        opened.integrations.publish(
            "alpha", "github", verdict(False), target, DECISIONS, files=files
        )
        opened.integrations.deliver_due()
        run_id = next(iter(with_app.check_runs))
        comment_id = next(iter(with_app.comments))
        assert with_app.made() == [
            ("GET", f"{base}/commits/{SHA}/check-runs"),
            ("PATCH", f"{base}/check-runs/{run_id}"),
            ("GET", f"{base}/issues/7/comments"),
            ("POST", f"{base}/statuses/{SHA}"),
        ]  # the comment said the same already: not edited, not re-posted
        annotation = with_app.calls[1].json["output"]["annotations"][0]
        assert annotation["path"] == "src/app.py" and annotation["annotation_level"] == "failure"
        with_app.calls.clear()
        opened.integrations.publish("alpha", "github", verdict(True), target, DECISIONS)
        opened.integrations.deliver_due()
        assert ("PATCH", f"{base}/issues/comments/{comment_id}") in with_app.made()
        assert len(with_app.comments) == 1 and len(with_app.check_runs) == 1
        assert "✅" in with_app.comments[comment_id]["body"]
    finally:
        with_app.stop()


def test_a_jwt_signed_by_another_key_gets_no_token(opened: Opened) -> None:
    private, _ = rsa_key()
    _, public = rsa_key(1)
    standin = GitHubStandIn(app=("4242", public)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": REPO, "api_url": standin.url, "app_id": "4242", "installation_id": 42},
            {"private_key": private},
            actor=HUMAN,
        )
        opened.integrations.publish("alpha", "github", verdict(True), Target(SHA), [])
        run = opened.integrations.deliver_due()
        assert run.dead and not run.delivered  # 401: retrying cannot help
        item = opened.integrations.items("alpha")[0]
        assert item.state == "dead" and "HTTP 401" in (item.last_error or "")
    finally:
        standin.stop()


# -- outage and restart ------------------------------------------------------------------


def test_github_down_then_back_after_a_restart_gets_everything_once(opened: Opened) -> None:
    standin = GitHubStandIn(tokens=("ghs_token",)).start()
    port = standin.port
    opened.integrations.configure(
        "alpha",
        "github",
        {"repo": REPO, "api_url": standin.url},
        {"token": "ghs_token"},
        actor=HUMAN,
    )
    standin.stop()  # GitHub is down
    first = opened.integrations.publish(
        "alpha", "github", verdict(False), Target(SHA, 7), DECISIONS
    )
    run = opened.integrations.deliver_due()
    assert run.retrying == [first[0]] and not run.delivered  # the rest wait behind it
    second = opened.integrations.publish(
        "alpha", "github", verdict(True), Target(SHA, 7), DECISIONS
    )
    opened.reopen()  # the FlowLoom server restarts while GitHub is still down
    standin.port = port
    standin.start()
    later = datetime.now(UTC) + timedelta(hours=2)
    run = opened.integrations.deliver_due(later)
    assert run.delivered == second and not run.retrying
    states = {i.id: i.state for i in opened.integrations.items("alpha")}
    assert {states[i] for i in first} == {"superseded"}
    assert len(standin.check_runs) == 1 and len(standin.comments) == 1
    (check,) = standin.check_runs.values()
    assert check["conclusion"] == "success"  # the newest verdict, not the stale one
    assert opened.integrations.deliver_due(later).delivered == []
    standin.stop()


def test_a_personal_token_gets_a_status_instead_of_a_check_run(opened: Opened) -> None:
    standin = GitHubStandIn(tokens=("ghp_personal",)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": REPO, "api_url": standin.url},
            {"token": "ghp_personal"},
            actor=HUMAN,
        )
        target = Target(SHA, 5)
        opened.integrations.publish("alpha", "github", verdict(True, protected=False), target, [])
        assert len(opened.integrations.deliver_due().delivered) == 2
        assert standin.made() == [
            ("GET", f"/repos/{REPO}/issues/5/comments"),
            ("POST", f"/repos/{REPO}/issues/5/comments"),
            ("POST", f"/repos/{REPO}/statuses/{SHA}"),
        ]
    finally:
        standin.stop()


def test_server_errors_are_retried_with_backoff(opened: Opened) -> None:
    standin = GitHubStandIn(tokens=("ghs_token",)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": REPO, "api_url": standin.url},
            {"token": "ghs_token"},
            actor=HUMAN,
        )
        standin.fail_next = [502]
        opened.integrations.publish(
            "alpha", "github", verdict(True, protected=False), Target(SHA), []
        )
        now = datetime.now(UTC)
        assert opened.integrations.deliver_due(now).retrying
        assert opened.integrations.deliver_due(now).retrying == []  # not due yet
        assert opened.integrations.deliver_due(now + timedelta(seconds=6)).delivered
        assert [m for m, _ in standin.made()].count("POST") == 1
    finally:
        standin.stop()


# -- recorded exchanges: statuses, repository, branch protection --------------------------


def test_status_and_test_call_match_the_recorded_exchanges(opened: Opened) -> None:
    standin = GitHubStandIn(tokens=("0000000000000000000000000000000000000001",)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": "octokit-fixture-org/hello-world", "api_url": standin.url},
            {"token": "0000000000000000000000000000000000000001"},
            actor=HUMAN,
        )
        outcome = opened.integrations.send_test("alpha", "github", actor=HUMAN)
        assert outcome == {
            "ok": True,
            "op": "github.repository",
            "repository": "octokit-fixture-org/hello-world",
        }
        assert standin.made() == [("GET", "/repos/octokit-fixture-org/hello-world")]
        assert opened.audit.events[-1][0] == "integration.tested"
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": "octokit-fixture-org/missing", "api_url": standin.url},
            {},
            actor=HUMAN,
        )
        failed = opened.integrations.send_test("alpha", "github", actor=HUMAN)
        assert failed["ok"] is False and "HTTP 404" in failed["error"]
    finally:
        standin.stop()


def test_branch_protection_is_read_and_recorded(opened: Opened) -> None:
    token = "0000000000000000000000000000000000000001"
    standin = GitHubStandIn(tokens=(token,)).start()
    repo = "octokit-fixture-org/branch-protection"
    try:
        opened.integrations.configure(
            "alpha", "github", {"repo": repo, "api_url": standin.url}, {"token": token}, actor=HUMAN
        )
        assert opened.integrations.branch_protection("alpha", "main", actor=HUMAN) is None
        kind, _, meta = opened.audit.events[-1]
        assert kind == "integration.github_branch_protection"
        assert meta["refs"]["protected"] is False and meta["subject"] == f"{repo}:main"
        # Protect the branch as recorded (the recorded PUT), then read it again.
        recorded_put = json.loads((FIXTURES / "api" / "branch-protection.json").read_text())[2]
        httpx.put(
            standin.url + recorded_put["path"],
            json=recorded_put["body"],
            headers={"Authorization": f"token {token}", "X-GitHub-Api-Version": "2022-11-28"},
        ).raise_for_status()
        settings = opened.integrations.branch_protection("alpha", "main", actor=HUMAN)
        assert settings is not None
        refs = opened.audit.events[-1][2]["refs"]
        assert refs["protected"] is True and refs["required_checks"] == ["foo/bar"]
        assert refs["strict_checks"] is True and refs["dismiss_stale_reviews"] is True
        assert refs["enforce_admins"] is True and refs["restrictions"] is True
        paths = [p for _, p in standin.made()]
        assert paths.count(f"/repos/{repo}/branches/main/protection") == 3
    finally:
        standin.stop()


# -- webhooks ----------------------------------------------------------------------------


def _payload(event: str, name: str) -> bytes:
    return (FIXTURES / "webhooks" / event / name).read_bytes()


_DELIVERIES = itertools.count(1)


def _headers(
    event: str, body: bytes, secret: str = SECRET, delivery: str | None = None
) -> dict[str, str]:
    return {
        "x-github-event": event,
        "x-github-delivery": delivery or f"72d3162e-cc78-11e3-81ab-{next(_DELIVERIES):012d}",
        "x-hub-signature-256": github_signature(secret, body),
    }


@pytest.mark.parametrize(
    ("event", "name", "kind"),
    [
        ("pull_request", "opened.payload.json", "integration.github_pull_request"),
        ("pull_request", "synchronize.payload.json", "integration.github_pull_request"),
        ("pull_request_review", "submitted.payload.json", "integration.github_review"),
        ("push", "payload.json", "integration.github_push"),
        ("check_suite", "completed.payload.json", "integration.github_check_suite"),
        ("installation", "created.payload.json", "integration.github_installation"),
    ],
)
def test_signed_webhooks_are_recorded_as_evidence(
    opened: Opened, event: str, name: str, kind: str
) -> None:
    opened.integrations.configure(
        "alpha",
        "github",
        {"repo": "Codertocat/Hello-World", "app_id": "29310", "installation_id": 957387},
        {"webhook_secret": SECRET, "private_key": "unused"},
        actor=HUMAN,
    )
    body = _payload(event, name)
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    received = opened.integrations.receive_github(body, _headers(event, body, delivery=delivery))
    assert received.projects == ("alpha",) and received.recorded == kind
    recorded_kind, project, meta = opened.audit.events[-1]
    assert (recorded_kind, project) == (kind, "alpha")
    payload = json.loads(body)
    sender = payload["sender"]
    assert meta["actor"] == {
        "type": "human",
        "id": f"github:{sender['id']}",
        "name": sender["login"],
    }
    assert meta["refs"]["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    count = len(opened.audit.events)
    replay = opened.integrations.receive_github(body, _headers(event, body, delivery=delivery))
    assert replay.recorded is None and len(opened.audit.events) == count  # not twice
    with pytest.raises(AuthError, match="X-Hub-Signature-256"):
        opened.integrations.receive_github(body, _headers(event, body, secret="wrong"))
    with pytest.raises(AuthError):
        opened.integrations.receive_github(body + b" ", _headers(event, body))


def test_a_merge_and_a_mapped_review_are_evidence_not_approval(opened: Opened) -> None:
    opened.integrations.configure(
        "alpha",
        "github",
        {"repo": "Codertocat/Hello-World", "user_map": {"21031067": "usr_bob"}},
        {"webhook_secret": SECRET},
        actor=HUMAN,
    )
    payload = json.loads(_payload("pull_request", "closed.payload.json"))
    payload["pull_request"]["merged"] = True
    payload["pull_request"]["merged_by"] = payload["sender"]
    body = json.dumps(payload).encode()
    opened.integrations.receive_github(body, _headers("pull_request", body))
    kind, _, meta = opened.audit.events[-1]
    assert kind == "integration.github_merge"
    assert meta["git"] == {"branch": "master", "head": payload["pull_request"]["merge_commit_sha"]}
    payload = json.loads(_payload("pull_request_review", "submitted.payload.json"))
    payload["review"]["state"] = "approved"
    body = json.dumps(payload).encode()
    opened.integrations.receive_github(body, _headers("pull_request_review", body))
    kind, _, meta = opened.audit.events[-1]
    assert kind == "integration.github_review"
    assert meta["refs"]["flowloom_user"] == "usr_bob" and meta["refs"]["state"] == "approved"
    assert meta["refs"]["counts_as_approval"] is False
    assert "decision.approve" not in opened.audit.kinds()


def test_a_delivery_not_recorded_is_taken_when_github_redelivers_it(opened: Opened) -> None:
    opened.integrations.configure(
        "alpha",
        "github",
        {"repo": "Codertocat/Hello-World"},
        {"webhook_secret": SECRET},
        actor=HUMAN,
    )
    body = _payload("push", "payload.json")
    headers = _headers("push", body)
    opened.audit.fail_next = True
    with pytest.raises(OSError):
        opened.integrations.receive_github(body, headers)
    redelivered = opened.integrations.receive_github(body, headers)  # same id, as GitHub does
    assert redelivered.recorded == "integration.github_push"
    assert opened.audit.kinds().count("integration.github_push") == 1


def test_ping_and_other_projects(opened: Opened) -> None:
    opened.integrations.configure(
        "alpha",
        "github",
        {"repo": "Codertocat/Hello-World"},
        {"webhook_secret": SECRET},
        actor=HUMAN,
    )
    opened.integrations.configure(
        "beta",
        "github",
        {"repo": "Codertocat/Hello-World"},
        {"webhook_secret": "beta's own"},
        actor=HUMAN,
    )
    body = _payload("push", "payload.json")
    received = opened.integrations.receive_github(body, _headers("push", body, "beta's own"))
    assert received.projects == ("beta",)
    opened.integrations.configure(
        "gamma",
        "github",
        {"repo": "Octocoders/Hello-World"},
        {"webhook_secret": SECRET},
        actor=HUMAN,
    )
    ping = _payload("ping", "payload.json")
    assert opened.integrations.receive_github(ping, _headers("ping", ping)).recorded is None
    with pytest.raises(InputError, match="not JSON"):
        opened.integrations.receive_github(b"{", _headers("push", b"{"))


def test_an_opened_pull_request_shows_the_check_waiting_until_the_verdict(
    opened: Opened,
) -> None:
    standin = GitHubStandIn(tokens=("ghs_token",)).start()
    try:
        opened.integrations.configure(
            "alpha",
            "github",
            {"repo": "Codertocat/Hello-World", "api_url": standin.url},
            {"token": "ghs_token", "webhook_secret": SECRET},
            actor=HUMAN,
        )
        body = _payload("pull_request", "opened.payload.json")
        head = json.loads(body)["pull_request"]["head"]["sha"]
        opened.integrations.receive_github(body, _headers("pull_request", body))
        opened.integrations.deliver_due()
        (run,) = standin.check_runs.values()
        assert run["status"] == "in_progress" and run["head_sha"] == head
        target = Target(head, 2)
        opened.integrations.publish("alpha", "github", verdict(True, protected=False), target, [])
        opened.integrations.deliver_due()
        assert run["status"] == "completed" and run["conclusion"] == "success"
        standin.calls.clear()  # a late synchronize for the same head: the verdict stays
        opened.integrations.receive_github(body, _headers("pull_request", body))
        opened.integrations.deliver_due()
        assert [m for m, _ in standin.made()] == ["GET"] and run["status"] == "completed"
    finally:
        standin.stop()
