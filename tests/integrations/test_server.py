"""The integrations over HTTP: settings via the API, a verdict queued by CI and sent to
the GitHub stand-in, signed webhooks recorded in the project's ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.integrations.signatures import github_signature
from tests.integrations.standin import FIXTURES, GitHubStandIn
from tests.server.support import OWN, World, live_server, make_world

SECRET = "webhook secret"
SHA = "0000000000000000000000000000000000000001"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("home")
    found = make_world(str(home / "server.db"), home)
    assert found.server.integrations is not None
    found.server.integrations.close()  # no worker: the tests send the queue themselves
    yield found
    found.close()


@pytest.fixture(scope="module")
def url(world: World) -> Iterator[str]:
    with live_server(world.server) as base:
        yield base


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(tokens=("ghp_ci",)).start()
    yield standin
    standin.stop()


def _audit(world: World, kind: str) -> list[dict[str, Any]]:
    ledger = world.server.ledger(OWN)
    return [json.loads(e.envelope) for e in ledger.store.entries(OWN, kind=kind)]


def test_settings_verdict_and_webhook_over_http(
    world: World, url: str, github: GitHubStandIn
) -> None:
    admin = httpx.Client(base_url=url, headers=world.headers("admin"))
    settings = {"repo": "octokit-fixture-org/create-status", "api_url": github.url}
    put = admin.put(
        f"/api/v1/projects/{OWN}/integrations/github",
        json={"settings": settings, "secrets": {"token": "ghp_ci", "webhook_secret": SECRET}},
    )
    assert put.status_code == 200, put.text
    assert put.json()["secrets"] == {"token": True, "private_key": False, "webhook_secret": True}
    listed = admin.get(f"/api/v1/projects/{OWN}/integrations").json()
    assert "ghp_ci" not in json.dumps(listed) and listed[0]["settings"]["repo"] == settings["repo"]
    (configured,) = _audit(world, "integration.configured")
    assert configured["actor"]["id"] == world.user_ids["admin"]
    assert configured["refs"]["secrets_changed"] == ["token", "webhook_secret"]
    assert "attestation" in configured["refs"]
    bad = admin.put(
        f"/api/v1/projects/{OWN}/integrations/jira", json={"settings": {}, "secrets": {}}
    )
    assert bad.status_code == 422

    test = admin.post(f"/api/v1/projects/{OWN}/integrations/github/test")
    assert test.json() == {
        "ok": True,
        "op": "github.repository",
        "repository": "octokit-fixture-org/create-status",
    }
    (tested,) = _audit(world, "integration.tested")
    assert tested["actor"]["id"] == world.user_ids["admin"] and tested["refs"]["ok"] is True

    # CI queues its verdict; the decision's title comes from the server's own ledger.
    decision = DecisionBook(world.server.ledger(OWN)).record(
        title="Retry uploads with backoff", requested_by="developer@example.org"
    )
    verdict = {
        "ok": True,
        "protected": True,
        "checked": 1,
        "linked": 1,
        "commits": [{"sha": SHA, "subject": "Retry", "ok": True, "decisions": [decision.id]}],
    }
    ci = httpx.Client(base_url=url, headers=world.headers("service"))
    queued = ci.post(
        f"/api/v1/projects/{OWN}/integrations/github/verdicts",
        json={"verdict": verdict, "sha": SHA, "number": 12, "branch": "main"},
    )
    assert queued.status_code == 202, queued.text
    github.calls.clear()
    assert world.server.integrations is not None
    run = world.server.integrations.deliver_due()
    assert run.delivered == queued.json()["queued"]
    (comment,) = github.comments.values()
    assert f"`{decision.id}` | Retry uploads with backoff | proposed | none" in comment["body"]
    deliveries = admin.get(f"/api/v1/projects/{OWN}/integrations/github/deliveries").json()
    assert {d["state"] for d in deliveries} == {"delivered"}

    # A signed pull_request_review webhook: recorded as the GitHub reviewer, attested.
    body = (FIXTURES / "webhooks" / "pull_request_review" / "submitted.payload.json").read_bytes()
    payload = json.loads(body)
    payload["repository"]["full_name"] = settings["repo"]
    body = json.dumps(payload).encode()
    hook = httpx.post(
        url + "/api/v1/integrations/github/webhook",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request_review",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": github_signature(SECRET, body),
            "Content-Type": "application/json",
        },
    )
    assert hook.status_code == 200, hook.text
    assert hook.json() == {
        "event": "pull_request_review",
        "projects": [OWN],
        "recorded": "integration.github_review",
    }
    (review,) = _audit(world, "integration.github_review")
    assert review["actor"] == {"type": "human", "id": "github:21031067", "name": "Codertocat"}
    forged = httpx.post(
        url + "/api/v1/integrations/github/webhook",
        content=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert forged.status_code == 401
    assert len(_audit(world, "integration.github_review")) == 1
    # Nobody appends integration evidence through the generic ledger API.
    append = ci.post(
        f"/api/v1/projects/{OWN}/ledger/entries",
        json={"kind": "integration.github_merge", "body": "x"},
    )
    assert append.status_code == 403

    removed = admin.delete(f"/api/v1/projects/{OWN}/integrations/github")
    assert removed.status_code == 204
    assert _audit(world, "integration.removed")[0]["actor"]["id"] == world.user_ids["admin"]


def test_gitlab_webhook_over_http(world: World, url: str, tmp_path: Path) -> None:
    admin = httpx.Client(base_url=url, headers=world.headers("admin"))
    put = admin.put(
        f"/api/v1/projects/{OWN}/integrations/gitlab",
        json={
            "settings": {"repo": "gitlab-org/gitlab-test"},
            "secrets": {"webhook_secret": SECRET},
        },
    )
    assert put.status_code == 200, put.text
    payload = {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": {"id": 1, "path_with_namespace": "gitlab-org/gitlab-test"},
        "object_attributes": {
            "iid": 1,
            "action": "merge",
            "target_branch": "master",
            "merge_commit_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "last_commit": {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"},
            "title": "MS-Viewport",
        },
    }
    body = json.dumps(payload).encode()
    headers = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET}
    hook = httpx.post(url + "/api/v1/integrations/gitlab/webhook", content=body, headers=headers)
    assert hook.status_code == 200 and hook.json()["recorded"] == "integration.gitlab_merge"
    wrong = {**headers, "X-Gitlab-Token": "guess"}
    assert (
        httpx.post(
            url + "/api/v1/integrations/gitlab/webhook", content=body, headers=wrong
        ).status_code
        == 401
    )
    (merge,) = _audit(world, "integration.gitlab_merge")
    assert merge["actor"] == {"type": "human", "id": "gitlab:1", "name": "root"}
    assert merge["git"] == {"branch": "master", "head": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}


def test_web_admin_page_sets_tests_and_removes(
    world: World, url: str, github: GitHubStandIn
) -> None:
    admin = httpx.Client(base_url=url, headers=world.headers("admin"), follow_redirects=True)
    page = f"/ui/projects/{OWN}/integrations"
    assert admin.get(page).status_code == 200
    saved = admin.post(
        page + "/github",
        data={
            "repo": "octo-org/web-set",
            "api_url": github.url,
            "protected_branches": "main, release",
            "token": "ghp_ci",
        },
    )
    assert saved.status_code == 200, saved.text
    assert "token: set" in saved.text and "webhook_secret: not set" in saved.text
    assert "ghp_ci" not in saved.text and "main, release" in saved.text
    assert world.server.integrations is not None
    config = world.server.integrations.config(OWN, "github")
    assert config.settings["protected_branches"] == ["main", "release"]
    tested = admin.post(page + "/github/test")
    assert "Test call: github-ok" in tested.text
    assert github.made()[-1] == ("GET", "/repos/octo-org/web-set")
    auditor = httpx.Client(base_url=url, headers=world.headers("auditor"))
    seen = auditor.get(page)
    assert seen.status_code == 200 and "Send test" not in seen.text
    assert auditor.post(page + "/github/remove").status_code == 403
    admin.post(page + "/github/remove")
    assert world.server.integrations.store.get(OWN, "github") is None
