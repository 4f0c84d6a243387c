"""Sign-in hardening over real HTTP on loopback: the throttle counts an attempt before its
password is hashed (40 parallel attempts evaluate no more than the limit), answers 429 with
Retry-After, locks no one out from another address, and believes X-Forwarded-For only
from configured proxies; every response carries the security headers; redirects are built
from the public URL; out-of-range dates are a 400."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowloom.auth.directory import Directory
from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.errors import ConfigError
from flowloom.ledger.event import Event
from flowloom.server.app import create_app
from flowloom.server.settings import ServerSettings, load_server_settings
from flowloom.services import open_store
from tests.server.support import (
    ROOT,
    World,
    free_port,
    live_server,
    make_world,
    serve_process,
    stop,
    wait_ready,
)
from tests.support.gated_hasher import GatedHasher
from tests.web.support import populate

PASSWORD = "correct horse battery staple"
EMAIL = "approver@example.org"
ATTEMPTS = 40
LOGIN = "/api/v1/auth/login"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A populated server over SQLite, then over PostgreSQL."""
    url = (
        str(tmp_path / "server.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    world = make_world(url, tmp_path / "home")
    yield world
    world.close()


def _gate(world: World) -> GatedHasher:
    """Give the server a Directory whose password checks are counted and held."""
    hasher = GatedHasher()
    shared = world.server.directory
    world.server.directory = Directory(
        shared.engine, audit=world.server.ledgers.audit, password_hasher=hasher
    )
    world.server.directory.set_password(world.user_ids["approver"], PASSWORD)
    return hasher


def _login_failures(world: World) -> list[dict[str, Any]]:
    ledger = world.server.ledger(INSTANCE_PROJECT)
    entries = ledger.store.entries(ledger.log, kind="auth.login_failed")
    return [dict(Event.parse(e.envelope).refs or {}) for e in entries]


def _in_parallel(attempt: Callable[[int], httpx.Response], gate: GatedHasher) -> list[Any]:
    """Start ATTEMPTS attempts at once; return (answers, threads) once each is answered
    or held in the password check."""
    answers: list[httpx.Response] = []
    start = threading.Barrier(ATTEMPTS)

    def run(i: int) -> None:
        start.wait(timeout=60)
        answers.append(attempt(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    gate.settle(lambda: len(answers), ATTEMPTS)
    return [answers, threads]


def _throttled(answer: httpx.Response) -> bool:
    retry = answer.headers.get("Retry-After", "")
    return answer.status_code == 429 and retry.isdigit() and int(retry) >= 1


def _check_parallel_attempts(
    world: World, gate: GatedHasher, send: Callable[[str], httpx.Response], refused: int
) -> None:
    """40 wrong passwords at once, then the right one while they are evaluated."""
    limit = world.server.directory.throttle_policy.max_failures
    answers, threads = _in_parallel(lambda i: send(f"wrong password number {i}"), gate)
    try:
        # At most `limit` attempts reached the hash; every other one was already refused.
        assert gate.evaluated == limit
        right = send(PASSWORD)  # among the wrong ones still being evaluated
        assert _throttled(right), right.text
    finally:
        gate.release.set()
        for thread in threads:
            thread.join(timeout=120)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [refused] * limit + [429] * (ATTEMPTS - limit)
    assert all(_throttled(a) for a in answers if a.status_code == 429)
    # During the backoff the right password stays out, and is not even evaluated.
    again = send(PASSWORD)
    assert _throttled(again)
    assert gate.evaluated == limit
    reasons = [r["reason"] for r in _login_failures(world)]
    assert reasons.count("bad_credentials") == limit
    assert reasons.count("throttled") == ATTEMPTS - limit + 2


def test_parallel_api_sign_in_evaluates_at_most_the_limit(any_world: World) -> None:
    world = any_world
    gate = _gate(world)
    with live_server(world.server) as base:

        def send(password: str) -> httpx.Response:
            body = {"email": EMAIL, "password": password}
            return httpx.post(base + LOGIN, json=body, timeout=120)

        _check_parallel_attempts(world, gate, send, refused=401)
        answer = send(PASSWORD)
        assert answer.json()["error"]["code"] == "too_many_requests"
        assert "try again after" in answer.json()["error"]["hint"]
        # Failing on purpose from one address locks no one out: from another, the
        # approver signs in at once.
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=base, transport=elsewhere, timeout=60) as other:
            assert other.post(LOGIN, json={"email": EMAIL, "password": PASSWORD}).is_success
    clients = {r["client"] for r in _login_failures(world)}
    assert clients == {"127.0.0.1"}


def test_parallel_web_sign_in_evaluates_at_most_the_limit(any_world: World) -> None:
    world = any_world
    gate = _gate(world)
    with live_server(world.server) as base:
        form = httpx.get(base + "/ui/login", timeout=60)
        found = _CSRF_FIELD.search(form.text)
        assert found is not None
        token = found.group(1)
        cookie = {"Cookie": f"flowloom_login_csrf={form.cookies['flowloom_login_csrf']}"}

        def send(password: str) -> httpx.Response:
            fields = {"email": EMAIL, "password": password, "csrf_token": token}
            return httpx.post(base + "/ui/login", data=fields, headers=cookie, timeout=120)

        _check_parallel_attempts(world, gate, send, refused=401)
        page = send(PASSWORD)
        assert page.status_code == 429 and "too many failed sign-in attempts" in page.text
        assert 'name="password"' in page.text  # the form again, to retry later


def test_an_approver_cannot_be_kept_from_signing(any_world: World) -> None:
    """The e-signature's re-authentication shares the throttle: failures from one address
    make that address wait (429), and the approver signs from their own at once."""
    world = any_world
    made = populate(world)
    approve = f"/api/v1/projects/alpha/decisions/{made.decision}/approve"
    key = world.headers("approver")
    with live_server(world.server) as base:
        with httpx.Client(base_url=base, headers=key, timeout=60) as attacker:
            for i in range(world.server.directory.throttle_policy.max_failures):
                wrong = {"email": EMAIL, "password": f"wrong password {i}"}
                assert attacker.post(approve, json=wrong).status_code == 401
            waiting = attacker.post(approve, json={"email": EMAIL, "password": PASSWORD})
            assert _throttled(waiting), waiting.text
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=base, headers=key, transport=elsewhere, timeout=60) as own:
            signed = own.post(approve, json={"email": EMAIL, "password": PASSWORD})
            assert signed.status_code == 201, signed.text


# -- proxies ------------------------------------------------------------------------------


def _process_world(tmp_path: Path) -> tuple[str, Path]:
    database = str(tmp_path / "server.db")
    home = tmp_path / "home"
    world = make_world(database, home)
    world.server.directory.set_password(world.user_ids["approver"], PASSWORD)
    world.close()
    return database, home


def _process_failures(database: str) -> list[dict[str, Any]]:
    store = open_store(database)
    try:
        entries = store.entries(INSTANCE_PROJECT, kind="auth.login_failed")
        return [dict(Event.parse(e.envelope).refs or {}) for e in entries]
    finally:
        store.close()


def _sign_in(base: str, password: str, forwarded_for: str) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}
    body = {"email": EMAIL, "password": password}
    return httpx.post(base + LOGIN, json=body, headers=headers, timeout=60)


def test_forwarded_for_from_loopback_is_ignored_by_default(tmp_path: Path) -> None:
    database, home = _process_world(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve_process(database, home, port)
    try:
        wait_ready(base, process)
        for i in range(5):  # each "from" another made-up address
            assert _sign_in(base, f"wrong password {i}", f"203.0.113.{i}").status_code == 401
        # The spoofed header does not make a fresh address: still throttled.
        assert _throttled(_sign_in(base, PASSWORD, "198.51.100.7"))
    finally:
        stop(process)
    failures = _process_failures(database)
    assert len(failures) == 6
    assert {f["client"] for f in failures} == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path: Path) -> None:
    database, home = _process_world(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve_process(
        database, home, port, extra=("--trusted-proxies", "10.0.0.0/8,127.0.0.1/32")
    )
    try:
        wait_ready(base, process)
        for i in range(5):
            assert _sign_in(base, f"wrong password {i}", "203.0.113.5").status_code == 401
        assert _throttled(_sign_in(base, PASSWORD, "203.0.113.5"))
        # Behind the proxy, another client is another address: not throttled.
        assert _sign_in(base, PASSWORD, "10.20.30.40, 198.51.100.7").is_success
    finally:
        stop(process)
    failures = _process_failures(database)
    assert {f["client"] for f in failures} == {"203.0.113.5"}


def test_trusted_proxies_setting(tmp_path: Path) -> None:
    config = tmp_path / "config" / "flowloom" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[server]\ntrusted_proxies = ["10.0.0.0/8", "192.0.2.7"]\n')
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    settings = load_server_settings(tmp_path, env)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.7/32")
    from_env = load_server_settings(
        tmp_path, {**env, "FLOWLOOM_SERVER_TRUSTED_PROXIES": "fd00::/8, 127.0.0.1"}
    )
    assert from_env.trusted_proxies == ("fd00::/8", "127.0.0.1/32")
    assert settings.with_overrides(trusted_proxies="172.16.0.0/12").trusted_proxies == (
        "172.16.0.0/12",
    )
    assert ServerSettings(database="x.db", home=tmp_path).trusted_proxies == ()
    with pytest.raises(ConfigError, match="is not an IP network"):
        ServerSettings(database="x.db", home=tmp_path, trusted_proxies=("proxy.example",))


# -- security headers -----------------------------------------------------------------------


def _check_headers(answer: httpx.Response, *, hsts: bool) -> None:
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    policy = answer.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in policy, where
    script = re.search(r"script-src([^;]*)", policy)
    assert script is not None and "'unsafe-inline'" not in script.group(1), where
    assert answer.headers.get("X-Frame-Options") == "DENY", where
    assert answer.headers.get("X-Content-Type-Options") == "nosniff", where
    assert answer.headers.get("Referrer-Policy") == "no-referrer", where
    transport = answer.headers.get("Strict-Transport-Security")
    assert (transport == "max-age=31536000") if hsts else transport is None, where


def _app_with_a_bug(world: World) -> FastAPI:
    """The server's app with a small body limit and one route that fails unexpectedly."""
    world.server.settings = replace(world.server.settings, max_request_bytes=1024)
    app = create_app(world.server)

    @app.get("/api/v1/bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    return app


@pytest.mark.parametrize("public_url", ["http://flowloom.test", "https://flowloom.test"])
def test_every_route_family_has_the_security_headers(tmp_path: Path, public_url: str) -> None:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home", public_url=public_url)
    hsts = public_url.startswith("https")
    try:
        with (
            live_server(world.server, _app_with_a_bug(world)) as base,
            httpx.Client(base_url=base, timeout=60) as http,
        ):
            key = world.headers("developer")
            answers = [
                http.get("/ui"),  # the sign-in form (401)
                http.get("/ui/login"),
                http.get("/ui", headers=key),
                http.get("/ui/projects/alpha/timeline", headers=key),
                http.get("/ui/static/web.css"),
                http.get("/ui/static/web.js"),
                http.get("/ui/static/nothing.js"),  # 404
                http.get("/ui/"),  # the slash redirect
                http.get("/"),
                http.get("/api/v1/projects"),  # 401
                http.get("/api/v1/projects", headers=key),
                http.get("/api/v1/projects/beta/ledger/entries", headers=key),  # 403
                http.get("/ui/projects/alpha/timeline?to=9999-12-31", headers=key),  # 400
                http.post(LOGIN, content=b"x" * 2048),  # 413
                httpx.get(base + "/api/v1/bug", timeout=60),  # 500 (uvicorn then hangs up)
                http.get("/openapi.json"),
                http.get("/docs"),
                http.get("/docs/oauth2-redirect"),
                http.get("/healthz"),
                http.get("/metrics"),
                http.get("/nowhere"),  # 404
            ]
        statuses = {a.status_code for a in answers}
        assert {200, 303, 307, 400, 401, 403, 404, 413, 500} <= statuses
        for answer in answers:
            _check_headers(answer, hsts=hsts)
    finally:
        world.close()


def test_the_docs_page_has_a_policy_for_what_it_loads(world: World) -> None:
    with live_server(world.server) as base:
        page = httpx.get(base + "/docs", timeout=30)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src https://cdn.jsdelivr.net 'sha256-" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # Exactly the page's one inline script is allowed, by its hash.
    import base64
    import hashlib

    [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy


def test_templates_have_no_inline_script() -> None:
    templates = ROOT / "src" / "flowloom" / "server" / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), template.name
        assert "javascript:" not in text.lower(), template.name
        assert not re.search(r"\sstyle\s*=", text, re.I), template.name


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("public_url", ["http://flowloom.test", "https://flowloom.test/fl"])
def test_redirects_come_from_the_public_url_not_the_host_header(
    tmp_path: Path, public_url: str
) -> None:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home", public_url=public_url)
    try:
        with live_server(world.server) as base:
            forged = {"Host": "evil.example"}
            slash = httpx.get(base + "/ui/", headers=forged, timeout=30)
            assert slash.status_code == 307
            assert slash.headers["location"] == public_url + "/ui"
            query = httpx.get(base + "/api/v1/projects/?a=1", headers=forged, timeout=30)
            assert query.headers["location"] == public_url + "/api/v1/projects?a=1"
            home = httpx.get(base + "/", headers=forged, timeout=30)
            assert home.status_code == 303 and home.headers["location"] == "/ui"
    finally:
        world.close()


# -- dates ------------------------------------------------------------------------------------


def test_out_of_range_dates_are_a_clear_400(world: World) -> None:
    auditor = world.headers("auditor")
    with live_server(world.server) as base, httpx.Client(base_url=base, timeout=60) as http:
        for start, end in [
            ("2026-01-01", "9999-12-31"),
            ("0001-01-01", "2026-01-01"),
            ("2026-01-01", "9999-12-31T23:59:59-05:00"),
        ]:
            report = http.post(
                "/api/v1/projects/alpha/reports",
                json={"framework": "sox", "from": start, "to": end},
                headers=auditor,
            )
            assert report.status_code == 400, report.text
            assert "out of range" in report.json()["error"]["message"]
        pages = [
            "/ui/projects/alpha/compliance?from=2026-01-01&to=9999-12-31",
            "/ui/projects/alpha/compliance/sox?from=2026-01-01&to=9999-12-31",
            "/ui/projects/alpha/compliance/sox/report?from=2026-01-01&to=9999-12-31&format=csv",
            "/ui/projects/alpha/timeline?to=9999-12-31",
        ]
        for page in pages:
            answer = http.get(page, headers=auditor)
            assert answer.status_code == 400, (page, answer.status_code)
            assert "out of range" in answer.text, page
        key = http.post(
            "/api/v1/keys",
            json={"name": "forever", "expires_at": "9999-12-31T23:59:59-01:00"},
            headers=auditor,
        )
        assert key.status_code == 400 and "before 3000-01-01" in key.json()["error"]["message"]
