"""Integrations: settings, publishing verdicts, webhook intake and the queue, together.

Used by the server's routes and by `flowloom integrations`; the caller names who acts
(an authenticated principal's actor, or the command line's user) and every settings
change, test and branch-protection read is recorded in the project's ledger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flowloom.errors import AuthError, InputError, NotFoundError
from flowloom.integrations.delivery import Delivery, DeliveryRun, DeliveryWorker, HostClients
from flowloom.integrations.evidence import Evidence, github_evidence, gitlab_evidence
from flowloom.integrations.http import HostError
from flowloom.integrations.publish import (
    DecisionLine,
    Target,
    can_check,
    plan,
    test_item,
    waiting,
)
from flowloom.integrations.signatures import verify_github, verify_gitlab
from flowloom.integrations.store import HOSTS, IntegrationConfig, IntegrationStore, OutboxItem
from flowloom.outbound import OutboundGuard

__all__ = ["Audit", "Integrations", "Received"]

_log = logging.getLogger("flowloom.integrations")

Audit = Callable[[str, str | None, Mapping[str, Any]], None]
"""Records a security event: (kind, project, meta) (the server's `audit`)."""

_SETTINGS: Mapping[str, frozenset[str]] = {
    "github": frozenset(
        {
            "repo",
            "api_url",
            "app_id",
            "installation_id",
            "protected_branches",
            "user_map",
            "details_url",
        }
    ),
    "gitlab": frozenset({"repo", "api_url", "protected_branches", "user_map", "details_url"}),
    "bitbucket": frozenset({"repo", "api_url", "details_url"}),
}
_MAX_EVENT_BYTES = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB


@dataclass(frozen=True)
class Received:
    """What one webhook delivery did: the projects it was recorded in."""

    event: str
    projects: tuple[str, ...]
    recorded: str | None


def _check_url(value: Any, name: str) -> str:
    url = str(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"{name} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def validate_settings(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` checked for `kind`: known keys, a repository, well-formed values."""
    if kind not in HOSTS:
        raise InputError(f"unknown integration {kind!r}", hint="use " + ", ".join(HOSTS))
    unknown = sorted(set(settings) - _SETTINGS[kind])
    if unknown:
        raise InputError(
            f"unknown {kind} setting {', '.join(unknown)}",
            hint="known: " + ", ".join(sorted(_SETTINGS[kind])),
        )
    clean = {k: v for k, v in settings.items() if v is not None}
    repo = str(clean.get("repo") or "")
    if kind in ("github", "bitbucket") and (repo.count("/") != 1 or repo.startswith("/")):
        raise InputError(f"{kind} repo must be owner/name, got {repo!r}")
    if kind == "gitlab" and ("/" not in repo or repo.startswith("/") or repo.endswith("/")):
        raise InputError(f"gitlab repo must be the project's full path (group/name), got {repo!r}")
    for name in ("api_url", "details_url"):
        if name in clean:
            clean[name] = _check_url(clean[name], name)
    if kind == "github" and ("app_id" in clean) != ("installation_id" in clean):
        raise InputError("a GitHub App needs both app_id and installation_id")
    if "installation_id" in clean:
        try:
            clean["installation_id"] = int(clean["installation_id"])
        except (TypeError, ValueError) as exc:
            raise InputError("installation_id must be a number") from exc
    if "app_id" in clean:
        clean["app_id"] = str(clean["app_id"])
    branches = clean.get("protected_branches")
    if branches is not None and (
        not isinstance(branches, list) or not all(isinstance(b, str) for b in branches)
    ):
        raise InputError("protected_branches must be a list of branch names")
    users = clean.get("user_map")
    if users is not None and (
        not isinstance(users, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items())
    ):
        raise InputError("user_map must map code-host user ids to FlowLoom user ids")
    return clean


class Integrations:
    """The one object the routes and the CLI use."""

    def __init__(
        self,
        store: IntegrationStore,
        clients: HostClients,
        audit: Audit,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        worker: bool = False,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._outbound = outbound or OutboundGuard()
        """Where `api_url` may point (flowloom.outbound); the server's HTTP client
        checks again at send time."""
        self.store = store
        self._clients = clients
        self._audit = audit
        self._clock = clock
        self.delivery = Delivery(store, clients, clock=clock)
        self._worker = DeliveryWorker(self.delivery) if worker else None
        if self._worker is not None:
            self._worker.start()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()

    # -- settings ---------------------------------------------------------------------

    def configure(
        self,
        project: str,
        kind: str,
        settings: Mapping[str, Any],
        secrets: Mapping[str, str | None],
        *,
        actor: Mapping[str, Any],
    ) -> IntegrationConfig:
        clean = validate_settings(kind, settings)
        if clean.get("api_url"):
            self._outbound.check_url(str(clean["api_url"]))
        if kind == "github" and "app_id" in clean and not secrets.get("private_key"):
            existing = self.store.get(project, kind)
            if existing is None or "private_key" not in existing.secrets:
                raise InputError("a GitHub App needs its private key (private_key)")
        config, changed = self.store.put(project, kind, clean, secrets, now=self._clock())
        self._audit(
            "integration.configured",
            project,
            {
                "actor": dict(actor),
                "subject": f"{kind}:{clean.get('repo', '')}",
                "refs": {"host": kind, "settings": clean, "secrets_changed": changed},
            },
        )
        return config

    def remove(self, project: str, kind: str, *, actor: Mapping[str, Any]) -> bool:
        removed = self.store.remove(project, kind)
        if removed:
            self._audit(
                "integration.removed",
                project,
                {"actor": dict(actor), "subject": kind, "refs": {"host": kind}},
            )
        return removed

    def config(self, project: str, kind: str) -> IntegrationConfig:
        found = self.store.get(project, kind)
        if found is None:
            raise NotFoundError(
                f"project {project} has no {kind} integration",
                hint=f"configure it: PUT /api/v1/projects/{project}/integrations/{kind}",
            )
        return found

    def send_test(self, project: str, kind: str, *, actor: Mapping[str, Any]) -> dict[str, Any]:
        """Call the code host now with the stored credentials; the outcome is recorded."""
        config = self.config(project, kind)
        item = test_item(config)
        try:
            answer = self._clients.perform(config, item.op, item.body)
            outcome: dict[str, Any] = {"ok": True, "op": item.op}
            if isinstance(answer, dict):
                outcome["repository"] = answer.get("full_name") or answer.get("path_with_namespace")
        except HostError as exc:
            outcome = {"ok": False, "op": item.op, "error": exc.message}
        self._audit(
            "integration.tested",
            project,
            {"actor": dict(actor), "subject": kind, "refs": {"host": kind, **outcome}},
        )
        return outcome

    # -- outbound ---------------------------------------------------------------------

    def publish(
        self,
        project: str,
        kind: str,
        verdict: Mapping[str, Any],
        target: Target,
        decisions: Sequence[DecisionLine],
        *,
        details_url: str | None = None,
        files: Mapping[str, Sequence[str]] | None = None,
    ) -> list[int]:
        """Queue what shows `verdict` on the code host; the worker sends it."""
        config = self.config(project, kind)
        url = details_url or config.settings.get("details_url")
        now = self._clock()
        ids = [
            self.store.enqueue(project, kind, p.op, p.dedupe, p.body, now=now)
            for p in plan(config, verdict, target, decisions, details_url=url, files=files)
        ]
        if self._worker is not None:
            self._worker.wake()
        return ids

    def deliver_due(self, now: datetime | None = None) -> DeliveryRun:
        return self.delivery.deliver_due(now)

    def items(self, project: str, *, limit: int = 50) -> list[OutboxItem]:
        return self.store.items(project, limit=limit)

    def branch_protection(
        self, project: str, branch: str, *, actor: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Read the branch's protection from GitHub and record it as evidence."""
        config = self.config(project, "github")
        repo = str(config.settings["repo"])
        settings = self._clients.github(config).branch_protection(repo, branch)
        summary = _protection_summary(settings)
        self._audit(
            "integration.github_branch_protection",
            project,
            {
                "actor": dict(actor),
                "subject": f"{repo}:{branch}",
                "refs": {"host": "github", "repository": repo, "branch": branch, **summary},
            },
        )
        return settings

    # -- inbound ----------------------------------------------------------------------

    def receive_github(self, body: bytes, headers: Mapping[str, str]) -> Received:
        """Verify a GitHub delivery against each project it may be for; record evidence."""
        event = headers.get("x-github-event", "")
        payload = _json(body)
        repo = str(_get(payload, "repository", "full_name") or "")
        installation = _get(payload, "installation", "id")
        signature = headers.get("x-hub-signature-256")
        configs = self.store.all("github")
        candidates = [c for c in configs if repo and c.settings.get("repo") == repo]
        if not repo and installation is not None:
            candidates = [c for c in configs if c.settings.get("installation_id") == installation]
        elif not repo:  # a ping for an organisation's hook names no repository
            candidates = configs
        verified = [
            c
            for c in candidates
            if verify_github(c.secrets.get("webhook_secret", ""), body, signature)
        ]
        if not verified:
            # Logged, not recorded: unauthenticated requests must not grow the ledger.
            _log.warning("GitHub webhook for %r refused: no project's secret verifies", repo)
            raise AuthError(
                "the webhook's X-Hub-Signature-256 does not verify for any project",
                hint="set the same webhook secret in GitHub and in the project's integration",
            )
        delivery = headers.get("x-github-delivery", "")[:200]
        if delivery and not self.store.first_time("github", delivery, now=self._clock()):
            # A replay of a delivery already recorded (a redelivery keeps its id, and is
            # taken when the first attempt was not recorded: see `forget`).
            return Received(event, tuple(c.project for c in verified), None)
        recorded: str | None = None
        try:
            for config in verified:
                users = config.settings.get("user_map") or {}
                found = github_evidence(event, payload, delivery=delivery, user_map=users)
                if found is not None:
                    self._record(config.project, found)
                    recorded = found.kind
                self._await_verdict(config, event, payload)
        except BaseException:
            if delivery:
                self.store.forget("github", delivery)
            raise
        return Received(event, tuple(c.project for c in verified), recorded)

    def _await_verdict(
        self, config: IntegrationConfig, event: str, payload: Mapping[str, Any]
    ) -> None:
        """A pull request opened or pushed to: show FlowLoom's check as in progress."""
        action = payload.get("action")
        pr = payload.get("pull_request")
        if event != "pull_request" or action not in ("opened", "synchronize", "reopened"):
            return
        if not isinstance(pr, dict) or not isinstance(pr.get("head"), dict):
            return
        head = pr["head"].get("sha")
        if not isinstance(head, str) or not can_check(config):
            return
        item = waiting(config, head)
        self.store.enqueue(
            config.project, "github", item.op, item.dedupe, item.body, now=self._clock()
        )
        if self._worker is not None:
            self._worker.wake()

    def receive_gitlab(self, body: bytes, headers: Mapping[str, str]) -> Received:
        """Check a GitLab delivery's X-Gitlab-Token against each project it may be for."""
        event = headers.get("x-gitlab-event", "")
        payload = _json(body)
        path = str(_get(payload, "project", "path_with_namespace") or "")
        token = headers.get("x-gitlab-token")
        verified = [
            c
            for c in self.store.all("gitlab")
            if path
            and c.settings.get("repo") == path
            and verify_gitlab(c.secrets.get("webhook_secret", ""), token)
        ]
        if not verified:
            _log.warning("GitLab webhook for %r refused: the token is no project's", path)
            raise AuthError(
                "the webhook's X-Gitlab-Token is not the secret of any project for it",
                hint="set the same secret token in GitLab and in the project's integration",
            )
        recorded: str | None = None
        for config in verified:
            found = gitlab_evidence(event, payload, user_map=config.settings.get("user_map") or {})
            if found is not None:
                self._record(config.project, found)
                recorded = found.kind
        return Received(event, tuple(c.project for c in verified), recorded)

    def _record(self, project: str, evidence: Evidence) -> None:
        self._audit(evidence.kind, project, evidence.meta)


def _json(body: bytes) -> Mapping[str, Any]:
    if len(body) > _MAX_EVENT_BYTES:
        raise InputError("the webhook payload is over 25 MB")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the webhook payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InputError("the webhook payload is not a JSON object")
    return payload


def _get(payload: Mapping[str, Any], outer: str, inner: str) -> Any:
    value = payload.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _protection_summary(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that matter to an auditor, from GitHub's protection object."""
    if settings is None:
        return {"protected": False}
    reviews = settings.get("required_pull_request_reviews") or {}
    checks = settings.get("required_status_checks") or {}
    return {
        "protected": True,
        "required_approvals": reviews.get("required_approving_review_count"),
        "dismiss_stale_reviews": reviews.get("dismiss_stale_reviews"),
        "require_code_owner_reviews": reviews.get("require_code_owner_reviews"),
        "required_checks": checks.get("contexts"),
        "strict_checks": checks.get("strict"),
        "enforce_admins": (settings.get("enforce_admins") or {}).get("enabled"),
        "allow_force_pushes": (settings.get("allow_force_pushes") or {}).get("enabled"),
        "restrictions": settings.get("restrictions") is not None,
    }
