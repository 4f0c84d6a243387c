"""One request to a code host's API, with its failure sorted into retry-later or give-up.

A code host that is down, overloaded or rate-limiting (connection errors, 5xx, 429, a
403 that says the rate limit is spent) is retried by the delivery queue; any other 4xx
means the request itself is wrong (bad token, no such repository) and retrying cannot
help, so the item is set aside as dead with the host's message.
"""

from __future__ import annotations

from typing import Any

import httpx

from flowloom.errors import RemoteError

__all__ = ["HostError", "send"]


class HostError(RemoteError):
    """A code host's API refused or failed a request."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json: Any = None,
    params: dict[str, Any] | None = None,
    allow: tuple[int, ...] = (),
) -> httpx.Response:
    """`method url`; raises HostError unless the answer is 2xx or one of `allow`."""
    try:
        response = http.request(method, url, headers=headers, json=json, params=params)
    except httpx.HTTPError as exc:
        raise HostError(f"{method} {url}: {type(exc).__name__}: {exc}", retryable=True) from exc
    status = response.status_code
    if 200 <= status < 300 or status in allow:
        return response
    detail = response.text[:300]
    limited = status == 403 and response.headers.get("x-ratelimit-remaining") == "0"
    retryable = status >= 500 or status in (408, 429) or limited
    raise HostError(f"{method} {url}: HTTP {status}: {detail}", retryable=retryable, status=status)
