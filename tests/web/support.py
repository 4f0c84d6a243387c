"""Helpers for the web tests: a server with a project full of realistic events, and a
signed-in browser-like client (real HTTP form posts, the session cookie, CSRF fields).

`populate` adds to a tests.server.support World: passwords for the approver and the
auditor, a conversation (prompt, reply, file writes with diffs), a decision recorded by
the developer, a commit link, gateway exchanges with usage and cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from flowloom.decisions.records import DecisionBook
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
