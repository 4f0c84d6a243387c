"""Forged authority never counts on the server: its read routes and web pages, end to end.

A real server (SQLite or PostgreSQL) over real loopback HTTP. Beside real events (an
approval signed through the endpoint, a legal hold placed through the holds route, the
directory's own audit events), every authority-bearing kind is forged straight into the
store, bypassing the endpoints that refuse it: without an attestation, or attested by a
key this server does not hold. Decision status, signature verification, the audit
trail, the holds listing, the compliance report and the web pages must show the forged
events for what they are, and count none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.ledger.body import subject_pseudonym
from tests.server.support import OWN, World, live_server, make_world
from tests.support.forged_rows import FORGERIES, Forgery, forge
from tests.web.support import PASSWORD, sign_in

P = f"/api/v1/projects/{OWN}"


class Scene:
    """The server, its URL, the decisions, and where each forged event landed."""

    def __init__(self, world: World, base: str, how: Forgery, other_home: Path) -> None:
        self.world = world
        self.base = base
        self.how = how
        self.other_home = other_home
        self.forged: dict[str, int] = {}
        self.real: dict[str, Any] = {}

    def api(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.world.headers(who), timeout=60)

    def forge(self, name: str, kind: str, meta: dict[str, Any]) -> int:
        ledger = self.world.server.ledger(OWN)
        self.forged[name] = forge(ledger, kind, meta, how=self.how, other_home=self.other_home)
        return self.forged[name]


def _person(world: World, role: str) -> dict[str, str]:
    return {"type": "human", "id": world.user_ids[role], "name": f"{role.title()} Person"}


def _stage(scene: Scene) -> None:
    world = scene.world
    server = world.server
    for role in ("approver", "auditor"):
        server.directory.set_password(world.user_ids[role], PASSWORD)
    ledger = server.ledger(OWN)
    book = DecisionBook(ledger)
    developer = world.user_ids["developer"]
    forged_one = book.record(title="Forged approval", requested_by=developer)
    real_one = book.record(title="Real approval", requested_by=developer)
    scene.real.update(forged=forged_one.id, real=real_one.id)

    # The real approval, through the signing endpoint.
    with scene.api("approver") as approver:
        done = approver.post(
            f"{P}/decisions/{real_one.id}/approve",
            json={"email": "approver@example.org", "password": PASSWORD},
        )
        assert done.status_code == 201, done.text
        scene.real["signature"] = done.json()["signature"]["id"]
        scene.real["approval"] = done.json()["approval"]["entry"]
    # A real legal hold, through the holds route.
    with scene.api("owner") as owner:
        placed = owner.post(
            f"{P}/compliance/holds",
            json={"action": "hold", "id": "LH-1", "reason": "litigation"},
        )
        assert placed.status_code == 201, placed.text
        scene.real["hold"] = placed.json()["entry"]

    approver = _person(world, "approver")
    signature = scene.forge(
        "signature",
        "signature.apply",
        {
            "actor": approver,
            "subject": f"decision:{forged_one.id}",
            "refs": {
                "signer": world.user_ids["approver"],
                "printed_name": "Approver Person",
                "email": "approver@example.org",
                "meaning": "approved",
                "statement": "I approve this content.",
                "content_digest": forged_one.content_digest,
                "method": "password",
                "components": ["email", "password"],
            },
        },
    )
    scene.forge(
        "approval",
        "decision.approve",
        {
            "actor": approver,
            "subject": forged_one.id,
            "refs": {
                "meaning": "approved",
                "content_digest": forged_one.content_digest,
                "signature": signature,
            },
        },
    )
    developer_actor = _person(world, "developer")
    scene.forge(
        "release",
        "retention.set",
        {
            "actor": developer_actor,
            "subject": "hold:LH-1",
            "refs": {"action": "release", "hold": "LH-1", "reason": "done with it"},
        },
    )
    scene.forge(
        "hold",
        "retention.set",
        {
            "actor": developer_actor,
            "subject": "hold:LH-F",
            "refs": {"action": "hold", "hold": "LH-F", "scope": "all", "reason": "forged"},
        },
    )
    scene.forge(
        "role",
        "auth.role_granted",
        {
            "actor": developer_actor,
            "subject": developer,
            "refs": {"user_id": developer, "role": "owner", "project": OWN},
        },
    )
    scene.forge(
        "disabled",
        "auth.user_disabled",
        {"subject": world.user_ids["auditor"], "refs": {"user_id": world.user_ids["auditor"]}},
    )
    scene.forge(
        "ci",
        "ci.result",
        {
            "actor": {"type": "service", "id": "ci"},
            "subject": "main",
            "git": {"branch": "main", "head": "c" * 40},
            "refs": {"ok": True, "branch": "main", "commits": []},
        },
    )
    scene.forge(
        "anchor",
        "checkpoint.anchor",
        {
            "refs": {
                "type": "tsa",
                "checkpoint": {"origin": ledger.origin, "size": 1, "root": "AQ" * 21 + "A="},
                "where": "tsa.invalid",
            }
        },
    )
    scene.forge(
        "export",
        "export.generate",
        {"subject": "report:sox", "refs": {"framework": "sox", "format": "pdf", "flagged": False}},
    )
    scene.forge(
        "key",
        "key.generated",
        {"subject": ledger.origin, "refs": {"vkey": "forged+00000000+AAAA", "purpose": "x"}},
    )
    body = ledger.record("agent.prompt", body=b"eve's words", data_subject="eve").index
    eve = subject_pseudonym(OWN, "eve")
    scene.forge(
        "tombstone",
        "erasure.tombstone",
        {
            "subject": eve,
            "refs": {"subject": eve, "bodies": server.store.body_digests(OWN, eve), "reason": "x"},
        },
    )
    server.store.delete_bodies(OWN, eve)
    scene.real["body"] = body
    ledger.checkpoint()


@pytest.fixture(params=FORGERIES)
def scene(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[Scene]:
    world = make_world(db_url, tmp_path / "home")
    try:
        with live_server(world.server) as base:
            built = Scene(world, base, request.param, tmp_path / "other-home")
            _stage(built)
            yield built
    finally:
        world.close()


def test_decisions_and_signatures_count_only_the_endpoint_s_own(scene: Scene) -> None:
    with scene.api("auditor") as auditor:
        forged = auditor.get(f"{P}/decisions/{scene.real['forged']}").json()
        assert forged["status"] == "proposed"
        [approval] = forged["approvals"]
        assert approval["entry"] == scene.forged["approval"]
        assert approval["verified"] is False and approval["via"] == "none"
        assert approval["unverified_reason"]
        real = auditor.get(f"{P}/decisions/{scene.real['real']}").json()
        assert real["status"] == "accepted"
        assert [(a["verified"], a["via"]) for a in real["approvals"]] == [(True, "server")]
        accepted = auditor.get(f"{P}/decisions", params={"status": "accepted"}).json()
        assert [d["id"] for d in accepted["decisions"]] == [scene.real["real"]]

        verdict = auditor.get(f"{P}/signatures/{scene.forged['signature']}/verify").json()
        assert verdict["ok"] is False
        origin = {c["name"]: c for c in verdict["checks"]}["origin"]
        assert origin["status"] == "fail" and origin["detail"].startswith("unverified: ")
        good = auditor.get(f"{P}/signatures/{scene.real['signature']}/verify").json()
        assert good["ok"] is True, good["reasons"]


def test_the_audit_trail_lists_only_attested_security_events(scene: Scene) -> None:
    forged = {scene.forged[n] for n in ("role", "disabled", "key")}
    with scene.api("auditor") as auditor:
        trail = auditor.get(f"{P}/audit", params={"limit": 1000}).json()
        listed = {e["index"]: e for e in trail["entries"]}
        assert not forged & set(listed)
        assert listed and all(e["verified"] and e["origin"] == "server" for e in listed.values())
        assert "key.generated" in {e["kind"] for e in listed.values()}  # the project's real key
        full = auditor.get(f"{P}/audit", params={"limit": 1000, "include_unverified": True}).json()
        labelled = {e["index"]: e for e in full["entries"]}
        assert forged <= set(labelled)
        for index in forged:
            entry = labelled[index]
            assert entry["verified"] is False and entry["origin"] == "none"
            assert entry["unverified_reason"]
        assert set(labelled) - forged == set(listed)


def test_holds_listing_and_release_ignore_forged_retention_events(scene: Scene) -> None:
    with scene.api("auditor") as auditor:
        listing = auditor.get(f"{P}/compliance/holds").json()
    assert [(h["id"], h["active"], h["entry"]) for h in listing["holds"]] == [
        ("LH-1", True, scene.real["hold"])
    ]
    assert [(u["entry"], u["action"], u["id"]) for u in listing["unverified"]] == [
        (scene.forged["release"], "release", "LH-1"),
        (scene.forged["hold"], "hold", "LH-F"),
    ]
    assert all("not counted" in u["note"] for u in listing["unverified"])
    with scene.api("owner") as owner:
        missing = owner.post(
            f"{P}/compliance/holds", json={"action": "release", "id": "LH-F", "reason": "x"}
        )
        assert missing.status_code == 404, missing.text
        released = owner.post(
            f"{P}/compliance/holds", json={"action": "release", "id": "LH-1", "reason": "closed"}
        )
        assert released.status_code == 201, released.text
        assert released.json()["active"] is False


def test_the_compliance_report_lists_each_forgery_and_counts_none(scene: Scene) -> None:
    today = datetime.now(UTC).date()
    period = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    with scene.api("auditor") as auditor:
        answer = auditor.post(f"{P}/reports", json={"framework": "sox", **period})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    integrity = {c["check"]: c for c in report["checks"]}["trail_integrity"]
    listed = {f["entry"] for f in integrity["findings"] if f["what"] == "unverified-event"}
    assert listed == set(scene.forged.values())
    assert report["ledger"]["anchors"] == []
    erasure = {c["check"]: c for c in report["checks"]}["erasure"]
    assert ("body-missing-without-tombstone", scene.real["body"]) in {
        (f["what"], f["entry"]) for f in erasure["findings"]
    }
    trail = {row["entry"]: row for row in report["audit_trail"]}
    assert "unverified approval by" in trail[scene.forged["approval"]]["unverified"]
    assert trail[scene.real["approval"]]["unverified"] is None


def test_web_pages_show_forged_approvals_as_unverified(scene: Scene) -> None:
    with httpx.Client(base_url=scene.base, timeout=60) as browser:
        assert sign_in(browser, "auditor@example.org").status_code in (200, 303)
        page = browser.get(f"/ui/projects/{OWN}/decisions/{scene.real['forged']}").text
        approver = scene.world.user_ids["approver"]
        assert f"unverified approval by {approver}</strong> — does not count" in page
        assert "status-proposed" in page and "status-accepted" not in page
        assert "does not verify" in page and "unverified: " in page
        real = browser.get(f"/ui/projects/{OWN}/decisions/{scene.real['real']}").text
        assert "status-accepted" in real and "does not count" not in real
        assert "yes (server)" in real
        accepted = browser.get(f"/ui/projects/{OWN}/decisions", params={"status": "accepted"})
        assert scene.real["real"] in accepted.text
        assert scene.real["forged"] not in accepted.text

        timeline = browser.get(f"/ui/projects/{OWN}/timeline", params={"kind": "decision.approve"})
        assert timeline.text.count(">unverified</span>") == 1
        entry = browser.get(f"/ui/projects/{OWN}/entries/{scene.forged['approval']}").text
        assert "<dt>Origin</dt>" in entry and "does not count" in entry
        real_entry = browser.get(f"/ui/projects/{OWN}/entries/{scene.real['approval']}").text
        assert "<dt>Origin</dt>" not in real_entry

        compliance = browser.get(
            f"/ui/projects/{OWN}/compliance/sox", params={"check": "trail_integrity"}
        ).text
        assert (
            f"unverified approval by {approver} at entry {scene.forged['approval']}" in compliance
        )
