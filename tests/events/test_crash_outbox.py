"""Crash trials for the one event path: SIGKILL the hook and the drainer at random.

Each trial starts a writer that behaves like a hook (events made durable with
`write_durably`, one outbox file per run, "ok" printed only once it returned) and the
real detached drainer (`python -m flowloom drain`), and kills both at random points.
After the trials a last drainer runs to the end, and the ledger must hold every event
whose write returned success exactly once, in the order written, with the time it
happened, and with its follow-up (each event says a secret was redacted from it, so
its `redaction.apply` must be there exactly once too). Worlds run side by side so 200+
trials stay within a few minutes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORLDS = 8
TRIALS_PER_WORLD = 26  # 208 trials in all
PARALLEL = 4

_WRITER = r"""
import sys, time
from flowloom.events.outbox import write_durably
spool, world = sys.argv[1], sys.argv[2]
n = int(sys.argv[3])
for _ in range(int(sys.argv[4])):
    n += 1
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(now))) + ".%06dZ" % int((now % 1) * 1e6)
    event = {"kind": "agent.prompt", "ts": ts, "body": f"prompt {n}",
             "meta": {"subject": f"{world}-{n:06d}", "session": world},
             "redactions": {"aws_access_key": 1}}
    write_durably(spool, "claude-code", [event], ts)
    sys.stdout.write(f"ok {n} {ts}\n")
    sys.stdout.flush()
time.sleep(3600)  # done: wait to be killed, like the others
"""


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLOWLOOM_DATABASE=str(root / "ledger.db"),
        FLOWLOOM_HOME=str(root / "home"),
        FLOWLOOM_PROJECT="crash",
        XDG_STATE_HOME=str(root / "state"),
        HOME=str(root),
    )
    env.pop("FLOWLOOM_SERVER", None)
    return env


def _drainer(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowloom", "drain", str(root / "spool"), str(root)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)


def _world(root: Path, seed: int) -> tuple[list[tuple[int, str]], int]:
    """Run the trials of one world; the acknowledged (n, ts) and the trials run."""
    rnd = random.Random(seed)
    root.mkdir(parents=True)
    env = _env(root)
    acked: list[tuple[int, str]] = []
    last = 0
    for _ in range(TRIALS_PER_WORLD):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root / "spool"), root.name, str(last), "40"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        journal = root / "spool" / "journal"
        before = journal.stat().st_size if journal.exists() else 0
        drainer = _drainer(root, env)
        # The writer dies while writing. The drainer spends its first second or two
        # importing the ledger: a quarter of the time it dies then, otherwise once it
        # has started recording, where a kill between a file's commit and its journal
        # line is what could record an event twice.
        time.sleep(rnd.uniform(0.1, 1.0))
        _kill(writer)
        if rnd.random() < 0.25:
            time.sleep(rnd.uniform(0.0, 1.0))
        else:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and drainer.poll() is None:
                if journal.exists() and journal.stat().st_size > before:
                    break
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 0.4))
        _kill(drainer)
        assert writer.stdout is not None
        out = writer.stdout.read().decode()
        for line in out.splitlines(keepends=True):
            if line.endswith("\n") and line.startswith("ok "):
                _, n, ts = line.split()
                acked.append((int(n), ts))
                last = int(n)
        if acked:
            last = max(last, acked[-1][0])
        last += 1000  # a killed write may have reached the disk without its "ok"
    final = _drainer(root, env)
    assert final.wait(timeout=600) == 0
    return acked, TRIALS_PER_WORLD


def _recorded(root: Path) -> list[tuple[str, str]]:
    """(subject, ts) of the world's agent.prompt entries, in log order; each must have
    exactly one redaction.apply naming its entry, and no notice may name another."""
    from flowloom.services import open_store

    store = open_store(str(root / "ledger.db"), read_only=True, create=False)
    try:
        out = []
        prompts = []
        for entry in store.entries("crash", kind="agent.prompt"):
            envelope = json.loads(entry.envelope)
            out.append((str(envelope.get("subject")), str(envelope.get("ts"))))
            prompts.append(entry.index)
        notices = [
            json.loads(e.envelope)["refs"]["entry"]
            for e in store.entries("crash", kind="redaction.apply")
        ]
        assert sorted(notices) == prompts, f"{root.name}: a follow-up lost or repeated"
        return out
    finally:
        store.close()


def test_killed_hooks_and_drainers_lose_and_repeat_nothing(tmp_path: Path) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {
            pool.submit(_world, tmp_path / f"w{i}", 1000 + i): tmp_path / f"w{i}"
            for i in range(WORLDS)
        }
        results = {root: future.result() for future, root in futures.items()}
    trials = sum(count for _, count in results.values())
    assert trials >= 200
    total = 0
    for root, (acked, _) in results.items():
        recorded = _recorded(root)
        subjects = [s for s, _ in recorded]
        # exactly once: no event recorded twice (acknowledged or not)
        assert len(subjects) == len(set(subjects)), f"{root.name}: an event recorded twice"
        position = {s: i for i, s in enumerate(subjects)}
        times = dict(recorded)
        previous = -1
        for n, ts in acked:
            subject = f"{root.name}-{n:06d}"
            assert subject in position, f"{root.name}: acknowledged event {n} is lost"
            assert times[subject] == ts, f"{root.name}: event {n} lost its time"
            assert position[subject] > previous, f"{root.name}: event {n} out of order"
            previous = position[subject]
        total += len(acked)
    assert total > WORLDS  # the trials did write (and kill) something
