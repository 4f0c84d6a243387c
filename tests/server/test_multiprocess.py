"""Several `flowloom serve` processes over one PostgreSQL database, and crashes.

Two real server processes share a database and a key home; threads append to both at
once (single events and batches). Afterwards the log must have contiguous indices, each
acknowledged index must hold the envelope that was sent, the store must verify as one
tree, and both processes' checkpoints must belong to that tree. A server SIGKILLed in
the middle of appends must not lose an acknowledged event.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from flowloom.ledger import merkle
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.note import Verifier
from flowloom.ledger.verify import verify_store
from flowloom.services import open_store
from tests.server.support import OWN, free_port, make_world, serve_process, stop, wait_ready

L = f"/api/v1/projects/{OWN}/ledger"


@dataclass
class Acks:
    """What the servers acknowledged: index → (leaf hash hex, subject sent)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_index: dict[int, tuple[str, str]] = field(default_factory=dict)
    duplicates: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, index: int, leaf: str, subject: str) -> None:
        with self.lock:
            if index in self.by_index:
                self.duplicates.append(index)
            self.by_index[index] = (leaf, subject)


def _hammer(
    base: str, key: str, name: str, acks: Acks, stop_at: float, *, tolerate: bool = False
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    n = 0
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while time.monotonic() < stop_at:
            try:
                if n % 3 == 2:
                    subjects = [f"{name}-{n}-{i}" for i in range(20)]
                    events = [
                        {"kind": "agent.tool", "subject": s, "body": s, "event_id": s}
                        for s in subjects
                    ]
                    response = client.post(f"{L}/batch", json={"events": events})
                    if response.status_code != 201:
                        acks.errors.append(f"{name}: batch {response.status_code} {response.text}")
                        return
                    body = response.json()
                    for index, leaf, subject in zip(
                        body["indices"], body["leaf_hashes"], subjects, strict=True
                    ):
                        acks.add(index, leaf, subject)
                else:
                    subject = f"{name}-{n}"
                    response = client.post(
                        f"{L}/entries",
                        json={"kind": "agent.prompt", "subject": subject, "event_id": subject},
                    )
                    if response.status_code != 201:
                        acks.errors.append(f"{name}: single {response.status_code} {response.text}")
                        return
                    acks.add(response.json()["index"], response.json()["leaf_hash"], subject)
            except httpx.HTTPError as exc:
                if not tolerate:
                    acks.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            n += 1


def _check_log(database: str, vkey: str, acks: Acks) -> int:
    store = open_store(database)
    try:
        size = store.size(OWN)
        rows = list(store.entries(OWN))
        assert [r.index for r in rows] == list(range(size)), "indices are not contiguous"
        assert not acks.duplicates, f"indices acknowledged twice: {acks.duplicates[:10]}"
        for index, (leaf, subject) in acks.by_index.items():
            envelope = rows[index].envelope
            assert merkle.leaf_hash(envelope).hex() == leaf, f"entry {index}: wrong leaf hash"
            assert json.loads(envelope)["subject"] == subject, f"entry {index}: wrong event"
        report = verify_store(store, OWN, Verifier.from_vkey(vkey))
        assert report.ok, [p.line() for p in report.problems[:5]]
        return size
    finally:
        store.close()


@pytest.mark.postgres
def test_two_server_processes_share_one_log(pg_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    world = make_world(pg_url, home)
    key = world.keys["service"]
    world.close()
    ports = [free_port(), free_port()]
    processes = [serve_process(pg_url, home, port) for port in ports]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, process in zip(bases, processes, strict=True):
            wait_ready(base, process)
        acks = Acks()
        stop_at = time.monotonic() + 4
        threads = [
            threading.Thread(target=_hammer, args=(base, key, f"p{p}t{t}", acks, stop_at))
            for p, base in enumerate(bases)
            for t in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not acks.errors, acks.errors[:5]
        assert len(acks.by_index) > 100

        headers = {"Authorization": f"Bearer {key}"}
        notes = [httpx.get(f"{b}{L}/checkpoint", headers=headers).text for b in bases]
        signed_now = httpx.post(f"{bases[0]}{L}/checkpoint", headers=headers).text
        vkeys = {httpx.get(f"{b}{L}/vkey", headers=headers).text.strip() for b in bases}
        assert len(vkeys) == 1, "the two processes sign with different keys"
        vkey = vkeys.pop()
    finally:
        for process in processes:
            stop(process)

    size = _check_log(pg_url, vkey, acks)
    verifier = Verifier.from_vkey(vkey)
    store = open_store(pg_url)
    try:
        for note in [*notes, signed_now]:
            checkpoint = open_checkpoint(note, verifier)
            assert checkpoint.size <= size
            root = merkle.root_at(checkpoint.size, lambda ids: store.nodes(OWN, ids))
            assert root == checkpoint.root, f"checkpoint {checkpoint.size} is of another tree"
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_during_appends_loses_no_acknowledged_event(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("pg_url") if kind == "postgres" else str(tmp_path / "s.db")
    home = tmp_path / "home"
    world = make_world(database, home)
    key = world.keys["service"]
    vkey = world.server.ledger(OWN).verifier.vkey
    world.close()
    port = free_port()
    process = serve_process(database, home, port)
    base = f"http://127.0.0.1:{port}"
    acks = Acks()
    try:
        wait_ready(base, process)
        stop_at = time.monotonic() + 30
        threads = [
            threading.Thread(
                target=_hammer, args=(base, key, f"t{t}", acks, stop_at), kwargs={"tolerate": True}
            )
            for t in range(4)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop(process)
    assert not acks.errors, acks.errors[:5]
    assert acks.by_index, "nothing was acknowledged before the kill"
    _check_log(database, vkey, acks)


def test_unreachable_postgres_at_startup_exits_4(tmp_path: Path) -> None:
    port = free_port()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    process = serve_process(dead, tmp_path / "home", port)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        stop(process)
    assert process.returncode == 4, err.decode()
    text = err.decode()
    assert "flowloom: error:" in text and "PostgreSQL" in text
    assert "Traceback" not in text
