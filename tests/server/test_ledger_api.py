"""The ledger routes: appends, reads, proofs that verify offline, and bad input."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import flowloom.server.idempotency as idempotency_module
from flowloom.ledger import merkle
from flowloom.ledger.bundle import verify_bundle
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.merkle import verify_consistency
from flowloom.ledger.note import Verifier
from flowloom.ledger.receipt import Receipt, verify_receipt
from flowloom.ledger.verify import verify_store
from flowloom.server.app import create_app
from tests.server.support import OWN, World, live_server

L = f"/api/v1/projects/{OWN}/ledger"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.server), raise_server_exceptions=True) as test_client:
        test_client.headers.update(world.headers("developer"))
        yield test_client


def test_append_read_and_prove(client: TestClient, world: World) -> None:
    one = client.post(f"{L}/entries", json={"kind": "agent.prompt", "body": "first"})
    assert one.status_code == 201, one.text
    batch = client.post(
        f"{L}/batch",
        json={
            "events": [{"kind": "agent.tool", "body_b64": base64.b64encode(b"\x00\xff").decode()}]
            * 3
        },
    )
    assert batch.status_code == 201, batch.text
    indices = batch.json()["indices"]
    assert indices == list(range(one.json()["index"] + 1, one.json()["index"] + 4))

    entry = client.get(f"{L}/entries/{one.json()['index']}").json()
    assert entry["envelope"]["actor"] == {
        "type": "human",
        "id": world.user_ids["developer"],
        "name": "Developer Person",
    }
    assert entry["envelope"]["project"] == OWN
    assert entry["leaf_hash"] == one.json()["leaf_hash"]
    assert client.get(f"{L}/entries/{one.json()['index']}/body").content == b"first"
    assert client.get(f"{L}/entries/{indices[0]}/body").content == b"\x00\xff"

    page = client.get(f"{L}/entries", params={"start": 0, "limit": 2}).json()
    assert len(page["entries"]) == 2 and page["next"] == 2
    assert page["size"] == indices[-1] + 1

    vkey = client.get(f"{L}/vkey").text.strip()
    verifier = Verifier.from_vkey(vkey)
    assert verifier.name == f"flowloom.test/{OWN}"
    note = client.post(f"{L}/checkpoint").text
    checkpoint = open_checkpoint(note, verifier)
    assert checkpoint.size == page["size"]

    receipt = Receipt.parse(client.get(f"{L}/proof/inclusion", params={"index": indices[1]}).text)
    verify_receipt(receipt, bytes.fromhex(batch.json()["leaf_hashes"][1]), verifier)

    old = open_checkpoint(client.get(f"{L}/checkpoint").text, verifier)
    client.post(f"{L}/entries", json={"kind": "agent.response", "body": "later"})
    text = client.get(f"{L}/proof/consistency", params={"old": old.size}).text
    head, _, new_note = text.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == f"old {old.size}"
    new = open_checkpoint(new_note, verifier)
    proof = [base64.b64decode(line) for line in lines[1:]]
    verify_consistency(old.size, new.size, proof, old.root, new.root)

    report = verify_store(world.server.store, OWN, verifier)
    assert report.ok, [p.line() for p in report.problems]


def test_bundle_verifies_offline(client: TestClient, tmp_path: Path) -> None:
    client.post(f"{L}/entries", json={"kind": "agent.prompt", "body": "in the bundle"})
    response = client.get(f"{L}/bundle")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    verifier = Verifier.from_vkey(client.get(f"{L}/vkey").text.strip())
    report = verify_bundle(tmp_path / OWN, verifier)
    assert report.ok, [p.line() for p in report.problems]


def test_bodies_are_redacted_and_the_redaction_recorded(client: TestClient) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    done = client.post(
        f"{L}/entries", json={"kind": "agent.prompt", "body": f"use key {secret} please"}
    ).json()
    body = client.get(f"{L}/entries/{done['index']}/body").content
    assert secret.encode() not in body and b"REDACTED" in body
    after = client.get(f"{L}/entries", params={"start": done["index"] + 1}).json()["entries"]
    assert after[0]["kind"] == "redaction.apply"
    assert after[0]["envelope"]["refs"]["entry"] == done["index"]
    assert secret not in json.dumps(after[0])


def test_event_id_makes_retries_idempotent(client: TestClient) -> None:
    event = {"kind": "agent.prompt", "body": "once", "event_id": "client-1"}
    first = client.post(f"{L}/entries", json=event).json()
    again = client.post(f"{L}/entries", json=event).json()
    assert again == {**first, "duplicate": True}
    batch = client.post(
        f"{L}/batch",
        json={
            "events": [event, {**event, "event_id": "client-2"}, {**event, "event_id": "client-2"}]
        },
    ).json()
    assert batch["indices"][0] == first["index"]
    assert batch["indices"][1] == batch["indices"][2]
    assert batch["duplicates"] == [True, False, True]


def test_client_time_and_service_actor(world: World) -> None:
    with TestClient(create_app(world.server)) as service:
        service.headers.update(world.headers("service"))
        agent = {"type": "agent", "id": "claude-code", "name": "Claude Code"}
        done = service.post(
            f"{L}/entries",
            json={"kind": "agent.prompt", "ts": "2026-01-02T03:04:05.000006Z", "actor": agent},
        ).json()
        envelope = service.get(f"{L}/entries/{done['index']}").json()["envelope"]
    assert envelope["ts"] == "2026-01-02T03:04:05.000006Z"
    assert envelope["actor"] == agent
    assert envelope["refs"]["submitted_by"]["id"] == world.user_ids["service"]
    assert bytes.fromhex(done["leaf_hash"]) == merkle.leaf_hash(
        world.server.store.entry(OWN, done["index"]).envelope  # type: ignore[union-attr]
    )


def test_a_person_cannot_record_as_someone_else(client: TestClient, world: World) -> None:
    claimed = {"type": "human", "id": "somebody-else"}
    done = client.post(f"{L}/entries", json={"kind": "agent.prompt", "actor": claimed}).json()
    envelope = client.get(f"{L}/entries/{done['index']}").json()["envelope"]
    assert envelope["actor"]["id"] == world.user_ids["developer"]
    assert envelope["refs"]["reported_actor"] == claimed


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        ({"json": {"kind": "agent.nonsense"}}, 400, "bad_request"),
        ({"json": {"kind": "agent.prompt", "body_b64": "***"}}, 400, "bad_request"),
        ({"json": {"kind": "agent.prompt", "body": "a", "body_b64": "YQ=="}}, 400, "bad_request"),
        ({"json": {"kind": "agent.prompt", "ts": "yesterday"}}, 400, "bad_request"),
        ({"json": {"kind": "agent.prompt", "project": "beta"}}, 422, "invalid"),
        ({"json": [1, 2]}, 422, "invalid"),
        (
            {
                "content": b'{"kind": "agent.prompt", "body": "\\ud800"}',
                "headers": {"content-type": "application/json"},
            },
            400,
            "bad_request",
        ),
        ({"json": {"kind": "agent.prompt", "refs": {"n": 2**70}}}, 400, "bad_request"),
    ],
)
def test_bad_appends_are_refused_clearly(
    client: TestClient, request_kwargs: dict[str, object], status: int, code: str
) -> None:
    before = client.get(f"{L}/entries").json()["size"]
    response = client.post(f"{L}/entries", **request_kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert client.get(f"{L}/entries").json()["size"] == before


def test_a_bad_event_in_a_batch_stores_nothing(client: TestClient) -> None:
    before = client.get(f"{L}/entries").json()["size"]
    events = [{"kind": "agent.prompt"}] * 5 + [{"kind": "nope.nope"}]
    response = client.post(f"{L}/batch", json={"events": events})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("events[5]: ")
    assert client.get(f"{L}/entries").json()["size"] == before


def test_batch_limits(client: TestClient) -> None:
    over = client.post(f"{L}/batch", json={"events": [{"kind": "agent.prompt"}] * 1001})
    assert over.status_code == 422
    empty = client.post(f"{L}/batch", json={"events": []})
    assert empty.status_code == 422


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/entries/-1", {}),
        ("/entries/99999999999999999999999999", {}),
        ("/entries/123456", {}),
        ("/proof/inclusion", {"index": -1}),
        ("/proof/inclusion", {"index": 10**30}),
        ("/proof/inclusion", {"index": 5000}),
        ("/proof/consistency", {"old": 10**6}),
        ("/entries", {"start": -3}),
        ("/entries", {"limit": 10**9}),
    ],
)
def test_bad_indices(client: TestClient, path: str, params: dict[str, int]) -> None:
    response = client.get(L + path, params=params)
    assert response.status_code in (400, 404, 422), response.text
    assert response.json()["error"]["message"]


def test_huge_bodies_get_413_over_real_http(world: World) -> None:
    world_limit = world.server.settings.max_request_bytes
    with live_server(world.server) as base:
        headers = {**world.headers("developer"), "content-type": "application/json"}
        big = b'{"kind": "agent.prompt", "body": "' + b"x" * (world_limit + 10) + b'"}'
        response = httpx.post(f"{base}{L}/entries", content=big, headers=headers, timeout=60)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked upload
            yield b'{"kind": "agent.prompt", "body": "'
            for _ in range(world_limit // 65536 + 2):
                yield b"y" * 65536
            yield b'"}'

        chunked = httpx.post(f"{base}{L}/entries", content=chunks(), headers=headers, timeout=60)
        assert chunked.status_code == 413
        ok = httpx.post(f"{base}{L}/entries", json={"kind": "agent.prompt"}, headers=headers)
        assert ok.status_code == 201


def test_unauthenticated_and_wrong_keys(client: TestClient) -> None:
    client.headers.pop("Authorization")
    assert client.get(f"{L}/entries").status_code == 401
    bad = client.get(f"{L}/entries", headers={"Authorization": "Bearer flk_nope_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    assert client.get(f"{L}/entries", headers={"Authorization": "Basic abc"}).status_code == 401


def test_health_ready_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post(f"{L}/entries", json={"kind": "agent.prompt"})
    metrics = client.get("/metrics").text
    assert 'route="/api/v1/projects/{project}/ledger/entries"' in metrics
    assert "flowloom_ledger_appends_total" in metrics
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if path.startswith("/api/v1"):
            for operation in operations.values():
                assert (
                    "200" in operation["responses"]
                    or "201" in operation["responses"]
                    or "202" in operation["responses"]  # queued for sending
                    or "204" in operation["responses"]
                    or "302" in operation["responses"]
                    or "303" in operation["responses"]
                    or "307" in operation["responses"]
                ), path


def test_the_instance_log_is_read_only(world: World) -> None:
    with TestClient(create_app(world.server)) as owner:
        owner.headers.update(world.headers("instance_owner"))
        trail = owner.get("/api/v1/projects/flowloom-instance/audit").json()
        kinds = {e["kind"] for e in trail["entries"]}
        assert {"auth.project_created", "auth.user_created", "auth.key_created"} <= kinds
        refused = owner.post(
            "/api/v1/projects/flowloom-instance/ledger/entries", json={"kind": "auth.login"}
        )
        assert refused.status_code == 403


def test_session_cookie_needs_csrf(world: World) -> None:
    directory = world.server.directory
    user = directory.create_user("pw@example.org", "Pass Word", password="a long passphrase here")
    directory.grant(user.id, OWN, "developer")
    with TestClient(create_app(world.server)) as browser:
        login = browser.post(
            "/api/v1/auth/login",
            json={"email": "pw@example.org", "password": "a long passphrase here"},
        )
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        assert browser.get("/api/v1/me").json()["via"] == "session"
        assert browser.post(f"{L}/entries", json={"kind": "agent.prompt"}).status_code == 403
        ok = browser.post(
            f"{L}/entries", json={"kind": "agent.prompt"}, headers={"X-CSRF-Token": csrf}
        )
        assert ok.status_code == 201
        assert (
            browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        )
        assert browser.get("/api/v1/me").status_code == 401
        wrong = browser.post(
            "/api/v1/auth/login", json={"email": "pw@example.org", "password": "wrong"}
        )
        assert wrong.status_code == 401


def test_a_repeat_while_the_first_append_runs_is_told_to_retry(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.server.idempotency.claim(OWN, ["in-flight"])  # as if another request held it
    event = {"kind": "agent.prompt", "event_id": "in-flight"}
    busy = client.post(f"{L}/entries", json=event)
    # retry soon (not 409: clients give a refused event up; this one must be retried)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    assert "in progress" in busy.json()["error"]["message"]
    monkeypatch.setattr(idempotency_module, "STALE_AFTER_S", 0.0)  # that server died
    taken = client.post(f"{L}/entries", json=event)
    assert taken.status_code == 201 and not taken.json()["duplicate"]


def test_a_refused_batch_releases_its_event_ids(client: TestClient) -> None:
    bad = [{"kind": "agent.prompt", "event_id": "r-1"}, {"kind": "nope", "event_id": "r-2"}]
    assert client.post(f"{L}/batch", json={"events": bad}).status_code == 400
    good = [{"kind": "agent.prompt", "event_id": "r-1"}, {"kind": "agent.tool", "event_id": "r-2"}]
    again = client.post(f"{L}/batch", json={"events": good})
    assert again.status_code == 201 and again.json()["duplicates"] == [False, False]


def test_concurrent_repeats_append_once(world: World) -> None:
    answers: list[tuple[int, dict[str, object]]] = []
    event = {"kind": "agent.prompt", "subject": "only-once", "event_id": "same-id"}
    with live_server(world.server) as base:
        headers = world.headers("developer")

        def send() -> None:
            response = httpx.post(f"{base}{L}/entries", json=event, headers=headers, timeout=30)
            answers.append((response.status_code, response.json()))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert {status for status, _ in answers} <= {201, 503}
    appended = [body for status, body in answers if status == 201 and not body["duplicate"]]
    assert len(appended) == 1
    assert {b["index"] for s, b in answers if s == 201} == {appended[0]["index"]}
    stored = [e for e in world.server.store.entries(OWN) if b"only-once" in e.envelope]
    assert len(stored) == 1


def test_a_page_with_bodies_answers_what_the_body_route_answers(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bodies=true`: each entry's body and salt beside its envelope, under the single-body
    route's rules (redacted as stored, null when erased or absent), the salt opening the
    envelope's commitment; a page ends early when its bodies fill the bound."""
    import flowloom.server.routes.ledger as ledger_routes
    from flowloom.ledger.body import digest_of

    ledger = world.server.ledger(OWN)
    start = ledger.size()
    client.post(f"{L}/entries", json={"kind": "agent.prompt", "body": "key AKIAIOSFODNN7EXAMPLE"})
    client.post(f"{L}/entries", json={"kind": "agent.prompt"})
    client.post(f"{L}/entries", json={"kind": "agent.prompt", "body": "plain"})
    ledger.record("agent.prompt", body=b"about ann", data_subject="ann")
    ledger.erase("ann", reason="asked")
    page = client.get(f"{L}/entries", params={"start": start, "bodies": "true"}).json()
    rows = page["entries"]
    assert len(rows) == ledger.size() - start and page["next"] is None
    for row in rows:
        single = client.get(f"{L}/entries/{row['index']}/body")
        if row["body"] is None:
            assert single.status_code == 404 and row["salt"] is None
            continue
        content = base64.b64decode(row["body"])
        assert single.status_code == 200 and single.content == content
        assert digest_of(base64.b64decode(row["salt"]), content) == row["envelope"]["body"]
    assert b"REDACTED" in base64.b64decode(rows[0]["body"])
    bodied = [row["index"] for row in rows if row["body"] is not None]
    assert [row["kind"] for row in rows if row["index"] > bodied[-1]] == [
        "agent.prompt",  # ann's, erased
        "erasure.tombstone",
    ]
    assert "body" not in client.get(f"{L}/entries", params={"start": start}).json()["entries"][0]
    # Bodies past the bound wait for the next page; the first entry always comes.
    monkeypatch.setattr(ledger_routes, "_BODIES_PAGE_BYTES", 1)
    small = client.get(f"{L}/entries", params={"start": start, "bodies": "true"}).json()
    assert [e["index"] for e in small["entries"]] == list(range(start, bodied[1]))
    assert small["next"] == bodied[1]
    # Same permission as every read: a project the key has no role on is refused.
    other = client.get("/api/v1/projects/beta/ledger/entries", params={"bodies": "true"})
    assert other.status_code in (403, 404)
