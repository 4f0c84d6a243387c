#!/usr/bin/env python3
"""Durable appends per second through the group-commit log writer, SQLite and PostgreSQL.

What it measures: entries acknowledged as durable per second, from the first submit to
the last acknowledgement, with entries already prepared (canonical envelope, leaf hash,
sealed body) so the figure is the writer and the store; one extra figure puts
``Ledger.prepare`` back in the loop. Modes:

- ``1 writer``: one thread pipelining through ``LogWriter.submit`` with up to
  ``--window`` (1,000) entries in flight;
- ``8 writers``: eight threads each pipelining the same way;
- ``8 blocking``: eight threads each calling ``LogWriter.append`` one entry at a time
  (the latency-bound case: at most eight entries per transaction).

Each append writes the entry, its Merkle nodes and its body, in one transaction per batch.

The peer, measured in the same run on the same database with the same durability
(SQLite WAL + synchronous=FULL; PostgreSQL's default synchronous_commit=on): the naive
way to keep an event log, one autocommit ``INSERT`` of envelope + body per event, no
tree, no batching, with 1 and with 8 threads. It is the baseline a team would write by
hand; the ratio says what group commit buys (or what the tree costs).

After the run every log is checkpointed, verified with ``verify_store`` and checked for
contiguous indices; those results are printed too. Goals: SQLite >= 20,000/s,
PostgreSQL >= 5,000/s.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import (  # noqa: E402
    BatchStats,
    BenchDB,
    NaivePeer,
    body_for,
    build_ledger,
    check_log,
    emit,
    machine,
    note,
    open_bench_db,
    prepare_entries,
    prepare_one,
    ratio,
    split,
    store_kinds,
)
from flowloom.ledger.log import Ledger  # noqa: E402
from flowloom.ledger.writer import Ack  # noqa: E402
from flowloom.store.interface import PendingEntry  # noqa: E402

GOALS = {"sqlite": 20_000, "postgres": 5_000}
CPU_NOTE = (
    "this process's CPU time per entry (all threads) and the rate it allows when the "
    "machine is shared: a busy machine stretches wall time, not CPU time; on PostgreSQL "
    "the server's CPU is not included"
)


def pipelined(ledger: Ledger, entries: list[PendingEntry], window: int) -> list[int]:
    """Submit everything, keeping at most `window` unacknowledged; return the indices."""
    in_flight: collections.deque[Future[Ack]] = collections.deque()
    indices: list[int] = []
    submit = ledger.writer.submit
    for entry in entries:
        in_flight.append(submit(entry))
        if len(in_flight) >= window:
            indices.append(in_flight.popleft().result().index)
    while in_flight:
        indices.append(in_flight.popleft().result().index)
    return indices


def prepare_floor(count: int) -> float:
    """Entries/s of the least any prepare must do per event, in memory, one thread: a
    timestamp, a sorted compact JSON dump of the envelope, a fresh salt, the body's
    commitment and the leaf hash (hashlib and json's C encoder; no validation)."""
    import hashlib
    import json
    import os
    from datetime import UTC, datetime

    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    actor = {"type": "agent", "id": "bench", "name": "flowloom-bench"}
    bodies = [body_for(i) for i in range(count)]
    started = time.perf_counter()
    for i in range(count):
        salt = os.urandom(32)
        digest = "sha256:" + hashlib.sha256(salt + bodies[i]).hexdigest()
        envelope = {
            "v": 1,
            "kind": "agent.prompt",
            "ts": datetime.now(UTC).isoformat(),
            "project": "p",
            "actor": actor,
            "session": "bench-session",
            "subject": f"src/module_{i % 97}.py",
            "body": digest,
        }
        hashlib.sha256(b"\x00" + dumps(envelope).encode()).digest()
    return count / (time.perf_counter() - started)


def pipelined_with_prepare(ledger: Ledger, count: int, window: int) -> list[int]:
    """Like `pipelined`, but each entry is prepared (validated, sealed) in the loop."""
    in_flight: collections.deque[Future[Ack]] = collections.deque()
    indices: list[int] = []
    for i in range(count):
        in_flight.append(ledger.writer.submit(prepare_one(ledger, i)))
        if len(in_flight) >= window:
            indices.append(in_flight.popleft().result().index)
    while in_flight:
        indices.append(in_flight.popleft().result().index)
    return indices


def blocking(ledger: Ledger, entries: list[PendingEntry]) -> list[int]:
    return [ledger.writer.append(entry).index for entry in entries]


def run_threads(
    target: Callable[..., Any], args_per_thread: list[tuple[Any, ...]]
) -> tuple[float, list[Any], float]:
    """Run one thread per argument tuple, start together; (elapsed seconds, results,
    this process's CPU seconds meanwhile: every thread, the writer's too)."""
    results: list[Any] = [None] * len(args_per_thread)
    errors: list[BaseException] = []
    gate = threading.Barrier(len(args_per_thread) + 1)

    def body(slot: int, args: tuple[Any, ...]) -> None:
        gate.wait()
        try:
            results[slot] = target(*args)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=body, args=(slot, args))
        for slot, args in enumerate(args_per_thread)
    ]
    for thread in threads:
        thread.start()
    gate.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if errors:
        raise errors[0]
    return elapsed, results, cpu


def naive_rate(peer: NaivePeer, entries: list[PendingEntry], threads: int) -> float:
    """Entries per second for the naive peer with `threads` threads sharing `entries`."""

    def work(chunk: list[PendingEntry]) -> None:
        insert, close = peer.inserter()
        try:
            for entry in chunk:
                insert(entry)
        finally:
            close()

    elapsed, _, _ = run_threads(work, [(chunk,) for chunk in split(entries, threads)])
    return len(entries) / elapsed


