"""GitLab's REST API v4: commit statuses and a merge-request note kept up to date.

Calls carry ``PRIVATE-TOKEN`` (a project, group or personal access token with ``api``
scope). The project is named by its numeric id or its URL-encoded full path
(``group%2Fproject``), as GitLab documents.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from flowloom.integrations.github import COMMENT_MARKER
from flowloom.integrations.http import send

__all__ = ["GitLabApi"]

_PAGES = 20


class GitLabApi:
    """The calls FlowLoom makes; each raises HostError (retryable or not) on failure."""

    def __init__(self, http: httpx.Client, token: str, *, api: str) -> None:
        self._http = http
        self._token = token
        self.api = api.rstrip("/")

    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"PRIVATE-TOKEN": self._token, "User-Agent": "flowloom"}
        return send(self._http, method, self.api + path, headers=headers, json=json, params=params)

    @staticmethod
    def _project(project: str) -> str:
        return quote(project, safe="")

    def project(self, project: str) -> dict[str, Any]:
        """``GET /projects/:id``: proves the token reaches the project."""
        return dict(self._call("GET", f"/projects/{self._project(project)}").json())

    def create_status(self, project: str, sha: str, status: dict[str, Any]) -> dict[str, Any]:
        """``POST /projects/:id/statuses/:sha`` (state, name, description, target_url)."""
        path = f"/projects/{self._project(project)}/statuses/{quote(sha, safe='')}"
        return dict(self._call("POST", path, json=status).json())

    def upsert_note(self, project: str, iid: int, body: str) -> dict[str, Any]:
        """The merge request's note holding COMMENT_MARKER, edited; created when absent."""
        base = f"/projects/{self._project(project)}/merge_requests/{iid}/notes"
        for page in range(1, _PAGES + 1):
            notes = self._call("GET", base, params={"per_page": 100, "page": page}).json()
            for note in notes:
                if COMMENT_MARKER in (note.get("body") or ""):
                    if note.get("body") == body:
                        return dict(note)
                    answer = self._call("PUT", f"{base}/{int(note['id'])}", json={"body": body})
                    return dict(answer.json())
            if len(notes) < 100:
                break
        return dict(self._call("POST", base, json={"body": body}).json())
