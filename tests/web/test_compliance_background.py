"""The compliance dashboard computes its assessments in the background, per checkpoint.

Over real HTTP on a populated server (SQLite): the first visit answers at once with
"computing" and a self-refresh, never a permanent placeholder; the assessments arrive
from the background worker with the same statuses as the framework page; they are cached
by the checkpoint (size and root): appending without a new checkpoint changes nothing,
a new checkpoint is assessed anew.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.server.app import create_app
from flowloom.server.web.background import Background
from flowloom.server.web.state import WebState
from tests.server.support import OWN, World, live_server, make_world
from tests.web.support import populate, sign_in
from tests.web.test_compliance_statuses import PERIOD

P = f"/ui/projects/{OWN}/compliance"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    populate(built)
    built.server.ledger(OWN).checkpoint()
    yield built
    built.close()


def tiles(page: str) -> dict[str, str]:
    """Framework name → the text of its result cell."""
    found = {}
    for name, cell in re.findall(
        r'compliance/([a-z0-9]+)\?from=[^"]*">.*?<td class="num">\d+</td>\s*<td>(.*?)</td>',
        page,
        re.S,
    ):
        found[name] = re.sub(r"<[^>]+>", "", cell)
    return found


def settle(client: httpx.Client) -> str:
    """The dashboard once nothing is computing any more (generously bounded)."""
    deadline = time.monotonic() + 300
    while True:
        page = client.get(P, params=PERIOD)
        assert page.status_code == 200, page.text
        if "computing" not in page.text:
            return page.text
        assert 'http-equiv="refresh"' in page.text
        assert time.monotonic() < deadline, "the background assessments never finished"
        time.sleep(0.5)


def test_the_dashboard_is_computed_in_the_background_and_cached_by_checkpoint(
    world: World,
) -> None:
    app = create_app(world.server)
    with live_server(world.server, app) as base, httpx.Client(base_url=base) as client:
        sign_in(client, "auditor@example.org")
        first = client.get(P, params=PERIOD)
        assert first.status_code == 200
        shown = tiles(first.text)
        assert len(shown) == 9, shown
        assert all("computing" in cell for cell in shown.values()), shown
        assert 'http-equiv="refresh"' in first.text
        assert "not computed yet" not in first.text
        page = settle(client)
        web: WebState = app.state.flowloom_web
        ready = tiles(page)
        assert not any("computing" in c or "could not" in c for c in ready.values()), ready
        assert 'http-equiv="refresh"' not in page
        # The same statuses as the framework page (the same cached assessment).
        sox = client.get(f"{P}/sox", params=PERIOD).text
        cards = dict(re.findall(r'<h2>([A-Za-z ]+)</h2><p class="big">(\d+)</p>', sox))
        numbers = [int(n) for n in re.findall(r"\b(\d+)\b", ready["sox"])]
        assert numbers == [
            int(cards[c]) for c in ("Pass", "Flagged", "Manual", "Not applicable", "Not assessed")
        ]
        # Each finding shows its stable exception id and management's response, if any.
        check = client.get(f"{P}/part11", params={**PERIOD, "check": "trail_integrity"}).text
        assert re.search(r"<code>PART11-[0-9a-f]{10}</code>", check), check
        assert "none recorded" in check
        key = next(k for k in web.assessments._items if k[2] == "sox")
        cached = web.assessments.peek(key)
        size, _root = key[-1]
        ledger = world.server.ledger(OWN)
        checkpoint = ledger.store.latest_checkpoint(OWN)
        assert checkpoint is not None and size == checkpoint.size
        # Appending without a checkpoint: the same checkpoint, the same cached assessment.
        ledger.record("agent.prompt", meta={"actor": {"type": "human", "id": "x"}})
        again = client.get(P, params=PERIOD).text
        assert "computing" not in again
        assert web.assessments.peek(key) is cached
        # A new checkpoint is assessed anew, in the background.
        ledger.checkpoint()
        moved = client.get(P, params=PERIOD).text
        assert "computing" in moved
        settle(client)
        newer = [k for k in web.assessments._items if k[2] == "sox" and k != key]
        assert newer and newer[0][-1][0] == size + 1


def test_a_failed_assessment_is_shown_with_its_reason() -> None:
    class Cache:
        def __init__(self) -> None:
            self.items: dict[object, object] = {}

        def peek(self, key: object) -> object:
            return self.items.get(key)

        def get(self, key: object, compute: object) -> object:
            value = compute()  # type: ignore[operator]
            self.items[key] = value
            return value

    done = threading.Event()
    calls: list[str] = []

    def fails() -> object:
        calls.append("fails")
        done.set()
        raise ValueError("the database went away")

    background = Background(Cache())
    try:
        assert background.progress("k", fails) == ("computing", None)
        assert done.wait(60)
        deadline = time.monotonic() + 60
        while background.progress("k", fails)[0] == "computing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        state, reason = background.progress("k", fails)
        assert state == "failed" and "the database went away" in reason
        assert calls == ["fails"]  # computed once, not again on every visit
        assert background.progress("ok", lambda: 42) == ("computing", None)
        deadline = time.monotonic() + 60
        while background.progress("ok", lambda: 42)[0] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert background.progress("ok", lambda: 0) == ("ready", 42)
    finally:
        background.close()


def release_when_closing(web: WebState, release: threading.Event) -> None:
    deadline = time.monotonic() + 120
    probe = 0
    while web.background.progress(("probe", probe), lambda: None)[0] != "failed":
        assert time.monotonic() < deadline
        probe += 1
        time.sleep(0.05)
    release.set()


def test_the_worker_ends_with_the_app_and_leaves_no_work_running(world: World) -> None:
    """Served with its lifespan, as `flowloom serve` does: when the lifespan ends, the
    computation under way has finished, what was queued never runs, and the worker
    thread is gone; a later visit is told the server is shutting down."""
    app = create_app(world.server)
    web: WebState = app.state.flowloom_web
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    workers: list[threading.Thread] = []

    def slow() -> str:
        workers.append(threading.current_thread())
        started.set()
        assert release.wait(60)
        ran.append("slow")
        return "done"

    def queued() -> str:
        ran.append("queued")
        return "never"

    with live_server(world.server, app, lifespan="on") as base, httpx.Client(base_url=base) as c:
        sign_in(c, "auditor@example.org")
        assert c.get(P, params=PERIOD).status_code == 200  # the real assessments start
        assert web.background.progress("slow", slow) == ("computing", None)
        assert started.wait(120), "the worker never reached the slow computation"
        assert web.background.progress("queued", queued) == ("computing", None)
        # Held until the app is closing (a new key is refused): its end must wait for it.
        threading.Thread(target=release_when_closing, args=(web, release), daemon=True).start()
    assert started.is_set() and release.is_set()
    assert ran == ["slow"], ran  # finished before the lifespan ended; the queued one dropped
    assert web.assessments.peek("slow") == "done"
    assert workers and not any(t.is_alive() for t in workers)
    assert not [t for t in threading.enumerate() if t in workers]
    assert web.background.progress("later", lambda: 1) == (
        "failed",
        "the server is shutting down",
    )
