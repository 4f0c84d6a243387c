"""Sending the queue: each due item to its code host, in order per project and host.

An item that fails with a retryable error (host down, 5xx, rate limit) is tried again
after an exponential backoff (5 s doubling to at most an hour), and the items queued
after it for the same project and host wait for it, so a newer verdict never lands
before an older one. A request the host refuses as wrong is set aside as dead with
the host's message. `DeliveryWorker` runs this in a thread of the server; tests and
`flowloom integrations deliver` call `deliver_due` directly.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from flowloom.integrations.bitbucket import BitbucketApi
from flowloom.integrations.github import AppAuth, GitHubApi, GitHubAuth, TokenAuth
from flowloom.integrations.gitlab import GitLabApi
from flowloom.integrations.http import HostError
from flowloom.integrations.store import IntegrationConfig, IntegrationStore, OutboxItem, stamp

__all__ = ["DEFAULT_APIS", "Delivery", "DeliveryRun", "DeliveryWorker", "HostClients"]

_log = logging.getLogger("flowloom.integrations")
_CLAIM = timedelta(minutes=5)  # longer than any attempt (HTTP timeouts are 30 s a call)

DEFAULT_APIS: Mapping[str, str] = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "bitbucket": "https://api.bitbucket.org",
}


class HostClients:
    """API clients for a project's settings, over one HTTP client; App tokens cached."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http
        self._apps: dict[tuple[str, str, int], AppAuth] = {}
        self._lock = threading.Lock()

    def _github_auth(self, config: IntegrationConfig) -> GitHubAuth:
        settings, secrets = config.settings, config.secrets
        if settings.get("app_id") and "private_key" in secrets:
            fingerprint = hashlib.sha256(secrets["private_key"].encode()).hexdigest()
            key = (str(settings["app_id"]), fingerprint, int(settings["installation_id"]))
            with self._lock:
                auth = self._apps.get(key)
                if auth is None:
                    auth = AppAuth(key[0], secrets["private_key"], key[2])
                    self._apps[key] = auth
            return auth
        if "token" in secrets:
            return TokenAuth(secrets["token"])
        raise HostError(
            f"the GitHub integration of {config.project} has neither an App key nor a token",
            retryable=False,
        )

    def github(self, config: IntegrationConfig) -> GitHubApi:
        api = str(config.settings.get("api_url") or DEFAULT_APIS["github"])
        return GitHubApi(self._http, self._github_auth(config), api=api)

    def _token(self, config: IntegrationConfig) -> str:
        token = config.secrets.get("token")
        if not token:
            raise HostError(f"the {config.kind} integration has no token", retryable=False)
        return token

    def gitlab(self, config: IntegrationConfig) -> GitLabApi:
        api = str(config.settings.get("api_url") or DEFAULT_APIS["gitlab"])
        return GitLabApi(self._http, self._token(config), api=api)

    def bitbucket(self, config: IntegrationConfig) -> BitbucketApi:
        api = str(config.settings.get("api_url") or DEFAULT_APIS["bitbucket"])
        return BitbucketApi(self._http, self._token(config), api=api)

    def perform(self, config: IntegrationConfig, op: str, body: Mapping[str, Any]) -> Any:
        """Carry out one queued operation; HostError on failure."""
        if op == "github.check_run":
            return self.github(config).upsert_check_run(body["repo"], body["sha"], body["run"])
        if op == "github.comment":
            return self.github(config).upsert_comment(
                body["repo"], int(body["number"]), body["body"]
            )
        if op == "github.status":
            return self.github(config).create_status(body["repo"], body["sha"], body["status"])
        if op == "github.repository":
            return self.github(config).repository(body["repo"])
        if op == "gitlab.status":
            return self.gitlab(config).create_status(body["repo"], body["sha"], body["status"])
        if op == "gitlab.note":
            return self.gitlab(config).upsert_note(body["repo"], int(body["iid"]), body["body"])
        if op == "gitlab.project":
            return self.gitlab(config).project(body["repo"])
        if op == "bitbucket.status":
            return self.bitbucket(config).create_build_status(
                body["repo"], body["sha"], body["status"]
            )
        if op == "bitbucket.repository":
            return self.bitbucket(config).repository(body["repo"])
        raise HostError(f"unknown queued operation {op!r}", retryable=False)


@dataclass
class DeliveryRun:
    """What one pass over the queue did."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, list[int]]:
        return {"delivered": self.delivered, "retrying": self.retrying, "dead": self.dead}


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … at most an hour, after the attempts made so far."""
    return timedelta(seconds=min(5 * 2 ** min(attempts, 12), 3600))


class Delivery:
    """One pass over the due items of the queue."""

    def __init__(
        self,
        store: IntegrationStore,
        clients: HostClients,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._clients = clients
        self._clock = clock

    def deliver_due(self, now: datetime | None = None) -> DeliveryRun:
        now = now or self._clock()
        run = DeliveryRun()
        blocked: set[tuple[str, str]] = set()
        due = stamp(now)
        for item in self._store.pending():
            lane = (item.project, item.kind)
            if lane in blocked:
                continue
            if item.next_at > due:  # backing off, or being sent by another worker
                blocked.add(lane)
                continue
            self._one(item, now, run, blocked)
        return run

    def _one(
        self, item: OutboxItem, now: datetime, run: DeliveryRun, blocked: set[tuple[str, str]]
    ) -> None:
        if not self._store.claim(item, now + _CLAIM):
            blocked.add((item.project, item.kind))  # another worker is sending this lane
            return
        config = self._store.get(item.project, item.kind)
        try:
            if config is None:
                raise HostError(f"{item.project} has no {item.kind} integration", retryable=False)
            result = self._clients.perform(config, item.op, item.body)
        except HostError as exc:
            retry = now + backoff(item.attempts) if exc.retryable else None
            state = self._store.failed(item, exc.message, retry_at=retry)
            (run.retrying if state == "pending" else run.dead).append(item.id)
            if state == "pending":
                blocked.add((item.project, item.kind))
            _log.warning("integration item %s (%s): %s", item.id, item.op, exc.message)
            return
        summary = {"id": result.get("id")} if isinstance(result, dict) else {}
        self._store.delivered(item.id, summary, now=self._clock())
        run.delivered.append(item.id)


class DeliveryWorker:
    """A daemon thread that delivers due items, woken early when something is queued."""

    def __init__(self, delivery: Delivery, *, idle_seconds: float = 30.0) -> None:
        self._delivery = delivery
        self._idle = idle_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowloom-integrations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._delivery.deliver_due()
            except Exception:  # a database hiccup must not end the worker
                _log.exception("integration delivery pass failed")
            self._wake.wait(self._idle)
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
