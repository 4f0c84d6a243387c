"""The pipeline's invariants, each checked at one place, with an in-memory upstream.

No sockets: the gateway's ASGI app is called directly and its upstream is a
MemoryUpstream with scripted replies; the recorder and its ledger are real (SQLite).

- every call that got a recording slot is recorded exactly once, whatever happened;
- the recording slot is given back (the recorder drains to zero);
- a call is admitted once however many targets it tries, and that admission is settled
  (served) or released (failed) once;
- a call falls back only while nothing has reached the caller;
- a slow database under the shared limits holds up only the call that needs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowloom.auth.schema import make_engine
from flowloom.gateway.access import Access
from flowloom.gateway.access.quota import Grant, LeaseAsk, SqlQuotaStore
from flowloom.gateway.access.records import Admission, Cost, Usage, VirtualKey
from flowloom.gateway.app import Gateway
from flowloom.gateway.ports import OpenAccess
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.routing.model import ModelInfo, RouteRequest, Target
from flowloom.gateway.upstream_memory import MemoryUpstream, Reply, SentRequest, sse
from tests.gateway.core.harness import make_gateway
from tests.gateway.processes import recorded_exchanges

BODY = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
START = (
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
    '"type":"message","role":"assistant","model":"claude-x","content":[],'
    '"usage":{"input_tokens":3,"output_tokens":0}}}'
)
DELTA = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"Hel"}}'
)
STOP = 'event: message_stop\ndata: {"type":"message_stop"}'


class TwoTargets:
    """Every call goes to provider "one", falling back to "two" (both Anthropic)."""

    def __init__(self, *, explode: bool = False) -> None:
        self.explode = explode
        self._configs = {
            name: ProviderConfig(name=name, kind="anthropic", base_url=f"http://{name}.invalid")
            for name in ("one", "two")
        }

    def plan(self, req: RouteRequest) -> list[Target]:
        if self.explode and req.model == "explode":
            raise RuntimeError("a bug in the router")
        return [Target(name, req.model, "anthropic", None, 0.0, 0.0) for name in self._configs]

    def outcome(self, target: Target, **_: Any) -> None:
        return None

    def should_fall_back(self, status: int | None, error_kind: str | None) -> bool:
        return status is None or status == 429 or status >= 500

    def reload_if_changed(self) -> bool:
        return False

    def providers(self) -> Mapping[str, ProviderConfig]:
        return self._configs

    def models(self) -> list[ModelInfo]:
        return []


class CountingAccess(OpenAccess):
    """Open access that counts admissions, settlements and releases."""

    def __init__(self) -> None:
        super().__init__()
        self.admitted = 0
        self.settled = 0
        self.released = 0

    async def admit_async(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission:
        self.admitted += 1
        return self.admit(vkey, model=model, est_tokens=est_tokens)

    def settle(self, admission: Admission, *, provider: str, model: str, usage: Usage) -> Cost:
        self.settled += 1
        return super().settle(admission, provider=provider, model=model, usage=usage)

    def release(self, admission: Admission) -> None:
        self.released += 1


async def post(
    gateway: Gateway,
    body: bytes | dict[str, Any],
    path: str = "/v1/messages",
    secret: str = "k",
) -> tuple[int, bytes]:
    """One POST straight into the ASGI app: (status, everything written as the body)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-api-key", secret.encode())],
    }
    given = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the caller stays
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append(message)

    await gateway(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if "body" in m)


