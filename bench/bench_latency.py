#!/usr/bin/env python3
"""Acknowledgement latency of one append: record one event and wait until it is durable.

What it measures: p50/p95/p99/max over `--n` sequential appends, each timed from the
call to the durable acknowledgement, on SQLite and PostgreSQL, through both doors:

- ``record``: ``Ledger.record`` (prepare + one transaction in the caller's thread, the
  path the CLI and git hooks use);
- ``group``: ``Ledger.prepare`` + ``LogWriter.append`` (the group-commit writer thread,
  the path the server uses).

Then the same under background load: another thread appending continuously through the
group-commit writer (pipelining, up to ``--load-window`` entries in flight), while the
foreground times its single appends through each door. The background rate achieved is
printed alongside.

The peer, in the same run, on the same database with the same durability (SQLite WAL +
synchronous=FULL; PostgreSQL synchronous_commit=on): one autocommit ``INSERT`` of a
prepared envelope + body, timed the same way, idle and with another thread doing the same
INSERTs continuously. Nothing durable can be faster than one commit, so the ratio is what
the ledger adds on top of the unavoidable fsync. Goal: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import (  # noqa: E402
    BenchDB,
    NaivePeer,
    build_ledger,
    check_log,
    emit,
    latency_summary_ms,
    machine,
    note,
    open_bench_db,
    prepare_entries,
    prepare_one,
    ratio,
    store_kinds,
)
from flowloom.ledger.log import Ledger  # noqa: E402
from flowloom.ledger.writer import Ack  # noqa: E402
from flowloom.store.interface import PendingEntry  # noqa: E402

GOAL_P99_MS = 20.0


class Background:
    """A thread appending continuously until stopped; counts what it appended."""

    def __init__(self, work: Callable[[Callable[[], bool]], int]) -> None:
        self._stop = threading.Event()
        self._work = work
        self.count = 0
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        self.count = self._work(self._stop.is_set)
        self.seconds = time.perf_counter() - started

    def __enter__(self) -> Background:
        self._thread.start()
        time.sleep(0.2)  # let it reach its steady state
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def ledger_load(ledger: Ledger, window: int, rate: float) -> Callable[[Callable[[], bool]], int]:
    def work(stopped: Callable[[], bool]) -> int:
        in_flight: collections.deque[Future[Ack]] = collections.deque()
        count = 0
        i = 10_000_000
        started = time.perf_counter()
        while not stopped():
            i += 1
            if rate > 0:  # paced: the i-th entry is due at started + i / rate
                wait = started + (i - 10_000_000) / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            in_flight.append(ledger.writer.submit(prepare_one(ledger, i)))
            if len(in_flight) >= window:
                in_flight.popleft().result()
                count += 1
        while in_flight:
            in_flight.popleft().result()
            count += 1
        return count

    return work


def peer_load(
    peer: NaivePeer, entries: list[PendingEntry], rate: float
) -> Callable[[Callable[[], bool]], int]:
    def work(stopped: Callable[[], bool]) -> int:
        insert, close = peer.inserter()
        count = 0
        started = time.perf_counter()
        try:
            while not stopped():
                if rate > 0:
                    wait = started + count / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                insert(entries[count % len(entries)])
                count += 1
        finally:
            close()
        return count

    return work


def time_each(count: int, one: Callable[[int], object]) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter
    for i in range(count):
        started = clock()
        one(i)
        samples.append(clock() - started)
    return samples


def bench_store(kind: str, args: argparse.Namespace) -> None:
    bench = open_bench_db(kind, workdir=args.dir, keep=args.keep)
    try:
        _bench_store(bench, args)
    finally:
        bench.close()


def _bench_store(bench: BenchDB, args: argparse.Namespace) -> None:
    kind, n = bench.kind, args.n
    peer = NaivePeer(bench)
    ledger = build_ledger(bench, "latency")
    context = {"store": kind, "n": n, **machine()}
    peer_entries = prepare_entries(ledger, min(n, 500), start=50_000_000)
    meta = {"session": "bench-session", "subject": "src/app.py"}
    body = b"x" * 256

    def record(i: int) -> None:
        ledger.record("agent.prompt", body=body, meta=meta)

    def group(i: int) -> None:
        ledger.writer.append(ledger.prepare("agent.prompt", body=body, meta=meta).entry)

    def naive_timed() -> list[float]:
        insert, close = peer.inserter()
        try:
            return time_each(n, lambda i: insert(peer_entries[i % len(peer_entries)]))
        finally:
            close()

    for load in ("idle", "loaded"):
        note(f"{kind}: peer, {load}")
        if load == "idle":
            peer_samples = naive_timed()
            peer_bg = None
        else:
            with Background(peer_load(peer, peer_entries, args.load_rate)) as peer_bg:
                peer_samples = naive_timed()
        peer_stats = latency_summary_ms(peer_samples)
        for door, one in (("record", record), ("group", group)):
            note(f"{kind}: {door}, {load}")
            # Warm up: connections, the writer thread, the cached frontier.
            for i in range(20):
                one(i)
            if load == "idle":
                samples = time_each(n, one)
                background: dict[str, object] = {}
            else:
                with Background(ledger_load(ledger, args.load_window, args.load_rate)) as bg:
                    samples = time_each(n, one)
                pace = f", paced at {args.load_rate:g}/s" if args.load_rate > 0 else ", unpaced"
                background = {
                    "background": f"1 thread pipelining through LogWriter.submit,"
                    f" window {args.load_window}{pace}",
                    "background_rate": bg.rate,
                }
            stats = latency_summary_ms(samples)
            emit(
                f"append_latency_p99_{door}_{load}",
                stats["p99_ms"],
                "ms",
                **context,
                door="Ledger.record (caller's thread)"
                if door == "record"
                else "Ledger.prepare + LogWriter.append (group-commit thread)",
                load=load,
                **stats,
                **background,
                peer="naive autocommit INSERT of one event"
                + (", another thread INSERTing continuously" if load == "loaded" else "")
                + (f" at {args.load_rate:g}/s" if load == "loaded" and args.load_rate else ""),
                peer_p50_ms=peer_stats["p50_ms"],
                peer_p99_ms=peer_stats["p99_ms"],
                peer_max_ms=peer_stats["max_ms"],
                peer_background_rate=peer_bg.rate if peer_bg is not None else None,
                ratio=ratio(stats["p99_ms"], peer_stats["p99_ms"]),
                ratio_def="ledger p99 / peer p99",
                goal=f"p99 <= {GOAL_P99_MS:g} ms",
                goal_met=stats["p99_ms"] <= GOAL_P99_MS,
            )
    ledger.writer.close()
    check = check_log(bench, ledger)
    emit(
        "latency_log_verified",
        bool(check["verified"] and check["contiguous"]),
        "bool",
        store=kind,
        log=check,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=1_000, help="appends timed per figure")
    parser.add_argument("--load-window", type=int, default=100, help="background in-flight")
    parser.add_argument(
        "--load-rate", type=float, default=0.0, help="background entries/s (0: as fast as it can)"
    )
    parser.add_argument("--quick", action="store_true", help="n=100")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    if args.quick:
        args.n = 100
    for kind in store_kinds(args.store):
        bench_store(kind, args)


if __name__ == "__main__":
    main()
