"""The server's edge: what holds for every request and response, whatever the route.

- Proxy headers: X-Forwarded-For / X-Forwarded-Proto are believed only from the networks
  in `trusted_proxies` (uvicorn's ProxyHeadersMiddleware, given those networks); by
  default they are ignored, so a client cannot choose the address the sign-in throttle
  counts and the audit records. `flowloom serve` turns uvicorn's own handling off.
- Security headers on every response, errors and the 500 page included: a
  Content-Security-Policy without inline script (pages load /ui/static/web.js), no
  framing (`frame-ancestors 'none'`, X-Frame-Options), nosniff, no Referer, and HSTS when
  the public URL is https. A response that sets its own policy (the /docs page) keeps it.
- Redirects: an absolute redirect to this server (Starlette's trailing-slash redirect
  builds one from the Host header) is rebuilt from the public URL, so a forged Host
  cannot send a browser elsewhere and an https public URL gets https.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from flowloom.server.settings import ServerSettings

__all__ = [
    "DEFAULT_CSP",
    "PublicRedirects",
    "SecurityHeaders",
    "docs_page",
    "edge",
    "oauth2_redirect_page",
]

DEFAULT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Every page's policy: scripts and styles only from files this server serves."""

_DOCS_CDN = "https://cdn.jsdelivr.net"
_DOCS_FAVICON = "https://fastapi.tiangolo.com"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_HSTS = "max-age=31536000"


def edge(app: ASGIApp, settings: ServerSettings) -> ASGIApp:
    """`app` behind the edge: proxy headers (when trusted), redirects, security headers."""
    wrapped: ASGIApp = PublicRedirects(app, public_url=settings.public_url)
    if settings.trusted_proxies:
        # uvicorn types its middleware with its own (equivalent) ASGI types.
        proxies = ProxyHeadersMiddleware(cast(Any, wrapped), list(settings.trusted_proxies))
        wrapped = cast(ASGIApp, proxies)
    return SecurityHeaders(wrapped, hsts=settings.https)


class SecurityHeaders:
    """Add the security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        headers = {
            b"content-security-policy": DEFAULT_CSP.encode(),
            b"x-frame-options": b"DENY",
            b"x-content-type-options": b"nosniff",
            b"referrer-policy": b"no-referrer",
        }
        if hsts:
            headers[b"strict-transport-security"] = _HSTS.encode()
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers.items() if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class PublicRedirects:
    """Rebuild absolute redirects to this server from the public URL, not the Host header.

    Relative redirects (``Location: /ui``) are left alone: the browser resolves them
    against the address it used. Redirects elsewhere (an identity provider) too.
    """

    def __init__(self, app: ASGIApp, *, public_url: str) -> None:
        self.app = app
        self.public = urlsplit(public_url.rstrip("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def rebuilt(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message["headers"] = [
                    (name, self._location(scope, value) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, rebuilt)

    def _location(self, scope: Scope, value: bytes) -> bytes:
        target = urlsplit(value.decode("latin-1"))
        if not target.netloc:
            return value
        here = URL(scope=scope)  # what Starlette builds absolute URLs from
        if (target.scheme, target.netloc.lower()) != (here.scheme, here.netloc.lower()):
            return value
        path = self.public.path + target.path
        rebuilt = (self.public.scheme, self.public.netloc, path, target.query, target.fragment)
        return urlunsplit(rebuilt).encode("latin-1")


def _script_hashes(page: HTMLResponse) -> str:
    """The CSP sources that allow exactly the inline scripts of `page`."""
    body = bytes(page.body).decode("utf-8")
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(body)
    )


def docs_page(openapi_url: str, title: str, oauth2_redirect_url: str) -> HTMLResponse:
    """FastAPI's Swagger UI page with a policy of its own that allows exactly what it
    loads: the bundle and stylesheet from their CDN, its one inline script (by hash),
    the OpenAPI document and "try it out" calls to this server."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url, title=title, oauth2_redirect_url=oauth2_redirect_url
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {_DOCS_CDN} {_script_hashes(page)}; "
        f"style-src {_DOCS_CDN} 'unsafe-inline'; img-src 'self' data: {_DOCS_FAVICON}; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return page


def oauth2_redirect_page() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page, its inline script allowed by hash."""
    page = get_swagger_ui_oauth2_redirect_html()
    page.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {_script_hashes(page)}; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return page
