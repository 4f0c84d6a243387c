"""Helpers for the web tests: a server with a project full of realistic events, and a
signed-in browser-like client (real HTTP form posts, the session cookie, CSRF fields).

`populate` adds to a tests.server.support World: passwords for the approver and the
auditor, a conversation (prompt, reply, file writes with diffs), a decision recorded by
the developer, a commit link, gateway exchanges with usage and cost. `populate_gateway`
adds what a gateway sharing the server's database leaves in its access tables: virtual
keys, budgets and spend on both projects, and a stored provider key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from flowloom.decisions.records import DecisionBook
from flowloom.gateway.access.records import Usage, VirtualKey
from flowloom.gateway.access.service import Access, AccessSettings
from tests.server.support import OWN, World

PASSWORD = "correct horse battery staple"
FILE = "src/limits.py"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Populated:
    decision: str
    prompt: int
    write: int


def populate(world: World, project: str = OWN) -> Populated:
    directory = world.server.directory
    for role in ("approver", "auditor", "developer", "owner"):
        directory.set_password(world.user_ids[role], PASSWORD)
    ledger = world.server.ledger(project)
    developer = {"type": "human", "id": world.user_ids["developer"], "name": "Developer Person"}
    ledger.record(
        "session.start",
        meta={"session": "s-1", "actor": developer, "refs": {"tool": "claude-code"}},
    )
    prompt = ledger.record(
        "agent.prompt",
        body=b"Please add a token bucket rate limiter to limits.py",
        meta={"session": "s-1", "actor": developer},
    ).index
    reply = ledger.record(
        "agent.response",
        body=b"I added a token bucket: capacity 10, refill 1 per second.",
        meta={"session": "s-1", "actor": {"type": "agent", "id": "claude", "name": "Claude"}},
    ).index
    create = (
        "--- /dev/null\n+++ b/src/limits.py\n@@ -0,0 +1,3 @@\n+import time\n+\n+CAPACITY = 10\n"
    )
    write = ledger.record(
        "artifact.write",
        body=create.encode(),
        meta={
            "session": "s-1",
            "subject": FILE,
            "refs": {"path": FILE, "change": "create", "tool": "Write"},
        },
    ).index
    modify = (
        "--- a/src/limits.py\n+++ b/src/limits.py\n@@ -1,3 +1,4 @@\n"
        " import time\n \n-CAPACITY = 10\n+CAPACITY = 20\n+REFILL_PER_SECOND = 1\n"
    )
    ledger.record(
        "artifact.write",
        body=modify.encode(),
        meta={"session": "s-2", "subject": FILE, "refs": {"path": FILE, "change": "modify"}},
    )
    decision = DecisionBook(ledger).record(
        title="Use a token bucket for rate limits",
        requested_by=world.user_ids["developer"],
        context="Bursty clients overload the API.",
        options=["token bucket", "fixed window"],
        choice="token bucket",
        rationale="Smooths bursts and is simple.",
        session="s-1",
        files=[FILE],
        prompt_entry=prompt,
        response_entry=reply,
        actor=developer,
    )
    ledger.record(
        "commit.link",
        meta={
            "subject": "a" * 40,
            "refs": {"decision": decision.id, "session": "s-1", "entry": write},
        },
    )
    ledger.record("commit.link", meta={"subject": "b" * 40, "refs": {"override": "hotfix"}})
    for provider, model, key, tokens, cost in (
        ("anthropic", "claude-sonnet", "vk-alpha", 1200, 0.42),
        ("anthropic", "claude-haiku", "vk-alpha", 800, 0.05),
        ("openai", "gpt-4o", "vk-beta", 1500, 0.61),
    ):
        ledger.record(
            "gateway.exchange",
            meta={
                "session": "s-1",
                "refs": {
                    "provider": provider,
                    "model": model,
                    "key": key,
                    "tokens": tokens,
                    "cost_usd": cost,
                },
            },
        )
    ledger.checkpoint()
    return Populated(decision.id, prompt, write)


# A model at $0.50 per input token, so spend is easy to read in the budget tables.
GATEWAY_PRICES = {"testco": {"claude-half": {"input": 500_000.0, "output": 500_000.0}}}
PROVIDER_SECRET = "sk-ant-api03-NEVER-SHOWN-ON-A-PAGE"


@dataclass(frozen=True)
class GatewayData:
    ci: VirtualKey
    """alpha, owned by the project: $5/month, $4.50 spent (near the limit)."""
    laptop: VirtualKey
    """alpha, owned by a user: $1/day, $1.50 spent (exhausted), expires in 30 days."""
    revoked: VirtualKey
    """alpha, revoked: never shown."""
    other: VirtualKey
    """beta: $7/month, $3 spent; never shown on alpha's pages."""
    secrets: tuple[str, ...]
    """Every virtual key secret and the provider key: no page may hold any of them."""


def populate_gateway(world: World) -> GatewayData:
    """Keys, budgets and spend as `flowloom gateway` leaves them in the server's database."""
    access = Access(
        world.server.settings.database,
        master_key_loader=world.server.keys.master_key,
        prices=GATEWAY_PRICES,
        settings=AccessSettings(background=False),
    )
    try:
        access.set_project_budget(OWN, 20, period="month")
        ci, ci_secret = access.create_key(
            name="ci-pipeline",
            project=OWN,
            models=["claude-*", "gpt-4o"],
            rpm=60,
            tpm=200_000,
            budget_usd=5,
            period="month",
        )
        laptop, laptop_secret = access.create_key(
            name="ada-laptop",
            owner_user="ada@example.org",
            project=OWN,
            budget_usd=1,
            period="day",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        revoked, revoked_secret = access.create_key(name="retired-key", project=OWN, budget_usd=9)
        other, other_secret = access.create_key(name="beta-only-key", project="beta", budget_usd=7)
        for key, tokens in ((ci, 9), (laptop, 3), (other, 6)):
            admitted = access.admit(key, model="claude-half", est_tokens=0)
            access.settle(admitted, provider="testco", model="claude-half", usage=Usage(tokens, 0))
        access.revoke_key(revoked.id)
        access.set_provider_key("anthropic", PROVIDER_SECRET)
    finally:
        access.close()
    return GatewayData(
        ci=ci,
        laptop=laptop,
        revoked=revoked,
        other=other,
        secrets=(ci_secret, laptop_secret, revoked_secret, other_secret, PROVIDER_SECRET),
    )


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no csrf_token field"
    return found.group(1)


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in through the login form, as a browser does: GET the form, POST it."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    return client.post(
        "/ui/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_of(form.text),
            "next": "/ui",
        },
        follow_redirects=True,
    )