def by_host(replies: dict[str, list[Reply]]) -> MemoryUpstream:
    """Each provider host answers its replies in turn (the last one repeats)."""

    def handler(request: SentRequest) -> Reply:
        host = request.url.split("/")[2].split(".")[0]
        queue = replies[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return MemoryUpstream(handler)


def ok() -> Reply:
    return Reply(chunks=[json.dumps(ANSWER).encode()])


def fail(status: int = 500) -> Reply:
    error = {"type": "error", "error": {"type": "api_error", "message": "down"}}
    return Reply(status=status, chunks=[json.dumps(error).encode()])


def run(tmp_path: Path, upstream: MemoryUpstream, calls: list[Any], **kwargs: Any) -> Any:
    """Start a gateway over `upstream`, make `calls` in order, stop it; (answers, gateway)."""
    access = kwargs.pop("access", None) or CountingAccess()
    gateway, ledgers = make_gateway(
        tmp_path, router=kwargs.pop("router", TwoTargets()), access=access, upstream=upstream
    )

    async def main() -> list[tuple[int, bytes]]:
        await gateway.startup()
        try:
            return [await post(gateway, body) for body in calls]
        finally:
            assert gateway.recorder.flush(60), "the recorder did not catch up"
            await gateway.shutdown()

    try:
        answers = asyncio.run(main())
    finally:
        ledgers.close()
    return answers, gateway, access


def test_every_call_is_recorded_exactly_once_whatever_happens(tmp_path: Path) -> None:
    upstream = by_host({"one": [ok(), fail(500), fail(500)], "two": [fail(503)]})
    calls: list[Any] = [
        BODY,  # served by "one"
        BODY,  # "one" fails, "two" fails: the last failure is the answer
        b"{not json",  # 400 before routing
        {**BODY, "model": "explode"},  # a bug in a stage: 500, still recorded
        {**BODY, "stream": True},  # both fail again, on a stream
    ]
    answers, gateway, _ = run(tmp_path, upstream, calls, router=TwoTargets(explode=True))
    assert [status for status, _ in answers] == [200, 503, 400, 500, 503]
    events = recorded_exchanges(tmp_path / "ledger.db", logs=["gw"])
    assert len(events) == len(calls)
    assert [e["refs"]["status"] for e in events] == [200, 503, 400, 500, 503]
    assert gateway.recorder.status()["queued"] == 0  # every slot given back


def test_a_call_is_admitted_once_and_its_admission_ends_once(tmp_path: Path) -> None:
    served = by_host({"one": [fail(500)], "two": [ok()]})
    _, _, access = run(tmp_path / "served", served, [BODY])
    assert (access.admitted, access.settled, access.released) == (1, 1, 0)
    assert [s.url for s in served.sent] == [
        "http://one.invalid/v1/messages",
        "http://two.invalid/v1/messages",
    ]
    failed = by_host({"one": [fail(500)], "two": [fail(502)]})
    _, _, access = run(tmp_path / "failed", failed, [BODY])
    assert (access.admitted, access.settled, access.released) == (1, 0, 1)


def test_a_call_falls_back_only_before_its_first_byte(tmp_path: Path) -> None:
    broken_early = by_host({"one": [Reply(**{**_stream(), "break_after": 0})], "two": [ok()]})
    answers, _, _ = run(tmp_path / "early", broken_early, [{**BODY, "stream": True}])
    assert answers[0][0] == 200 and b'"Hello"' in answers[0][1]
    assert len(broken_early.sent) == 2  # fell back: nothing had reached the caller

    broken_late = by_host({"one": [Reply(**{**_stream(), "break_after": 1})], "two": [ok()]})
    answers, _, access = run(tmp_path / "late", broken_late, [{**BODY, "stream": True}])
    status, raw = answers[0]
    assert status == 200 and b"message_start" in raw and b"event: error" in raw
    assert len(broken_late.sent) == 1  # no fallback after the first byte
    events = recorded_exchanges(tmp_path / "late" / "ledger.db", logs=["gw"])
    assert [e["refs"]["status"] for e in events] == [502]
    assert (access.admitted, access.released) == (1, 1)


def test_a_caller_going_away_stops_the_upstream_read(tmp_path: Path) -> None:
    slow = Reply(**{**_stream(), "gap_s": 0.05})
    upstream = MemoryUpstream(lambda request: slow)
    gateway, ledgers = make_gateway(
        tmp_path, router=TwoTargets(), access=CountingAccess(), upstream=upstream
    )

    async def main() -> list[dict[str, Any]]:
        await gateway.startup()
        messages: list[dict[str, Any]] = []
        body = json.dumps({**BODY, "stream": True}).encode()
        gone = asyncio.Event()
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            messages.append(message)
            if message.get("body"):
                gone.set()  # the caller leaves after its first event

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/messages",
            "query_string": b"",
            "headers": [(b"x-api-key", b"k")],
        }
        await gateway(scope, receive, send)
        assert gateway.recorder.flush(60)
        await gateway.shutdown()
        return messages

    try:
        asyncio.run(main())
    finally:
        ledgers.close()
    assert upstream.responses[0].closed and upstream.responses[0].released
    events = recorded_exchanges(tmp_path / "ledger.db", logs=["gw"])
    assert [e["refs"]["status"] for e in events] == [499]


def _stream() -> dict[str, Any]:
    reply = sse(START, DELTA, STOP)
    return {"chunks": reply.chunks, "headers": reply.headers}


class SlowQuota:
    """The shared-quota store over a database that takes `delay_s` per lease."""

    def __init__(self, store: SqlQuotaStore, delay_s: float) -> None:
        self._store = store
        self._delay_s = delay_s
        self.leases = 0

    def lease(self, ask: LeaseAsk) -> Grant:
        self.leases += 1
        time.sleep(self._delay_s)
        return self._store.lease(ask)


def test_a_slow_lease_transaction_does_not_stall_other_requests(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "access.db"))
    quota = SlowQuota(SqlQuotaStore(engine), delay_s=1.5)
    access = Access(engine, master_key_loader=lambda: b"m" * 32, quota=quota)
    _, limited = access.create_key(name="limited", project="gw", rpm=1000)
    _, free = access.create_key(name="free", project="gw")
    upstream = by_host({"one": [ok()], "two": [ok()]})
    gateway, ledgers = make_gateway(tmp_path, router=TwoTargets(), access=access, upstream=upstream)

    async def main() -> tuple[float, bool, int]:
        await gateway.startup()
        try:
            slow = asyncio.ensure_future(post(gateway, BODY, secret=limited))
            while quota.leases == 0:  # the limited call is in its lease transaction
                await asyncio.sleep(0.005)
            began = time.perf_counter()
            status, _ = await post(gateway, BODY, secret=free)
            took = time.perf_counter() - began
            pending = not slow.done()
            assert status == 200
            return took, pending, (await slow)[0]
        finally:
            assert gateway.recorder.flush(60)
            await gateway.shutdown()

    try:
        took, pending, slow_status = asyncio.run(main())
    finally:
        ledgers.close()
        access.close()
    assert pending, "the other request waited for the lease transaction"
    assert took < 1.0, f"the other request took {took:.2f} s behind a slow lease"
    assert slow_status == 200