def goal_fields(mode: str, rate: float, goal: int) -> dict[str, Any]:
    if mode == "blocking":
        return {
            "goal": None,
            "goal_met": None,
            "goal_note": "latency-bound (at most 8 entries per transaction);"
            f" the >= {goal}/s goal applies to the pipelined figures",
        }
    return {"goal": f">= {goal}", "goal_met": rate >= goal}


def bench_store(kind: str, args: argparse.Namespace) -> None:
    bench: BenchDB = open_bench_db(kind, workdir=args.dir, keep=args.keep)
    try:
        _bench_store(bench, args)
    finally:
        bench.close()


def _bench_store(bench: BenchDB, args: argparse.Namespace) -> None:
    kind, n, window = bench.kind, args.n, args.window
    goal = GOALS[kind]
    peer = NaivePeer(bench)
    peer_n = min(n, args.peer_n)
    context = {"store": kind, "n": n, "window": window, **machine()}
    checks: list[dict[str, object]] = []

    def median_rate(runs: list[float]) -> float:
        return statistics.median(runs)

    modes = [("pipelined", 1), ("pipelined", 8), ("blocking", 8)]
    for mode, writers in modes:
        log = f"append-{mode}-{writers}"
        stats = BatchStats()
        ledger = build_ledger(bench, log, observer=stats)
        rates: list[float] = []
        peer_rates: list[float] = []
        all_indices: list[int] = []
        appended = 0
        cpus: list[float] = []
        for rep in range(args.repeat):
            note(f"{kind}: {mode} x{writers}, run {rep + 1}/{args.repeat}: preparing {n}")
            entries = prepare_entries(ledger, n, start=appended)
            stats.reset()
            if mode == "pipelined":
                chunks = split(entries, writers)
                elapsed, results, cpu = run_threads(
                    pipelined, [(ledger, chunk, window) for chunk in chunks]
                )
            else:
                elapsed, results, cpu = run_threads(
                    blocking, [(ledger, c) for c in split(entries, writers)]
                )
            cpus.append(cpu / n)
            for got in results:
                all_indices.extend(got)
            appended += n
            rates.append(n / elapsed)
            # The peer right after, so both see the same machine weather.
            peer_entries = entries[:peer_n]
            peer_rates.append(naive_rate(peer, peer_entries, writers))
        ledger.writer.close()
        rate, peer_value = median_rate(rates), median_rate(peer_rates)
        emit(
            f"append_throughput_{mode}_{writers}w",
            rate,
            "entries/s",
            **context,
            writers=writers,
            mode=mode,
            runs=rates,
            cpu_us_per_entry=1e6 * statistics.median(cpus),
            cpu_bound_entries_per_s=1 / statistics.median(cpus),
            cpu_note=CPU_NOTE,
            batching=stats.summary(),
            peer="naive autocommit INSERT per event, no tree, same database and durability,"
            f" {writers} thread(s)",
            peer_value=peer_value,
            peer_n=peer_n,
            ratio=ratio(rate, peer_value),
            ratio_def="ledger / peer",
            **goal_fields(mode, rate, goal),
        )
        contiguous_acks = sorted(all_indices) == list(range(appended))
        check = check_log(bench, ledger, appended)
        check["acks_contiguous"] = contiguous_acks
        checks.append(check)

    # One more figure: Ledger.prepare in the loop (1 pipelining writer).
    log = "append-prepare-1"
    stats = BatchStats()
    ledger = build_ledger(bench, log, observer=stats)
    note(f"{kind}: pipelined x1 with prepare in the loop")
    elapsed, results, cpu = run_threads(pipelined_with_prepare, [(ledger, n, window)])
    ledger.writer.close()
    rate = n / elapsed
    peer_entries = prepare_entries(ledger, peer_n, start=n)
    peer_value = naive_rate(peer, peer_entries, 1)
    floor = max(prepare_floor(n) for _ in range(3))
    emit(
        "append_throughput_pipelined_1w_with_prepare",
        rate,
        "entries/s",
        **context,
        writers=1,
        mode="pipelined, Ledger.prepare in the timed loop",
        cpu_us_per_entry=1e6 * cpu / n,
        cpu_bound_entries_per_s=n / cpu,
        cpu_note=CPU_NOTE,
        batching=stats.summary(),
        peer="naive autocommit INSERT per event (envelope prepared outside the timing), 1 thread",
        peer_value=peer_value,
        peer_n=peer_n,
        ratio=ratio(rate, peer_value),
        ratio_def="ledger / peer",
        floor_entries_per_s=floor,
        floor="json dump + salt + body and leaf sha256 per event in memory, no validation, "
        "no store (the best of 3)",
        goal=f">= {goal}",
        goal_met=rate >= goal,
    )
    check = check_log(bench, ledger, n)
    check["acks_contiguous"] = sorted(results[0]) == list(range(n))
    checks.append(check)

    ok = all(
        c["verified"] and c["contiguous"] and c["acks_contiguous"] and c["size_as_expected"]
        for c in checks
    )
    emit("append_logs_verified", ok, "bool", store=kind, logs=checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=20_000, help="entries per mode (default 20000)")
    parser.add_argument("--peer-n", type=int, default=3_000, help="entries for the naive peer")
    parser.add_argument("--window", type=int, default=1_000, help="in-flight entries per writer")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the median is shown")
    parser.add_argument("--quick", action="store_true", help="small sizes (n=3000, peer 400)")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    if args.quick:
        args.n, args.peer_n = 3_000, 400
    for kind in store_kinds(args.store):
        bench_store(kind, args)


if __name__ == "__main__":
    main()
