#!/usr/bin/env python3
"""Web page server time with a large project: p95 per page at 100,000 events (goal 200 ms).

What it measures: wall time of GET requests for each main page of the web interface
(signed in with the session cookie, as a browser is), over loopback HTTP to an
in-process `flowloom serve` app under uvicorn, for a project whose log holds ``--n``
events (default 100,000: prompts, replies, file writes with diffs, decisions, commit
links, gateway exchanges), bulk-loaded with ``LogWriter.append_many``. Each page is
requested once cold (its first request fills the per-process caches: the project
summary, a compliance assessment) and then ``--repeat`` times; the figure is the p95
of the warm requests, with the cold time reported beside it.

The peer, in the same run over the same connection: ``GET /healthz`` (the HTTP floor)
and the JSON API's page of 50 entries (``GET .../ledger/entries?limit=50``), the API
equivalent of the timeline. ``ratio`` = page p95 / healthz p95.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from bench._common import emit, machine, note, percentile, ratio  # noqa: E402
from flowloom.decisions.records import Decision, record_meta  # noqa: E402
from flowloom.server.app import create_app  # noqa: E402
from flowloom.server.build import build_server  # noqa: E402
from flowloom.server.settings import ServerSettings  # noqa: E402
from flowloom.server.state import ServerState  # noqa: E402
from flowloom.store.interface import PendingEntry  # noqa: E402

PROJECT = "bench"
PASSWORD = "bench password for the web"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def load(server: ServerState, n: int, user_id: str) -> tuple[str, int]:
    """Append `n` events in batches; returns (a decision id, a prompt's index)."""
    ledger = server.ledger(PROJECT)
    human = {"type": "human", "id": user_id, "name": "Bench Person"}
    agent = {"type": "agent", "id": "claude", "name": "Claude"}
    batch: list[PendingEntry] = []
    decision_id = ""
    prompt_index = 0
    start = ledger.size()
    for i in range(n):
        index = start + i
        session = f"s-{i // 50}"
        slot = i % 50
        if slot == 0:
            entry = ledger.prepare(
                "session.start",
                meta={"session": session, "actor": human, "refs": {"tool": "bench"}},
            ).entry
        elif slot % 10 == 1:
            entry = ledger.prepare(
                "agent.prompt",
                body=f"prompt {i}: please change module {i % 97}".encode(),
                meta={"session": session, "actor": human},
            ).entry
            prompt_index = index
        elif slot % 10 == 2:
            entry = ledger.prepare(
                "agent.response",
                body=f"reply {i}: changed module {i % 97}".encode(),
                meta={"session": session, "actor": agent},
            ).entry
        elif slot % 10 == 3:
            path = f"src/module_{i % 97}.py"
            diff = f"--- a/{path}\n+++ b/{path}\n@@ -1,0 +1,1 @@\n+VALUE = {i}\n"
            entry = ledger.prepare(
                "artifact.write",
                body=diff.encode(),
                meta={
                    "session": session,
                    "subject": path,
                    "refs": {"path": path, "change": "modify"},
                },
            ).entry
        elif slot == 44:
            decision = Decision(
                id=f"D-{i:010x}",
                title=f"Decision {i}",
                requested_by=user_id,
                session=session,
                files=(f"src/module_{i % 97}.py",),
                prompt_entry=index - 3 if index >= 3 else None,
            )
            entry = ledger.prepare("decision.record", meta=record_meta(decision, actor=human)).entry
            decision_id = decision.id
        elif slot == 45 and decision_id:
            entry = ledger.prepare(
                "commit.link",
                meta={
                    "subject": f"{i:040x}",
                    "refs": {"decision": decision_id, "session": session},
                },
            ).entry
        elif slot % 10 == 7:
            entry = ledger.prepare(
                "gateway.exchange",
                meta={
                    "session": session,
                    "refs": {
                        "provider": ("anthropic", "openai", "gemini")[i % 3],
                        "model": f"model-{i % 5}",
                        "key": f"vk-{i % 4}",
                        "tokens": 500 + i % 1000,
                        "cost_usd": round(0.001 * (i % 50), 4),
                    },
                },
            ).entry
        else:
            entry = ledger.prepare(
                "agent.tool",
                meta={"session": session, "actor": agent, "refs": {"tool": "Read", "n": i}},
            ).entry
        batch.append(entry)
        if len(batch) == 2000:
            ledger.writer.append_many(batch)
            batch = []
    if batch:
        ledger.writer.append_many(batch)
    ledger.checkpoint()
    return decision_id, prompt_index


@contextmanager
def serving(server: ServerState) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    runner = uvicorn.Server(uvicorn.Config(create_app(server), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not runner.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=30)
        sock.close()


def sign_in(client: httpx.Client, email: str) -> None:
    form = client.get("/ui/login").text
    token = _CSRF.search(form)
    assert token is not None
    done = client.post(
        "/ui/login", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert done.status_code == 303, done.text[:300]


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, list[float]]:
    """(cold seconds, warm seconds per request)."""
    started = time.perf_counter()
    first = client.get(path)
    cold = time.perf_counter() - started
    if first.status_code != 200:
        raise SystemExit(f"{path} answered {first.status_code}: {first.text[:500]}")
    warm = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        warm.append(time.perf_counter() - started)
        assert response.status_code == 200
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="events in the project")
    parser.add_argument("--repeat", type=int, default=20, help="warm requests per page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowloom-bench-web-") as tmp:
        settings = ServerSettings(database=str(Path(tmp) / "web.db"), home=Path(tmp) / "home")
        server = build_server(settings)
        try:
            directory = server.directory
            directory.create_project(PROJECT)
            user = directory.create_user("auditor@example.org", "Bench Auditor", password=PASSWORD)
            directory.grant(user.id, PROJECT, "auditor")
            note(f"loading {args.n} events")
            started = time.perf_counter()
            decision, prompt = load(server, args.n, user.id)
            note(f"loaded in {time.perf_counter() - started:.1f} s")
            base = f"/ui/projects/{PROJECT}"
            pages = {
                "overview": base,
                "timeline": base + "/timeline",
                "timeline_kind": base + "/timeline?kind=decision.record",
                "timeline_actor": base + "/timeline?actor=Claude&q=module",
                "timeline_older": base + f"/timeline?before={args.n // 2}",
                "entry": base + f"/entries/{prompt}",
                "decisions": base + "/decisions",
                "decision": base + f"/decisions/{decision}",
                "why": base + "/why?path=src/module_5.py",
                "ledger": base + "/ledger",
                "usage": base + "/usage",
                "compliance": base + "/compliance",
                "compliance_framework": base + "/compliance/sox",
                "members": base + "/members",
            }
            with serving(server) as url, httpx.Client(base_url=url, timeout=600) as client:
                sign_in(client, "auditor@example.org")
                _, healthz = timed(client, "/healthz", args.repeat)
                _, api = timed(
                    client,
                    f"/api/v1/projects/{PROJECT}/ledger/entries"
                    f"?limit=50&start={max(0, args.n - 50)}",
                    args.repeat,
                )
                peer = percentile(healthz, 95) * 1000
                api_p95 = percentile(api, 95) * 1000
                emit("web_peer_healthz_p95_ms", peer, "ms", events=args.n)
                emit("web_peer_api_entries_p95_ms", api_p95, "ms", events=args.n)
                worst = 0.0
                for name, path in pages.items():
                    cold, warm = timed(client, path, args.repeat)
                    p95 = percentile(warm, 95) * 1000
                    worst = max(worst, p95)
                    emit(
                        "web_page_p95_ms",
                        p95,
                        "ms",
                        page=name,
                        p50_ms=percentile(warm, 50) * 1000,
                        cold_ms=cold * 1000,
                        events=args.n,
                        peer="healthz",
                        peer_p95_ms=peer,
                        ratio=ratio(p95, peer),
                        api_entries_p95_ms=api_p95,
                    )
                emit(
                    "web_pages_worst_p95_ms",
                    worst,
                    "ms",
                    goal_ms=200,
                    meets_goal=worst <= 200,
                    events=args.n,
                    repeat=args.repeat,
                    machine=json.dumps(machine()),
                )
        finally:
            server.close()


if __name__ == "__main__":
    main()
