"""The web pages over real HTTP on loopback, without a browser: sign-in, role-awareness
(an auditor sees no approve button and is refused 403 when posting anyway), CSRF on
every form, readable HTML without JavaScript, and basic accessibility checks."""

from __future__ import annotations

import io
import re
import zipfile
from html.parser import HTMLParser

import httpx
import pytest

from flowloom.ledger.event import Event
from tests.server.support import World
from tests.web.support import FILE, PASSWORD, Populated, csrf_of, sign_in

P = "/ui/projects/alpha"


def _pages(made: Populated) -> list[str]:
    return [
        "/ui",
        P,
        P + "/timeline",
        P + "/timeline?kind=agent.prompt",
        P + f"/entries/{made.prompt}",
        P + "/decisions",
        P + f"/decisions/{made.decision}",
        P + f"/why?path={FILE}",
        P + "/ledger",
        P + "/compliance",
        P + "/compliance/part11",
        P + "/compliance/verify",
        P + "/usage",
        P + "/members",
        P + "/webhooks",
        "/ui/keys",
    ]


class _Audit(HTMLParser):
    """Collects what the accessibility checks need from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.labels: set[str] = set()
        self.inputs: list[tuple[str, str | None]] = []
        self.forms: list[dict[str, str | None]] = []
        self.form_fields: list[set[str]] = []
        self.landmarks: set[str] = set()
        self.lang: str | None = None
        self.images_without_name = 0
        self.h1 = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "html":
            self.lang = a.get("lang")
        if tag in ("main", "nav", "header", "footer"):
            self.landmarks.add(tag)
        if tag == "h1":
            self.h1 += 1
        if tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.inputs.append((tag, a.get("id")))
        if tag == "form":
            self.forms.append(a)
            self.form_fields.append(set())
        if tag == "input" and self.form_fields and a.get("name"):
            self.form_fields[-1].add(str(a["name"]))
        if tag == "svg" and a.get("role") == "img" and not a.get("aria-labelledby"):
            self.images_without_name += 1


def _audit(page: str) -> _Audit:
    parser = _Audit()
    parser.feed(page)
    return parser


def test_every_page_is_readable_accessible_and_protects_its_forms(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    _, made = web_world
    with httpx.Client(base_url=web_url) as client:
        assert sign_in(client, "owner@example.org").status_code == 200
        for path in _pages(made):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            assert response.headers["content-type"].startswith("text/html")
            page = response.text
            audit = _audit(page)
            assert audit.lang == "en", path
            assert {"main", "nav", "header"} <= audit.landmarks, path
            assert audit.h1 == 1, path
            unlabelled = [i for i in audit.inputs if i[1] is None or i[1] not in audit.labels]
            assert not unlabelled, (path, unlabelled)
            assert audit.images_without_name == 0, path
            for form, fields in zip(audit.forms, audit.form_fields, strict=True):
                if (form.get("method") or "get").lower() == "post":
                    assert "csrf_token" in fields, (path, form)
            # Readable without JavaScript: the content is in the HTML, not fetched later.
            text = re.sub(r"<[^>]+>", " ", page)
            assert len(text.split()) > 20, path


def test_pages_show_the_record(web_world: tuple[World, Populated], web_url: str) -> None:
    _, made = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "auditor@example.org")
        overview = client.get(P).text
        assert "Linked commits" in overview and "50%" in overview  # 1 of 2 commits linked
        assert "<svg" in overview and "<rect" in overview
        decision = client.get(P + f"/decisions/{made.decision}").text
        assert "Please add a token bucket" in decision  # the prompt's body
        assert "I added a token bucket" in decision  # the reply's body
        assert "a" * 12 in decision  # the linked commit
        assert "verified" in decision  # proof status
        why = client.get(P + f"/why?path={FILE}").text
        assert "REFILL_PER_SECOND = 1" in why and "CAPACITY = 20" in why
        assert "CAPACITY = 10" not in why.split("Recorded writes")[0]  # replaced line gone
        assert made.decision in why
        usage = client.get(P + "/usage").text
        assert "$1.08" in usage and "claude-sonnet" in usage and "vk-beta" in usage
        timeline = client.get(P + "/timeline", params={"kind": "gateway.exchange"}).text
        assert timeline.count("<code>gateway.exchange</code>") == 3
        searched = client.get(P + "/timeline", params={"q": "override"}).text
        assert "hotfix" in searched and "agent.prompt</code>" not in searched
        memory = client.get(P + "/timeline", params={"q": "token bucket", "fulltext": "1"}).text
        assert made.decision in memory


def test_timeline_pages_by_index_ranges(web_world: tuple[World, Populated], web_url: str) -> None:
    world, _ = web_world
    ledger = world.server.ledger("alpha")
    for n in range(120):
        ledger.record("agent.tool", meta={"session": "s-9", "refs": {"n": n}})
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "auditor@example.org")
        first = client.get(P + "/timeline").text
        older = re.search(r'href="(/ui/projects/alpha/timeline\?[^"]*before=(\d+)[^"]*)"', first)
        assert older is not None
        second = client.get(older.group(1).replace("&amp;", "&")).text
        shown_first = set(re.findall(r"/entries/(\d+)\"", first))
        shown_second = set(re.findall(r"/entries/(\d+)\"", second))
        assert len(shown_first) == 50 and shown_second and not shown_first & shown_second
        assert max(map(int, shown_second)) < min(map(int, shown_first))


def test_auditor_sees_no_approve_button_and_is_refused(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    _, made = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "auditor@example.org")
        page = client.get(P + f"/decisions/{made.decision}")
        assert page.status_code == 200
        assert "Sign and approve" not in page.text and 'type="password"' not in page.text
        refused = client.post(
            P + f"/decisions/{made.decision}/approve",
            data={"csrf_token": csrf_of(page.text), "meaning": "approved", "password": PASSWORD},
        )
        assert refused.status_code == 403
        assert "lacks permission decision.approve" in refused.text
        members = client.get(P + "/members").text
        assert "Grant a role" not in members
        assert (
            client.post(
                P + "/members",
                data={
                    "csrf_token": csrf_of(page.text),
                    "email": "x@example.org",
                    "role": "auditor",
                },
            ).status_code
            == 403
        )


def test_approval_needs_reauthentication_and_records_a_signature(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    world, made = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "approver@example.org")
        page = client.get(P + f"/decisions/{made.decision}").text
        assert "Approver Person" in page and "I approve this content." in page
        assert 'name="email"' in page  # first signing in the session needs the email
        url = P + f"/decisions/{made.decision}/approve"
        wrong = client.post(
            url,
            data={
                "csrf_token": csrf_of(page),
                "meaning": "approved",
                "password": "wrong",
                "email": "approver@example.org",
            },
        )
        assert wrong.status_code == 401 and 'role="alert"' in wrong.text
        done = client.post(
            url,
            data={
                "csrf_token": csrf_of(page),
                "meaning": "approved",
                "password": PASSWORD,
                "email": "approver@example.org",
            },
            follow_redirects=True,
        )
        assert done.status_code == 200 and "Signed: your signature is ledger entry" in done.text
        assert "accepted" in done.text and "verifies" in done.text
    decision = world.server.ledger("alpha")
    kinds = [e.kind for e in decision.store.entries("alpha")]
    assert "signature.apply" in kinds and "decision.approve" in kinds


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_forms_without_the_session_csrf_token_are_refused(
    web_world: tuple[World, Populated], web_url: str, csrf: str | None
) -> None:
    _, made = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "owner@example.org")
        data = {} if csrf is None else {"csrf_token": csrf}
        for path, fields in (
            (
                P + f"/decisions/{made.decision}/approve",
                {"meaning": "approved", "password": PASSWORD},
            ),
            (P + "/members", {"email": "auditor@example.org", "role": "approver"}),
            ("/ui/keys", {"name": "k"}),
            ("/ui/logout", {}),
            (P + "/ledger/verify-receipt", {"text": "x"}),
        ):
            response = client.post(path, data={**data, **fields})
            assert response.status_code == 403, path
            assert "CSRF" in response.text
        assert client.get("/ui").status_code == 200  # still signed in: logout was refused


def test_login_form_has_its_own_csrf_and_sends_unauthenticated_visitors_to_it(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    with httpx.Client(base_url=web_url) as client:
        gate = client.get(P + "/timeline")
        assert gate.status_code == 401 and 'action="/ui/login"' in gate.text
        assert 'name="next" value="/ui/projects/alpha/timeline"' in gate.text
        forged = client.post(
            "/ui/login",
            data={"email": "approver@example.org", "password": PASSWORD, "csrf_token": "made-up"},
        )
        assert forged.status_code == 403
        bad = sign_in(client, "approver@example.org", "not the password")
        assert bad.status_code == 401 and 'role="alert"' in bad.text
        good = client.post(
            "/ui/login",
            data={
                "email": "approver@example.org",
                "password": PASSWORD,
                "csrf_token": csrf_of(client.get("/ui/login").text),
                "next": "//evil.example/",
            },
        )
        assert good.status_code == 303 and good.headers["location"] == "/ui"


def test_signing_in_again_works_with_a_stale_session_cookie(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    world, _ = web_world
    with httpx.Client(base_url=web_url) as client:
        assert sign_in(client, "approver@example.org").status_code == 200
        stale = client.cookies.get("flowloom_session")
        assert stale
        world.server.directory.end_session(stale)  # as after an idle timeout
        assert client.get(P + "/timeline").status_code == 401
        again = sign_in(client, "approver@example.org")
        assert again.status_code == 200 and str(again.url).endswith("/ui")
        assert client.cookies.get("flowloom_session") not in (None, stale)
        assert client.get(P + "/timeline").status_code == 200
        # signed in, the form still works (its own double-submit token, no session CSRF)
        assert sign_in(client, "approver@example.org").status_code == 200


def test_keys_show_the_secret_once_and_revoke(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    world, _ = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "developer@example.org")
        page = client.get("/ui/keys").text
        created = client.post("/ui/keys", data={"csrf_token": csrf_of(page), "name": "ci"})
        assert created.status_code == 201 and "no-store" in created.headers["cache-control"]
        secret = re.search(r'value="(flk_[^"]+)"', created.text)
        assert secret is not None
        assert (
            httpx.get(
                web_url + "/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}
            ).status_code
            == 200
        )
        listing = client.get("/ui/keys").text
        assert secret.group(1) not in listing
        keys = world.server.directory.list_keys(world.user_ids["developer"])
        key_id = next(k.id for k in keys if k.name == "ci")
        assert f'action="/ui/keys/{key_id}/revoke"' in listing
        done = client.post(f"/ui/keys/{key_id}/revoke", data={"csrf_token": csrf_of(listing)})
        assert done.status_code == 303 and done.headers["location"] == "/ui/keys"
        assert (
            httpx.get(
                web_url + "/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}
            ).status_code
            == 401
        )


def test_ledger_page_verifies_an_uploaded_receipt(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    _, made = web_world
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "auditor@example.org")
        page = client.get(P + "/ledger").text
        receipt = client.get(P + "/ledger/receipt", params={"index": made.prompt})
        assert receipt.status_code == 200 and "attachment" in receipt.headers["content-disposition"]
        ok = client.post(
            P + "/ledger/verify-receipt",
            data={"csrf_token": csrf_of(page)},
            files={"receipt": ("r.receipt", receipt.content, "text/plain")},
        )
        assert ok.status_code == 200 and "The receipt verifies" in ok.text
        tampered = receipt.text.replace(f"index {made.prompt}", f"index {made.prompt + 1}")
        bad = client.post(
            P + "/ledger/verify-receipt", data={"csrf_token": csrf_of(page), "text": tampered}
        )
        assert "does not verify" in bad.text
        full = client.get(P + "/ledger/verify").text
        assert "verified" in full


def test_report_download_and_openapi_stays_api_only(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    with httpx.Client(base_url=web_url) as client:
        sign_in(client, "auditor@example.org")
        report = client.get(P + "/compliance/part11/report", params={"format": "json"})
        assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
        assert report.json()["framework"] == "part11"
        # a download from the web is an export like any other: recorded, with its digest
        store = web_world[0].server.store
        [stored] = list(store.entries("alpha", kind="export.generate"))
        assert report.headers["x-flowloom-export-entry"] == str(stored.index)
        export = Event.parse(stored.envelope).to_json()
        assert export["refs"]["via"] == "web"
        assert export["refs"]["sha256"] == report.headers["x-flowloom-sha256"]
        assert export["actor"]["id"] == web_world[0].user_ids["auditor"]
        paths = httpx.get(web_url + "/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/ui") or p == "/"]


def test_a_report_pack_verifies_on_the_web(
    web_world: tuple[World, Populated], web_url: str
) -> None:
    with httpx.Client(base_url=web_url, timeout=120) as client:
        sign_in(client, "auditor@example.org")
        pack = client.get(P + "/compliance/part11/report", params={"format": "zip"})
        assert pack.status_code == 200, pack.text
        page = client.get(P + "/compliance/verify")
        assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
        ok = client.post(
            P + "/compliance/verify",
            data={"csrf_token": csrf_of(page.text)},
            files={"file": ("pack.zip", pack.content, "application/zip")},
        )
        assert ok.status_code == 200, ok.text
        assert "re-performed without difference" in ok.text
        source, target = io.BytesIO(pack.content), io.BytesIO()
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "report.json":
                    data = data.replace(b'"pass"', b'"flag"')
                dst.writestr(info, data)
        forged = target.getvalue()
        bad = client.post(
            P + "/compliance/verify",
            data={"csrf_token": csrf_of(page.text)},
            files={"file": ("pack.zip", forged, "application/zip")},
        )
        assert bad.status_code == 200 and "does not verify" in bad.text
