"""Outbound webhooks end to end: a real server over loopback HTTP, real receivers.

Signatures are checked by the receiver with the standardwebhooks library, bodies parsed
as CloudEvents with the cloudevents package; the Standard Webhooks published test vector
pins the signing itself.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook

from flowloom.cli.main import cli
from flowloom.webhooks.message import sign_headers
from tests.server.support import OWN, World, free_port, live_server, make_world
from tests.webhooks.receiver import Receiver, wait_until

_FAST = {
    "FLOWLOOM_WEBHOOKS_POLL_S": "0.05",
    "FLOWLOOM_WEBHOOKS_BACKOFF_BASE_S": "0.05",
    "FLOWLOOM_WEBHOOKS_BACKOFF_MAX_S": "0.2",
    "FLOWLOOM_WEBHOOKS_MAX_ATTEMPTS": "3",
    "FLOWLOOM_WEBHOOKS_DIGEST_PERIOD_S": "0.2",
}


class _Inbox:
    """aiosmtpd's handler: keeps every message the real SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[_Inbox, int]]:
    handler = _Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, inbox: tuple[_Inbox, int]
) -> Iterator[tuple[World, str]]:
    tmp: Path = tmp_path_factory.mktemp("webhooks")
    smtp = {
        "FLOWLOOM_SMTP_HOST": "127.0.0.1",
        "FLOWLOOM_SMTP_PORT": str(inbox[1]),
        "FLOWLOOM_SMTP_STARTTLS": "false",
        "FLOWLOOM_SMTP_FROM": "flowloom@example.org",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**_FAST, **smtp}.items():
            patch.setenv(name, value)
        world = make_world(str(tmp / "server.db"), tmp / "home")
    try:
        with live_server(world.server, lifespan="on") as base:
            yield world, base
    finally:
        world.close()


@pytest.fixture(autouse=True)
def _pause_earlier_webhooks(env: tuple[World, str]) -> Iterator[None]:
    """Each test's webhooks stop with it: a later receiver may get an earlier one's port."""
    yield
    hooks = env[0].server.webhooks
    assert hooks is not None
    for sub in hooks.store.subscriptions(OWN, enabled_only=True):
        hooks.store.update(OWN, sub.id, {"enabled": False})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def _api(env: tuple[World, str], who: str = "owner") -> httpx.Client:
    world, base = env
    return httpx.Client(base_url=base + f"/api/v1/projects/{OWN}", headers=world.headers(who))


def _subscribe(env: tuple[World, str], url: str, **body: Any) -> dict[str, Any]:
    with _api(env) as api:
        answer = api.post("/webhooks", json={"url": url, "kinds": ["agent.prompt"], **body})
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def _record(world: World, count: int, **extra: Any) -> list[int]:
    ledger = world.server.ledger(OWN)
    return [
        ledger.record(
            "agent.prompt", body=f"prompt {n}".encode(), meta={"session": "s"}, **extra
        ).index
        for n in range(count)
    ]


def test_the_published_standard_webhooks_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    at = datetime.fromtimestamp(1614265330, UTC)
    headers = sign_headers(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}', at)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-timestamp"] == "1614265330"


def test_events_arrive_signed_in_order_as_cloudevents(
    env: tuple[World, str], receiver: Receiver
) -> None:
    world, _ = env
    made = _subscribe(env, receiver.url, description="ordered")
    secret = made["secret"]
    assert secret.startswith("whsec_")
    with _api(env) as api:
        shown = api.get(f"/webhooks/{made['id']}").json()
        listed = api.get("/webhooks").json()
    assert shown["secret"] is None and all(w["secret"] is None for w in listed)
    hooks = world.server.webhooks
    assert hooks is not None
    sealed = hooks.store.sealed_secret(made["id"])  # encrypted at rest, opened only to sign
    assert secret.encode() not in sealed and secret[6:].encode() not in sealed
    assert hooks.secret(made["id"]) == secret
    indices = _record(world, 5)
    receiver.wait_for(5)
    payloads = receiver.verified(secret)
    assert [p["data"]["index"] for p in payloads] == indices
    first = JSONFormat().read(None, receiver.received[0].body)
    assert first.get_specversion() == "1.0"
    assert first.get_type() == "dev.flowloom.agent.prompt"
    assert first.get_source().endswith(f"/api/v1/projects/{OWN}")
    data = first.get_data()
    assert isinstance(data, dict)
    assert data["body"] is None and data["body_state"] == "not_requested"
    assert receiver.received[0].headers["content-type"] == "application/cloudevents+json"
    # a tampered body does not verify
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(receiver.received[0].body + b" ", receiver.received[0].headers)
    # the creation is in the ledger, the secret nowhere in it
    ledger = world.server.ledger(OWN)
    entries = list(ledger.store.entries(OWN, 0, ledger.size()))
    created = [e for e in entries if e.kind == "auth.webhook_created"]
    assert any(made["id"] in e.envelope.decode() for e in created)
    assert not any(secret[6:] in e.envelope.decode() for e in entries)


