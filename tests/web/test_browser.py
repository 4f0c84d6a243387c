"""End to end in real headless Chromium (Playwright driving the system's chromium):
sign in, browse the timeline, open a decision, approve it with re-authentication,
generate and download a report, see a chart and the budgets render. Screenshots are
kept under test-artifacts/web/ (ignored by git) for people to look at.

Chromium is the system's (/usr/bin/chromium, or FLOWLOOM_CHROMIUM); Playwright downloads
no browser. Without it these tests are skipped locally and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api

from tests.conftest import in_ci
from tests.server.support import ROOT, World
from tests.web.support import PASSWORD, Populated, populate_gateway

ARTIFACTS = ROOT / "test-artifacts" / "web"


def _chromium() -> str | None:
    wanted = os.environ.get("FLOWLOOM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return wanted if Path(wanted).exists() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    if executable is None:
        if in_ci():
            pytest.fail(
                "chromium is missing: the web tests need it under CI (apt-get install chromium)"
            )
        pytest.skip("chromium is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    opened = context.new_page()
    yield opened
    opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"), full_page=True)
    context.close()


def _shot(page: object, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 1000
    return path


def _sign_in(page: object, base: str, email: str, target: str = "/ui") -> None:
    page.goto(base + target)  # type: ignore[attr-defined]
    page.get_by_label("Email").fill(email)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]


def test_review_and_approve_a_decision_in_the_browser(
    page: object, web_world: tuple[World, Populated], web_url: str
) -> None:
    world, made = web_world
    expect = sync_api.expect
    p: object = page
    _sign_in(p, web_url, "approver@example.org", "/ui/projects/alpha/timeline")
    expect(p.get_by_role("heading", name="Timeline")).to_be_visible()  # type: ignore[attr-defined]
    _shot(p, "01-timeline")
    p.get_by_label("Kind").select_option("decision.record")  # type: ignore[attr-defined]
    p.get_by_role("button", name="Apply").click()  # type: ignore[attr-defined]
    expect(p.locator("table.events tbody tr")).to_have_count(1)  # type: ignore[attr-defined]
    p.get_by_role("link", name=made.decision).click()  # type: ignore[attr-defined]
    expect(p.get_by_role("heading", level=1)).to_contain_text("Use a token bucket")  # type: ignore[attr-defined]
    expect(p.get_by_text("Please add a token bucket rate limiter")).to_be_visible()  # type: ignore[attr-defined]
    _shot(p, "02-decision")
    # Part 11: the printed name and the exact statement are shown; re-enter credentials.
    expect(p.locator(".printed-name")).to_have_text("Approver Person")  # type: ignore[attr-defined]
    p.get_by_label("Approved — statement").check()  # type: ignore[attr-defined]
    expect(p.get_by_text("I approve this content.")).to_be_visible()  # type: ignore[attr-defined]
    p.get_by_label("Email (needed at your first signature in this session)").fill(
        "approver@example.org"
    )  # type: ignore[attr-defined]
    p.get_by_label("Password (re-enter it to sign)").fill(PASSWORD)  # type: ignore[attr-defined]
    p.get_by_role("button", name="Sign and approve").click()  # type: ignore[attr-defined]
    expect(p.get_by_role("status")).to_contain_text("Signed: your signature is ledger entry")  # type: ignore[attr-defined]
    expect(p.locator("dl.facts .status").first).to_have_text("accepted")  # type: ignore[attr-defined]
    _shot(p, "03-approved")
    decision = world.server.ledger("alpha")
    assert "decision.approve" in {
        e.kind for e in decision.store.entries("alpha", kind="decision.approve")
    }


def test_generate_and_download_a_report_and_see_charts(
    page: object, web_world: tuple[World, Populated], web_url: str, tmp_path: Path
) -> None:
    world, _ = web_world
    gateway = populate_gateway(world)  # budgets and keys, as the gateway keeps them
    expect = sync_api.expect
    p: object = page
    _sign_in(p, web_url, "auditor@example.org", "/ui/projects/alpha/usage")
    chart = p.locator("#cost-by-model svg")  # type: ignore[attr-defined]
    expect(chart).to_be_visible()
    bars = chart.locator("rect")
    expect(bars).to_have_count(3)
    widths = [float(bars.nth(i).get_attribute("width")) for i in range(3)]
    assert max(widths) > 100 and all(w > 0 for w in widths)
    box = bars.first.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 5
    chart.screenshot(path=str(ARTIFACTS / "04-chart.png"))
    # The budgets: spend against each budget as a meter with its share in words.
    budgets = p.locator("table.budgets")  # type: ignore[attr-defined]
    expect(budgets.locator("meter")).to_have_count(3)
    expect(budgets.get_by_text("exhausted")).to_be_visible()
    meter = budgets.get_by_role("meter").nth(1)
    expect(meter).to_have_attribute("value", "0.9000")
    assert (meter.bounding_box() or {"width": 0})["width"] > 50
    expect(p.locator("table.vkeys")).to_contain_text(gateway.ci.prefix)  # type: ignore[attr-defined]
    budgets.screenshot(path=str(ARTIFACTS / "05-budgets.png"))
    _shot(p, "05-usage")
    p.goto(web_url + "/ui/projects/alpha/compliance")  # type: ignore[attr-defined]
    p.get_by_role("link", name="21 CFR Part 11", exact=False).first.click()  # type: ignore[attr-defined]
    expect(p.locator('#controls-by-status svg rect:not([width="0.0"])').first).to_be_visible()  # type: ignore[attr-defined]
    _shot(p, "06-compliance")
    p.get_by_label("Format").select_option("html")  # type: ignore[attr-defined]
    with p.expect_download() as info:  # type: ignore[attr-defined]
        p.get_by_role("button", name="Generate and download").click()  # type: ignore[attr-defined]
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(str(saved))
    assert saved.name.endswith(".html") and "part11" in saved.name
    assert "<html" in saved.read_text(encoding="utf-8").lower()
    # The auditor sees the decision but no way to approve it.
    p.goto(web_url + "/ui/projects/alpha/decisions")  # type: ignore[attr-defined]
    expect(p.get_by_role("button", name="Sign and approve")).to_have_count(0)  # type: ignore[attr-defined]


def test_offboard_a_person_from_the_admin_page(
    page: object, web_world: tuple[World, Populated], web_url: str
) -> None:
    """Disable (accepting the browser's confirmation), then delete after typing the email."""
    world, _ = web_world
    world.server.directory.set_password(world.user_ids["instance_owner"], PASSWORD)
    expect = sync_api.expect
    p: object = page
    p.on("dialog", lambda dialog: dialog.accept())  # type: ignore[attr-defined]
    _sign_in(p, web_url, "root@example.org", "/ui/admin")
    expect(p.get_by_role("heading", name="Administration")).to_be_visible()  # type: ignore[attr-defined]
    p.get_by_role("button", name="Disable Developer Person").click()  # type: ignore[attr-defined]
    expect(p.get_by_role("button", name="Enable Developer Person")).to_be_visible()  # type: ignore[attr-defined]
    assert world.server.directory.get_user(world.user_ids["developer"]).disabled
    p.get_by_role("link", name="Delete Developer Person…").click()  # type: ignore[attr-defined]
    p.get_by_label("Type developer@example.org to confirm").fill("developer@example.org")  # type: ignore[attr-defined]
    _shot(p, "07-delete-user")
    p.get_by_role("button", name="Delete Developer Person").click()  # type: ignore[attr-defined]
    expect(p.get_by_role("heading", name="Administration")).to_be_visible()  # type: ignore[attr-defined]
    expect(p.get_by_text("developer@example.org")).to_have_count(0)  # type: ignore[attr-defined]
    assert world.server.directory.get_user(world.user_ids["developer"]).deleted_at is not None
