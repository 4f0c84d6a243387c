"""The fault test: the receiver is down for a while and the FlowLoom server process is
killed and started again; once the receiver is back, every message arrives, in ledger
order, none lost, each verified with the standardwebhooks library."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.server.support import (
    LOOPBACK_ALLOW,
    OWN,
    free_port,
    make_world,
    serve_process,
    stop,
    wait_ready,
)
from tests.webhooks.receiver import Receiver, wait_until

pytestmark = pytest.mark.slow

_ENV = {
    "FLOWLOOM_WEBHOOKS_POLL_S": "0.1",
    "FLOWLOOM_SERVER_OUTBOUND_ALLOW": ",".join(LOOPBACK_ALLOW),  # the receiver's address
    "FLOWLOOM_WEBHOOKS_BACKOFF_BASE_S": "0.1",
    "FLOWLOOM_WEBHOOKS_BACKOFF_MAX_S": "0.5",
    "FLOWLOOM_WEBHOOKS_MAX_ATTEMPTS": "10000",
    "FLOWLOOM_WEBHOOKS_LEASE_S": "2",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def _drained(process: subprocess.Popen[bytes], log: list[bytes]) -> subprocess.Popen[bytes]:
    """Read the server's output as it comes (a full pipe would stall it), kept for the
    failure message."""

    def read(stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed by stop() at the end
            log.extend(iter(stream.readline, b""))

    for stream in (process.stdout, process.stderr):
        if stream is not None:
            threading.Thread(target=read, args=(stream,), daemon=True).start()
    return process


def _append(base: str, key: str, count: int, start: int) -> list[int]:
    indices = []
    for n in range(start, start + count):
        answer = httpx.post(
            f"{base}/api/v1/projects/{OWN}/ledger/entries",
            json={"kind": "agent.prompt", "body": f"prompt {n}", "session": "s-1"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        indices.append(answer.json()["index"])
    return indices


def test_receiver_down_and_server_killed_nothing_lost_in_order(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _ENV.items():
        monkeypatch.setenv(name, value)
    database, home = str(tmp_path / "server.db"), tmp_path / "home"
    world = make_world(database, home)
    key = world.keys["owner"]
    world.close()
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    receiver.stop()  # the receiver is down from the start
    log: list[bytes] = []
    process = _drained(serve_process(database, home, port), log)
    try:
        wait_ready(base, process, timeout=180)
        made = httpx.post(
            f"{base}/api/v1/projects/{OWN}/webhooks",
            json={"url": receiver.url, "kinds": ["agent.prompt"]},
            headers=headers,
            timeout=30,
        ).json()
        deliveries = f"{base}/api/v1/projects/{OWN}/webhooks/{made['id']}/deliveries"
        indices = _append(base, key, 4, 0)

        def failing() -> Any:
            found = httpx.get(deliveries, headers=headers, timeout=30).json()
            return len(found) == 4 and any(d["attempts"] >= 2 for d in found)

        wait_until(failing, what="failed attempts while the receiver is down")
        os.kill(process.pid, signal.SIGKILL)  # no clean shutdown
        process.wait(timeout=30)
        stop(process)
        process = _drained(serve_process(database, home, port), log)
        wait_ready(base, process, timeout=180)
        indices += _append(base, key, 3, 4)
        receiver.start()  # back, on the same port
        receiver.wait_for(7)

        def all_delivered() -> Any:
            found = httpx.get(deliveries, headers=headers, timeout=30).json()
            return len(found) == 7 and all(d["status"] == "delivered" for d in found)

        wait_until(all_delivered, what="every delivery delivered")
    except BaseException:
        print(b"".join(log[-200:]).decode(errors="replace"))  # the server's side of it
        raise
    finally:
        stop(process)
    print(b"".join(log[-40:]).decode(errors="replace"))  # shown by pytest -s or on failure
    payloads = receiver.verified(made["secret"])
    first_seen: list[int] = []
    for payload in payloads:  # at-least-once: a repeat may follow a kill mid-send
        if payload["data"]["index"] not in first_seen:
            first_seen.append(payload["data"]["index"])
    assert first_seen == indices