def test_dead_letter_then_redelivery_with_the_same_id(
    env: tuple[World, str], receiver: Receiver
) -> None:
    world, _ = env
    receiver.status = 500
    made = _subscribe(env, receiver.url)
    [index] = _record(world, 1)
    path = f"/webhooks/{made['id']}/deliveries"
    with _api(env) as api:
        dead = wait_until(
            lambda: [d for d in api.get(path).json() if d["status"] == "dead"],
            what="a dead letter",
        )[0]
        assert dead["ledger_index"] == index and dead["attempts"] == 3
        assert [a["status_code"] for a in dead["history"]] == [500, 500, 500]
        receiver.status = 200
        again = api.post(f"/webhooks/deliveries/{dead['id']}/redeliver")
        assert again.status_code == 202, again.text
        assert again.json()["redelivery_of"] == dead["id"]
        receiver.wait_for(1)
        assert receiver.received[0].headers["webhook-id"] == dead["message_id"]
        done = wait_until(
            lambda: [d for d in api.get(path).json() if d["status"] == "delivered"],
            what="the redelivery",
        )
        assert done[0]["message_id"] == dead["message_id"]
        pending = api.post(f"/webhooks/deliveries/{done[0]['id']}/redeliver")
        assert pending.status_code == 202
    assert receiver.verified(made["secret"])[0]["data"]["index"] == index


def test_an_erased_body_is_never_sent(env: tuple[World, str], receiver: Receiver) -> None:
    world, _ = env
    receiver.stop()  # down while the entry is queued, and erased
    made = _subscribe(env, receiver.url, include_bodies=True)
    ledger = world.server.ledger(OWN)
    kept = ledger.record("agent.prompt", body=b"kept words", meta={"session": "s"}).index
    gone = ledger.record(
        "agent.prompt", body=b"forget these words", meta={"session": "s"}, data_subject="ana"
    ).index
    ledger.erase("ana", reason="GDPR art. 17 request")
    receiver.start()
    receiver.wait_for(2)
    by_index = {p["data"]["index"]: p["data"] for p in receiver.verified(made["secret"])}
    assert by_index[kept]["body"] == "kept words"
    assert by_index[gone]["body"] is None and by_index[gone]["body_state"] == "erased"
    assert not any(b"forget these" in r.body for r in receiver.received)


def test_send_test_event_and_the_web_page(env: tuple[World, str], receiver: Receiver) -> None:
    world, base = env
    made = _subscribe(env, receiver.url)
    with _api(env) as api:
        queued = api.post(f"/webhooks/{made['id']}/test")
        assert queued.status_code == 202, queued.text
    [message] = receiver.wait_for(1)
    event = Webhook(made["secret"]).verify(message.body, message.headers)
    assert event["type"] == "dev.flowloom.webhook.test" and event["data"]["test"] is True
    path = f"/api/v1/projects/{OWN}/webhooks/{made['id']}/deliveries"
    with _api(env) as api:
        wait_until(lambda: api.get(path.split(OWN)[1]).json()[0]["status"] == "delivered")
    page = httpx.get(base + f"/ui/projects/{OWN}/webhooks", headers=world.headers("owner"))
    assert page.status_code == 200
    assert made["id"] in page.text and "HTTP 200" in page.text
    assert made["secret"] not in page.text
    ledger = world.server.ledger(OWN)
    kinds = [e.kind for e in ledger.store.entries(OWN, 0, ledger.size())]
    assert "auth.webhook_tested" in kinds


