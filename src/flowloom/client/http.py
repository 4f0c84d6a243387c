"""The HTTP connection to a FlowLoom server: JSON and text over urllib, errors by cause.

Standard library only, because the hook drainer imports it. Every failure becomes one
FlowLoom error that says what happened and what to do: the server cannot be reached
(`ServerUnreachableError`, retry later), refused the key (`AuthError`, 401), refused the
action (`PermissionDeniedError`, 403), does not know the project or record
(`NotFoundError`, 404), refused the request itself (`ServerRejectedError`, 400/409/413/
422), or failed (`ServerFailedError`, 5xx and 429). The API key is sent in a header and
appears in no message, log line or repr.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

from flowloom.errors import (
    AuthError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "HttpClient",
    "ServerFailedError",
    "ServerRejectedError",
    "ServerUnreachableError",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_TIMEOUT_S = 15.0
_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_USER_AGENT = "flowloom-client/1"


class ServerUnreachableError(RemoteError):
    """The server did not answer (refused, timed out, no route); worth retrying later."""


class ServerFailedError(RemoteError):
    """The server answered with a failure of its own (5xx, 429); worth retrying later."""


class ServerRejectedError(InputError):
    """The server refused the request itself (400, 409, 413, 422): retrying will not help."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def _server_message(body: bytes) -> tuple[str | None, str | None]:
    """The `{"error": {"message", "hint"}}` of an error response, when it has one."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        detail = data.get("detail") if isinstance(data, dict) else None
        return (str(detail)[:500] if detail else None), None
    message = error.get("message")
    hint = error.get("hint")
    return (
        str(message)[:500] if message else None,
        str(hint)[:300] if hint else None,
    )


class HttpClient:
    """Requests to one server with one API key; `base_url` is the server's root URL."""

    __slots__ = ("_api_key", "_opener", "base_url", "timeout")

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        return f"HttpClient({self.base_url!r})"

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self.base_url}{path}{query}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        accept: str = "application/json",
    ) -> bytes:
        """Send one request; the response body on 2xx, else the error for its status."""
        headers = {"Accept": accept, "User-Agent": _USER_AGENT}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
            headers["Content-Type"] = "application/json"
        url = self.url(path, params)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                content: bytes = response.read(_MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, exc.read(64 * 1024), method, path) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachableError(
                f"cannot reach the FlowLoom server at {self.base_url}: {reason}",
                hint="events stay in the local outbox; 'flowloom sync' sends them later",
            ) from None
        if len(content) > _MAX_RESPONSE_BYTES:
            raise RemoteError(f"the server's answer to {method} {path} is too large")
        return content

    def _error(self, status: int, body: bytes, method: str, path: str) -> Exception:
        message, hint = _server_message(body)
        what = f"{method} {path}"
        if status == 401:
            return AuthError(
                f"the server at {self.base_url} refused the API key (401)"
                + (f": {message}" if message else ""),
                hint=hint
                or "check FLOWLOOM_API_KEY or [server] api_key_file; a revoked or expired "
                "key needs a new one ('flowloom keys' on the server)",
            )
        if status == 403:
            return PermissionDeniedError(
                f"the server refused {what} (403)" + (f": {message}" if message else ""),
                hint=hint or "ask a project admin for a role that allows it",
            )
        if status == 404:
            return NotFoundError(
                f"the server has no {path} (404)" + (f": {message}" if message else ""),
                hint=hint or "check the server URL and the project name",
            )
        if status in (400, 409, 413, 422):
            return ServerRejectedError(
                f"the server refused {what} ({status})" + (f": {message}" if message else ""),
                status=status,
                hint=hint,
            )
        if status == 429 or status >= 500:
            return ServerFailedError(
                f"the server failed {what} ({status})" + (f": {message}" if message else ""),
                hint=hint or "events stay in the local outbox; 'flowloom sync' sends them later",
            )
        return RemoteError(
            f"unexpected answer {status} to {what}" + (f": {message}" if message else "")
        )

    def get_text(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        content = self.request("GET", path, params=params, accept="text/plain")
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteError(f"the server's answer to GET {path} is not UTF-8 text") from None

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._json(self.request("GET", path, params=params), "GET", path)

    def post_json(self, path: str, body: Any) -> Any:
        return self._json(self.request("POST", path, body=body), "POST", path)

    @staticmethod
    def _json(content: bytes, method: str, path: str) -> Any:
        try:
            return json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RemoteError(f"the server's answer to {method} {path} is not JSON") from None
