"""Recording policies with a broken ledger: fail closed, or spool and replay."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from flowloom.events import outbox
from flowloom.gateway.mock import MockServer
from flowloom.gateway.recorder import Exchange, Recorder, _ReplaySink, exchange_record
from flowloom.ledger.keys import KeyStore
from flowloom.services import open_ledger
from flowloom.store.sqlite import SQLiteStore
from tests.gateway.core.conftest import mock_config
from tests.gateway.core.harness import RunningGateway, run_gateway

BODY = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(run: RunningGateway, n: int = 0) -> httpx.Response:
    body = {**BODY, "messages": [{"role": "user", "content": f"message {n}"}]}
    return httpx.post(run.url + "/v1/messages", json=body, headers={"x-api-key": "k"})


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def recorded_messages(run: RunningGateway) -> list[str]:
    return [e["_body"]["request"]["messages"][0]["content"] for e in run.events()]


def test_fail_closed_refuses_while_the_ledger_is_down(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    with run_gateway(tmp_path, provider=mock_config(mock_provider)) as run:
        assert call(run, 0).status_code == 200
        run.flush()
        run.ledgers.break_store()
        assert call(run, 1).status_code == 200  # served before anyone knew
        recorder = run.gateway.recorder
        wait_for(lambda: not recorder.available)
        refused = call(run, 2)
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "overloaded_error"
        assert "cannot record" in refused.json()["error"]["message"]
        assert httpx.get(run.url + "/readyz").status_code == 503
        run.ledgers.mend()
        wait_for(lambda: recorder.available)
        assert call(run, 3).status_code == 200
        # Nothing served went unrecorded; the refused request was never served.
        assert recorded_messages(run) == ["message 0", "message 1", "message 3"]


def test_spool_keeps_serving_and_replays_in_order(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    with run_gateway(tmp_path, provider=mock_config(mock_provider), mode="spool") as run:
        assert call(run, 0).status_code == 200
        run.flush()
        run.ledgers.break_store()
        for n in range(1, 6):
            assert call(run, n).status_code == 200
        recorder = run.gateway.recorder
        run.flush()
        assert recorder.status()["spooled"] >= 5
        spool = tmp_path / "outbox"
        assert outbox.waiting(str(spool))
        assert b"message 3" in b"".join(p.read_bytes() for p in spool.glob("*.json"))
        run.ledgers.mend()
        wait_for(lambda: not outbox.waiting(str(spool)))
        assert call(run, 6).status_code == 200
        assert recorded_messages(run) == [f"message {n}" for n in range(7)]


def test_a_full_spool_falls_back_to_fail_closed(tmp_path: Path, mock_provider: MockServer) -> None:
    with run_gateway(
        tmp_path, provider=mock_config(mock_provider), mode="spool", spool_max_bytes=100
    ) as run:
        run.ledgers.break_store()
        assert call(run, 1).status_code == 200
        recorder = run.gateway.recorder
        wait_for(lambda: not recorder.available)
        refused = call(run, 2)
        assert refused.status_code == 503
        assert "spool is full" in refused.json()["error"]["message"]
        run.ledgers.mend()
        wait_for(lambda: recorder.available)
        assert call(run, 3).status_code == 200
        assert recorded_messages(run) == ["message 1", "message 3"]


def test_secrets_are_redacted_before_recording() -> None:
    secret = "sk-ant-api03-" + "k7Q" * 30 + "AA"
    exchange = Exchange(
        endpoint="/v1/messages",
        format="anthropic",
        model="claude-x",
        stream=False,
        request=b'{"model":"claude-x","messages":[{"role":"user","content":"key '
        + secret.encode()
        + b'"}]}',
        response=b'{"type":"message","content":[],"usage":{"input_tokens":3,"output_tokens":4}}',
        status=200,
        started_at=time.time(),
        latency_s=0.01,
        session="s-1",
    )
    record = exchange_record(exchange, default_project="p", max_body_bytes=1 << 20)
    assert secret.encode() not in record.body
    assert b"[REDACTED:" in record.body
    assert record.meta["refs"]["input_tokens"] == 3
    assert record.meta["refs"]["output_tokens"] == 4
    assert record.meta["session"] == "s-1"


def test_a_replay_killed_after_its_append_does_not_record_twice(
    tmp_path: Path, sqlite_store: SQLiteStore
) -> None:
    """The worst moment of a replay: the ledger committed a spool file's exchanges and
    the journal line was never written. The next replay finds them (the sink's intents)
    instead of appending them again."""
    ledger = open_ledger(
        sqlite_store,
        KeyStore(tmp_path / "home"),
        log="gw",
        origin="flowloom.test/gw",
        actor={"type": "service", "id": "flowloom-gateway"},
        max_body_bytes=1 << 20,
    )
    spool = tmp_path / "outbox"
    recorder = Recorder(
        lambda project: ledger, default_project="gw", mode="spool", spool_path=spool
    )
    events = [
        {"kind": "gateway.exchange", "ts": "2026-01-02T03:04:05.000000Z", "meta": {}, "body": b}
        for b in ('{"n": 1}', '{"n": 2}')
    ]
    name = outbox.write(str(spool), "gateway", events, "2026-01-02T03:04:05.000000Z")
    first = _ReplaySink(recorder).record([outbox.read_file(str(spool), name)])  # then killed
    recorder._replay_spool()
    assert not outbox.waiting(str(spool))
    kinds = [e.kind for e in ledger.store.entries(ledger.log) if e.kind == "gateway.exchange"]
    assert len(kinds) == 2
    assert outbox.recorded_index(str(spool), name, 1) == first[0][1]
