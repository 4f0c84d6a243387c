"""GitHub's REST API, as far as FlowLoom uses it, under an App or a token.

A GitHub App authenticates as itself with a JWT (RS256, signed by the App's private
key, ``iss`` = the App id, at most 10 minutes long; ``iat`` is set 60 s back for clock
drift), then trades it for an installation token with
``POST /app/installations/{id}/access_tokens``; the token is kept until a minute
before it expires. A personal or installation token is used as it is. Every call sends
GitHub's media type and API version (2022-11-28).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from flowloom.integrations.http import HostError, send

__all__ = [
    "API_VERSION",
    "COMMENT_MARKER",
    "AppAuth",
    "GitHubApi",
    "GitHubAuth",
    "TokenAuth",
    "app_jwt",
]

API_VERSION = "2022-11-28"
COMMENT_MARKER = "<!-- flowloom:decisions -->"
"""Hidden in the pull-request comment, so the next verdict edits it instead of re-posting."""
_PAGES = 20


class GitHubAuth(Protocol):
    def authorization(self, http: httpx.Client, api: str) -> str:
        """The Authorization header value for the next call."""


@dataclass(frozen=True)
class TokenAuth:
    """A personal access token or an installation token given as it is."""

    token: str

    def authorization(self, http: httpx.Client, api: str) -> str:
        return f"Bearer {self.token}"


def app_jwt(app_id: str, private_key_pem: str, now: datetime) -> str:
    """The App's own JWT: RS256 over iat (60 s back), exp (9 minutes on) and iss."""
    import jwt

    issued = int(now.timestamp()) - 60
    claims = {"iat": issued, "exp": issued + 600, "iss": str(app_id)}
    return jwt.encode(claims, private_key_pem, algorithm="RS256")


class AppAuth:
    """A GitHub App installation: a JWT traded for an installation token, cached."""

    def __init__(
        self,
        app_id: str,
        private_key_pem: str,
        installation_id: int,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app_id = app_id
        self.installation_id = installation_id
        self._key = private_key_pem
        self._clock = clock
        self._token: str | None = None
        self._expires = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def authorization(self, http: httpx.Client, api: str) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expires - timedelta(seconds=60):
                self._token, self._expires = self._installation_token(http, api, now)
            return f"Bearer {self._token}"

    def _installation_token(
        self, http: httpx.Client, api: str, now: datetime
    ) -> tuple[str, datetime]:
        url = f"{api}/app/installations/{self.installation_id}/access_tokens"
        headers = _headers(f"Bearer {app_jwt(self.app_id, self._key, now)}")
        body = send(http, "POST", url, headers=headers).json()
        token, expires = body.get("token"), body.get("expires_at")
        if not isinstance(token, str) or not isinstance(expires, str):
            raise HostError(f"POST {url}: no token in the answer", retryable=False)
        return token, datetime.fromisoformat(expires.replace("Z", "+00:00"))


def _headers(authorization: str) -> dict[str, str]:
    return {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "flowloom",
        "Authorization": authorization,
    }


def _repo(full_name: str) -> str:
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name:
        raise HostError(f"not an owner/name repository: {full_name!r}", retryable=False)
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"


class GitHubApi:
    """The calls FlowLoom makes; each raises HostError (retryable or not) on failure."""

    def __init__(self, http: httpx.Client, auth: GitHubAuth, *, api: str) -> None:
        self._http = http
        self._auth = auth
        self.api = api.rstrip("/")

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        headers = _headers(self._auth.authorization(self._http, self.api))
        url = self.api + path
        return send(self._http, method, url, headers=headers, json=json, params=params, allow=allow)

    def repository(self, repo: str) -> dict[str, Any]:
        """``GET /repos/{owner}/{repo}``: a cheap call that proves the credentials."""
        result: dict[str, Any] = self._call("GET", f"/repos/{_repo(repo)}").json()
        return result

    def upsert_check_run(self, repo: str, head_sha: str, run: dict[str, Any]) -> dict[str, Any]:
        """One check run named ``run["name"]`` per head: found and PATCHed, else POSTed."""
        path = f"/repos/{_repo(repo)}/commits/{quote(head_sha, safe='')}/check-runs"
        found = self._call("GET", path, params={"check_name": run["name"]}).json()
        runs = found.get("check_runs") or []
        if runs and run.get("status") != "completed" and runs[0].get("status") == "completed":
            return dict(runs[0])  # a verdict is there already: "waiting" must not replace it
        if runs:
            run_id = int(runs[0]["id"])
            patch = {k: v for k, v in run.items() if k != "head_sha"}
            answer = self._call("PATCH", f"/repos/{_repo(repo)}/check-runs/{run_id}", json=patch)
        else:
            body = {**run, "head_sha": head_sha}
            answer = self._call("POST", f"/repos/{_repo(repo)}/check-runs", json=body)
        result: dict[str, Any] = answer.json()
        return result

    def upsert_comment(self, repo: str, number: int, body: str) -> dict[str, Any]:
        """The pull request's comment holding COMMENT_MARKER, edited; posted when absent."""
        base = f"/repos/{_repo(repo)}/issues"
        for page in range(1, _PAGES + 1):
            comments = self._call(
                "GET", f"{base}/{number}/comments", params={"per_page": 100, "page": page}
            ).json()
            for comment in comments:
                if COMMENT_MARKER in (comment.get("body") or ""):
                    if comment.get("body") == body:
                        return dict(comment)
                    answer = self._call(
                        "PATCH", f"{base}/comments/{int(comment['id'])}", json={"body": body}
                    )
                    return dict(answer.json())
            if len(comments) < 100:
                break
        return dict(self._call("POST", f"{base}/{number}/comments", json={"body": body}).json())

    def create_status(self, repo: str, sha: str, status: dict[str, Any]) -> dict[str, Any]:
        """``POST /repos/{owner}/{repo}/statuses/{sha}``."""
        path = f"/repos/{_repo(repo)}/statuses/{quote(sha, safe='')}"
        return dict(self._call("POST", path, json=status).json())

    def branch_protection(self, repo: str, branch: str) -> dict[str, Any] | None:
        """The branch's protection settings; None when the branch is not protected (404)."""
        path = f"/repos/{_repo(repo)}/branches/{quote(branch, safe='')}/protection"
        answer = self._call("GET", path, allow=(404,))
        return None if answer.status_code == 404 else dict(answer.json())
