"""The Content-Security-Policy in real headless Chromium: the pages and their script work
under it with no violation, another site cannot frame the sign-in or signing forms, and
the /docs page runs its scripts under its own policy.

The Swagger UI bundle normally comes from its CDN; the test serves a small stand-in at the
same address (Playwright routing), so what is checked is the policy, offline.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright import sync_api

from tests.server.support import World
from tests.web.support import PASSWORD, Populated
from tests.web.test_browser import browser  # noqa: F401 (the shared Chromium fixture)

_WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""

_SWAGGER_STAND_IN = """
window.SwaggerUIBundle = function (config) {
  fetch(config.url).then(function (r) { return r.json(); }).then(function (doc) {
    document.getElementById("swagger-ui").textContent = "loaded " + doc.info.title;
  });
};
window.SwaggerUIBundle.presets = { apis: {} };
"""


@pytest.fixture
def watched(browser: Any) -> Iterator[tuple[Any, list[str]]]:  # noqa: F811
    """A page that records CSP violations and console errors."""
    context = browser.new_context()
    context.add_init_script(_WATCH_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page, errors
    context.close()


def _violations(page: Any) -> list[str]:
    found: list[str] = page.evaluate("window.__violations")
    return found


def test_pages_work_under_the_policy(
    watched: tuple[Any, list[str]], web_world: tuple[World, Populated], web_url: str
) -> None:
    page, errors = watched
    _, made = web_world
    expect = sync_api.expect
    page.goto(web_url + "/ui/keys")
    page.get_by_label("Email").fill("approver@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name (what it is for)").fill("laptop")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("[data-select-on-focus]")).to_be_visible()
    # web.js (a file, not inline) runs: revoking asks first, and "cancel" keeps the key.
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.get_by_role("button", name="Revoke").first.click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    assert asked and "Revoke the key" in asked[0]
    for path in (
        "/ui/projects/alpha/timeline",
        f"/ui/projects/alpha/decisions/{made.decision}",
        "/ui/projects/alpha/usage",
        "/ui/projects/alpha/compliance",
    ):
        page.goto(web_url + path)
        expect(page.locator("main")).to_be_visible()
        assert _violations(page) == [], path
    assert not [e for e in errors if "Content Security Policy" in e], errors


@contextlib.contextmanager
def _attacker_site(pages: dict[str, str]) -> Iterator[str]:
    """Another origin on loopback (a plain HTTP server, no policy) serving `pages`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()
        thread.join(timeout=10)


def test_another_site_cannot_frame_the_forms(
    watched: tuple[Any, list[str]], web_world: tuple[World, Populated], web_url: str
) -> None:
    page, _ = watched
    _, made = web_world
    # The attacker's page, on another origin and with no policy of its own, frames a page
    # of its own (which loads: framing works) and one of ours (which the browser refuses).
    pages = {"/own": "<p>the attacker's own page</p>"}
    with _attacker_site(pages) as attacker:
        for target in ("/ui/login", f"/ui/projects/alpha/decisions/{made.decision}"):
            pages["/"] = f'<iframe src="{attacker}/own"></iframe><iframe src="{web_url}{target}">'
            page.goto(attacker + "/", wait_until="load")
            own, ours = page.main_frame.child_frames
            # A refused frame may settle on its error page after the parent's load event
            # (seen on a busy machine): wait for it, generously.
            deadline = time.monotonic() + 60
            while not ours.url and time.monotonic() < deadline:
                page.wait_for_timeout(50)
            assert own.url == attacker + "/own"
            assert ours.url.startswith("chrome-error://"), ours.url  # refused, not rendered


def test_the_docs_page_runs_under_its_own_policy(
    watched: tuple[Any, list[str]], web_url: str
) -> None:
    page, errors = watched
    page.route(
        "https://cdn.jsdelivr.net/**",
        lambda route: route.fulfill(
            content_type="text/css" if route.request.url.endswith(".css") else "text/javascript",
            body="" if route.request.url.endswith(".css") else _SWAGGER_STAND_IN,
        ),
    )
    page.route("https://fastapi.tiangolo.com/**", lambda route: route.abort())
    page.goto(web_url + "/docs")
    # The bundle loaded from its CDN, the inline start-up script ran (allowed by its
    # hash), and it fetched the OpenAPI document from this server.
    sync_api.expect(page.locator("#swagger-ui")).to_have_text("loaded FlowLoom")
    assert _violations(page) == []
    assert not [e for e in errors if "Content Security Policy" in e], errors
