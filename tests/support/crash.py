"""Crash harness: a child appends and reports acknowledgements; SIGKILL at random.

Used by tests/ledger/test_crash.py (200+ trials) and bench/bench_crash.py (1,000+).
After each kill the parent reopens the store and checks: every acknowledged entry is
present with the acknowledged leaf hash, indices are contiguous, the log verifies, and
no checkpoint is ahead of the durable data.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_main(database: str, home: str, seed: int) -> None:
    """Append forever from 4 threads through the group-commit writer."""
    from flowloom.ledger.body import BodyCipher
    from flowloom.ledger.keys import KeyStore
    from flowloom.ledger.log import Ledger
    from flowloom.services import open_store

    store = open_store(database)
    keys = KeyStore(Path(home))
    signer, _ = keys.signer("flowloom.test/crash")
    ledger = Ledger(
        store,
        log="crash",
        origin=signer.name,
        signer=lambda: signer,
        cipher=lambda: BodyCipher(keys.master_key()),
        actor={"type": "agent", "id": "crash-child"},
        max_body_bytes=1 << 20,
    )
    out_lock = threading.Lock()

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def appender(t: int) -> None:
        rnd = random.Random(seed * 100 + t)
        n = 0
        while True:
            futures = []
            for _ in range(rnd.randint(1, 20)):
                n += 1
                body = os.urandom(rnd.randint(0, 200)) if rnd.random() < 0.7 else None
                prepared = ledger.prepare("agent.tool", body=body, meta={"subject": f"{t}-{n}"})
                futures.append(ledger.writer.submit(prepared.entry))
            for future in futures:
                ack = future.result()
                say(f"ack {ack.index} {ack.leaf_hash.hex()}")

    def checkpointer() -> None:
        while True:
            time.sleep(0.01)
            cp = ledger.checkpoint()
            say(f"cp {cp.size}")

    say("ready")
    threads = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(4)]
    threads.append(threading.Thread(target=checkpointer, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class TrialResult:
    acked: dict[int, str] = field(default_factory=dict)
    checkpoints: list[int] = field(default_factory=list)


def run_trial(database: str, home: Path, seed: int, max_delay: float) -> TrialResult:
    """Start a child, wait until it is appending, SIGKILL it after a random delay."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.support.crash import child_main; "
            "child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))",
            database,
            str(home),
            str(seed),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    result = TrialResult()
    rnd = random.Random(seed)
    deadline: float | None = None
    buffer = b""
    try:
        while True:
            timeout = 30.0 if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                if deadline is None:
                    raise RuntimeError("crash child did not start in 30 s")
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"crash child exited on its own: {err[-2000:]}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                _parse(line.decode(), result)
                if line == b"ready" and deadline is None:
                    deadline = time.monotonic() + rnd.uniform(0.0, max_delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            # Lines the child wrote before dying still count as acknowledged.
            rest = buffer + proc.stdout.read()
            for line in rest.split(b"\n"):
                if line:
                    _parse(line.decode(), result)
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    return result


def _parse(line: str, result: TrialResult) -> None:
    parts = line.split()
    if not parts:
        return
    if parts[0] == "ack" and len(parts) == 3 and len(parts[2]) == 64:
        result.acked[int(parts[1])] = parts[2]
    elif parts[0] == "cp" and len(parts) == 2:
        result.checkpoints.append(int(parts[1]))


def check_after_crash(database: str, home: Path, acked: dict[int, str]) -> int:
    """Reopen and check every promise; returns the durable size."""
    from flowloom.ledger.keys import KeyStore
    from flowloom.ledger.verify import verify_store
    from flowloom.services import open_store

    store = open_store(database)
    try:
        signer, _ = KeyStore(home).signer("flowloom.test/crash")
        # Read the checkpoint first: a killed PostgreSQL client's last COMMIT may still
        # land while we look, so the log can only grow after this point.
        latest = store.latest_checkpoint("crash")
        indices = [e.index for e in store.entries("crash")]
        size = len(indices)
        assert indices == list(range(size)), "indices are not contiguous"
        leaves = dict(enumerate(store.level("crash", 0, 0, size)))
        assert len(leaves) == size, "tree leaves and entries disagree"
        for index, leaf in acked.items():
            assert index < size, f"acknowledged entry {index} is gone (size {size})"
            assert leaves[index].hex() == leaf, f"acknowledged entry {index} changed"
        assert latest is None or latest.size <= size, "a checkpoint is ahead of the data"
        report = verify_store(store, "crash", signer.verifier(), decrypt=lambda b: None)
        assert report.ok, [p.line() for p in report.problems[:5]]
        return size
    finally:
        store.close()