def test_changes_and_removal_are_recorded(env: tuple[World, str], receiver: Receiver) -> None:
    world, _ = env
    made = _subscribe(env, receiver.url)
    with _api(env) as api:
        rotated = api.patch(f"/webhooks/{made['id']}", json={"rotate_secret": True})
        assert rotated.status_code == 200 and rotated.json()["secret"] != made["secret"]
        off = api.patch(f"/webhooks/{made['id']}", json={"enabled": False})
        assert off.json()["enabled"] is False and off.json()["secret"] is None
        assert api.delete(f"/webhooks/{made['id']}").status_code == 204
        assert api.get(f"/webhooks/{made['id']}").status_code == 404
    ledger = world.server.ledger(OWN)
    mine = [
        e.kind
        for e in ledger.store.entries(OWN, 0, ledger.size())
        if made["id"] in e.envelope.decode()
    ]
    assert mine == [
        "auth.webhook_created",
        "auth.webhook_updated",
        "auth.webhook_updated",
        "auth.webhook_deleted",
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": "ftp://example.org/x", "kinds": ["*"]}, "http(s) URL"),
        ({"url": "https://u:p@example.org/x", "kinds": ["*"]}, "user name or password"),
        ({"url": "https://example.org/x", "kinds": ["no.such_kind"]}, "unknown event kind"),
    ],
)
def test_bad_subscriptions_get_a_clear_error(
    env: tuple[World, str], body: dict[str, Any], says: str
) -> None:
    with _api(env) as api:
        answer = api.post("/webhooks", json=body)
    assert answer.status_code == 400
    assert says in json.dumps(answer.json())


def test_only_project_admins_manage_webhooks(env: tuple[World, str]) -> None:
    with _api(env, "developer") as api:
        answer = api.post("/webhooks", json={"url": "https://example.org/x", "kinds": ["*"]})
    assert answer.status_code == 403


# -- docs/integrations.md: every command of its webhooks section runs -------------------

_DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def _doc_blocks(language: str) -> list[str]:
    text = _DOC.read_text()
    start = text.index("## Webhooks")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_documented_commands_work(
    env: tuple[World, str], receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, base = env
    [block] = _doc_blocks("sh")
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    [python] = _doc_blocks("python")
    scope: dict[str, Any] = {}
    exec(python, scope)  # the documented receiver check
    environ = {"FLOWLOOM_SERVER": base, "FLOWLOOM_API_KEY": world.keys["owner"]}
    documented_id, documented_delivery = "wh_0123456789abcdef", "42"
    real: dict[str, str] = {
        "https://hooks.example.org/flowloom": receiver.url,
        "https://hooks.slack.com/services/T000/B000/XXXX": receiver.url + "/services/T/B/X",
    }
    ran = []
    for argv in commands:
        assert argv[0] == "flowloom"
        if argv[4] == "redeliver":
            delivery = _delivered_test(env, real[documented_id])
            real[documented_delivery] = str(delivery)
        if argv[4] == "remove":  # removing drops what is queued: let the redelivery arrive
            receiver.wait_for(2)
        args = [real.get(a, a) for a in argv[1:]]
        with monkeypatch.context() as patch:
            patch.chdir(tmp_path)
            done = CliRunner().invoke(cli, args, env=environ, catch_exceptions=True)
        assert done.exit_code == 0 and done.exception is None, f"{argv}: {done.output}"
        ran.append(argv[4])
        if argv[4] == "add" and documented_id not in real:
            made = re.search(r"^(wh_[0-9a-f]{16}) .*\nsecret: (whsec_\S+)", done.stdout, re.M)
            assert made, done.stdout
            real[documented_id], secret = made.group(1), made.group(2)
            assert real[documented_id] != documented_id, done.stdout
    assert ran == ["add", "add", "list", "test", "deliveries", "redeliver", "remove"]
    assert len(receiver.received) == 2  # the test event, and its redelivery
    for message in receiver.received:
        assert scope["verify"](secret, message.body, message.headers)["data"]["test"] is True


def _delivered_test(env: tuple[World, str], webhook_id: str) -> int:
    with _api(env) as api:
        found = wait_until(
            lambda: [
                d
                for d in api.get(f"/webhooks/{webhook_id}/deliveries").json()
                if d["status"] == "delivered"
            ],
            what="the test event delivered",
        )
    return int(found[0]["id"])


@pytest.mark.parametrize("target", ["slack", "teams"])
def test_chat_targets_link_to_the_signing_page_and_keep_their_url_sealed(
    env: tuple[World, str], receiver: Receiver, target: str
) -> None:
    world, _ = env
    token = f"T0001/B0001/{target}SeCrEtToKeN"
    url = f"{receiver.url}/services/{token}"
    with _api(env) as api:
        answer = api.post("/webhooks", json={"url": url, "kinds": ["decision.*"], "format": target})
        assert answer.status_code == 201, answer.text
        made = answer.json()
        assert token not in json.dumps(api.get(f"/webhooks/{made['id']}").json())
        assert made["url"] == "http://127.0.0.1/…" and made["format"] == target
    decision = "D-0123456789"
    ledger = world.server.ledger(OWN)
    ledger.record("decision.record", body=b"why we chose it", meta={"subject": decision})
    [message] = receiver.wait_for(1)
    assert message.headers["content-type"] == "application/json"
    sent = json.loads(message.body)
    page = f"http://flowloom.test/ui/projects/{OWN}/decisions/{decision}"
    if target == "slack":
        [actions] = [b for b in sent["blocks"] if b["type"] == "actions"]
        assert [e["url"] for e in actions["elements"]] == [page]
        assert all(set(e) == {"type", "text", "url"} for e in actions["elements"])
    else:
        [card] = sent["attachments"]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        actions = card["content"]["actions"]
        assert [(a["type"], a["url"]) for a in actions] == [("Action.OpenUrl", page)]
    assert b"why we chose it" not in message.body  # chat never gets a body
    entries = ledger.store.entries(OWN, 0, ledger.size())
    assert not any(token.encode() in e.envelope for e in entries)
    with _api(env) as api:
        refused = api.post(
            "/webhooks",
            json={"url": url, "kinds": ["*"], "format": target, "include_bodies": True},
        )
    assert refused.status_code == 400


def test_approval_request_emails_follow_each_persons_preference(
    env: tuple[World, str], inbox: tuple[_Inbox, int]
) -> None:
    world, base = env
    mail, _ = inbox
    prefs = f"{base}/api/v1/projects/{OWN}/notifications/me"
    approver = world.headers("approver")
    assert httpx.get(prefs, headers=approver).json()["approval_requests"] is False
    on = httpx.put(prefs, json={"approval_requests": True}, headers=approver)
    assert on.status_code == 200 and on.json() == {
        "approval_requests": True,
        "digest": False,
        "email": "approver@example.org",
    }
    decision = "D-00000000ab"
    ledger = world.server.ledger(OWN)
    ledger.record("decision.record", body=b"the hidden rationale", meta={"subject": decision})
    [message] = wait_until(lambda: list(mail.messages), what="the approval request email")
    assert message["To"] == "approver@example.org"
    assert message["From"] == "flowloom@example.org"
    assert decision in message["Subject"]
    text = message.get_content()
    assert f"http://flowloom.test/ui/projects/{OWN}/decisions/{decision}" in text
    assert "the hidden rationale" not in text
    off = httpx.put(prefs, json={"approval_requests": False}, headers=approver)
    assert off.json()["approval_requests"] is False
    kinds = [
        e.kind
        for e in ledger.store.entries(OWN, 0, ledger.size())
        if b"approval requests for" in e.envelope or b"mailto:" in e.envelope
    ]
    assert kinds == ["auth.webhook_created", "auth.webhook_deleted"]


def test_the_digest_email_counts_what_was_recorded(
    env: tuple[World, str], inbox: tuple[_Inbox, int]
) -> None:
    world, base = env
    mail, _ = inbox
    prefs = f"{base}/api/v1/projects/{OWN}/notifications/me"
    auditor = world.headers("auditor")
    on = httpx.put(prefs, json={"digest": True}, headers=auditor)
    assert on.status_code == 200 and on.json()["digest"] is True
    assert on.json()["approval_requests"] is False
    ledger = world.server.ledger(OWN)
    ledger.record("decision.record", body=b"secret reasons", meta={"subject": "D-00000000cd"})
    ledger.record("agent.prompt", body=b"a private prompt", meta={"session": "s"})

    def digests() -> str:
        mine = [m for m in mail.messages if m["To"] == "auditor@example.org"]
        assert all(m["Subject"] == f"[FlowLoom] Digest for {OWN}" for m in mine)
        text = "\n".join(m.get_content() for m in mine)  # one digest, or two periods'
        return text if "D-00000000cd" in text and "agent.prompt: 1" in text else ""

    text = wait_until(digests, what="digests naming the decision and the prompt")
    assert "decision.record: 1" in text
    assert "secret reasons" not in text and "a private prompt" not in text
    assert httpx.put(prefs, json={"digest": False}, headers=auditor).json()["digest"] is False
