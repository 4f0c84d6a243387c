"""Bitbucket Cloud's API 2.0: a build status on a commit.

``POST /2.0/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build`` with a
``key`` that names the status, so a later verdict for the same commit replaces the
earlier one. Calls carry a repository, project or workspace access token as a Bearer
token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from flowloom.integrations.http import HostError, send

__all__ = ["BitbucketApi"]


class BitbucketApi:
    """The calls FlowLoom makes; each raises HostError (retryable or not) on failure."""

    def __init__(self, http: httpx.Client, token: str, *, api: str) -> None:
        self._http = http
        self._token = token
        self.api = api.rstrip("/")

    def _call(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": "flowloom"}
        return send(self._http, method, self.api + path, headers=headers, json=json)

    @staticmethod
    def _repo(full_name: str) -> str:
        workspace, _, slug = full_name.partition("/")
        if not workspace or not slug or "/" in slug:
            raise HostError(f"not a workspace/repo_slug: {full_name!r}", retryable=False)
        return f"{quote(workspace, safe='')}/{quote(slug, safe='')}"

    def repository(self, repo: str) -> dict[str, Any]:
        """``GET /2.0/repositories/{workspace}/{repo_slug}``: proves the token."""
        return dict(self._call("GET", f"/2.0/repositories/{self._repo(repo)}").json())

    def create_build_status(self, repo: str, sha: str, status: dict[str, Any]) -> dict[str, Any]:
        path = f"/2.0/repositories/{self._repo(repo)}/commit/{quote(sha, safe='')}/statuses/build"
        return dict(self._call("POST", path, json=status).json())
