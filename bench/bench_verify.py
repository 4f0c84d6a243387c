#!/usr/bin/env python3
"""Full verification rate: ``verify_store`` over a whole log, with and without bodies.

What it measures: the wall time of ``verify_store`` on a log of `--n` entries (default
100,000; ``--n 1000000`` by hand), each with a 256-byte body, signed checkpoints every
`--checkpoint-every` entries. Verification reads every envelope, recomputes every leaf
hash, rebuilds the tree, compares its roots with every signed checkpoint (opening each
signature), and with bodies re-hashes every body against its commitment. Printed as
seconds and entries/s; the goal is 3 s at 1,000,000 entries, extrapolated linearly
(and marked so) when n is smaller.

The peer, in the same run: the floor, ``hashlib.sha256`` over the same envelopes
(``0x00 || envelope``) already in memory, plus the same body commitments for the
bodies figure; no reading, no tree, no checks. Nothing that verifies every entry can
beat it, so the ratio is the overhead above pure hashing. A second context figure times
reading the envelopes out of the store with the driver alone (the I/O floor).

The log is built through ``LogWriter.append_many`` in big batches (fast). With ``--db``
the SQLite file is kept (its keys beside it in ``<db>.home``) and reused by later runs,
and by bench_proofs.py.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import (  # noqa: E402
    BenchDB,
    build_ledger,
    emit,
    machine,
    note,
    open_bench_db,
    prepare_entries,
    ratio,
)
from flowloom.ledger.log import Ledger  # noqa: E402
from flowloom.ledger.verify import verify_store  # noqa: E402

GOAL_SECONDS_AT_1M = 3.0
LOG = "bench"


def build_log(
    bench: BenchDB, n: int, *, batch: int, checkpoint_every: int, body: bool = True
) -> Ledger:
    """Bring the log up to `n` entries (no-op if it already has them); checkpoint it."""
    ledger = build_ledger(bench, LOG, max_batch=batch)
    size = bench.store.size(LOG)
    if size >= n:
        note(f"{bench.kind}: reusing a log of {size} entries")
        if (latest := bench.store.latest_checkpoint(LOG)) is None or latest.size < size:
            ledger.checkpoint()
        return ledger
    note(f"{bench.kind}: building {n - size} entries (already {size})")
    started = time.perf_counter()
    next_checkpoint = (size // checkpoint_every + 1) * checkpoint_every
    while size < n:
        count = min(batch, n - size)
        ledger.writer.append_many(prepare_entries(ledger, count, start=size, body=body))
        size += count
        if size >= next_checkpoint or size == n:
            ledger.checkpoint()
            next_checkpoint += checkpoint_every
            rate = size / (time.perf_counter() - started)
            note(f"{bench.kind}: {size}/{n} entries ({rate:,.0f}/s)")
    emit(
        "verify_build_rate",
        n / (time.perf_counter() - started),
        "entries/s",
        store=bench.kind,
        n=n,
        how=f"Ledger.prepare + LogWriter.append_many, batches of {batch}",
    )
    return ledger


def read_floor(bench: BenchDB) -> float:
    """Seconds to read every envelope with the bare driver (no objects, no hashing)."""
    started = time.perf_counter()
    if bench.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(bench.target)
        try:
            cursor = conn.execute(
                "SELECT idx, envelope, kind FROM entries WHERE log = ? ORDER BY idx", (LOG,)
            )
            while cursor.fetchmany(4096):
                pass
        finally:
            conn.close()
    else:
        import psycopg

        # A server-side cursor, as a streaming reader would use.
        with (
            psycopg.connect(bench.target) as pg_conn,
            pg_conn.transaction(),
            pg_conn.cursor("floor") as pg_cursor,
        ):
            pg_cursor.execute(
                "SELECT idx, envelope, kind FROM entries WHERE log = %s ORDER BY idx", (LOG,)
            )
            while pg_cursor.fetchmany(4096):
                pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=100_000, help="entries in the log")
    parser.add_argument("--batch", type=int, default=5_000, help="entries per build batch")
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is shown")
    parser.add_argument("--quick", action="store_true", help="n=20000")
    parser.add_argument("--db", default=None, help="SQLite file to build in (kept) or reuse")
    parser.add_argument("--dir", type=Path, default=None, help="where temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if args.quick:
        args.n = 20_000
    bench = open_bench_db(args.store, workdir=args.dir, db=args.db, keep=args.keep)
    try:
        run(bench, args)
    finally:
        bench.close()


def run(bench: BenchDB, args: argparse.Namespace) -> None:
    ledger = build_log(bench, args.n, batch=args.batch, checkpoint_every=args.checkpoint_every)
    store = bench.store
    size = store.size(LOG)
    checkpoints = len(store.checkpoints(LOG))
    note(f"{bench.kind}: loading the envelopes and bodies for the hashlib floor")
    envelopes = [e.envelope for e in store.entries(LOG)]
    bodies = [(b.salt, b.content) for b in store.bodies(LOG)]
    extrapolated = size != 1_000_000
    context = {
        "store": bench.kind,
        "n": size,
        "checkpoints": checkpoints,
        "bodies": len(bodies),
        **machine(),
    }
    read_s = min(read_floor(bench) for _ in range(args.repeat))
    for with_bodies in (True, False):
        timings: list[float] = []
        report = None
        for rep in range(args.repeat):
            note(f"{bench.kind}: verify_store, bodies={with_bodies}, run {rep + 1}")
            started = time.perf_counter()
            report = verify_store(store, LOG, ledger.verifier, check_bodies=with_bodies)
            timings.append(time.perf_counter() - started)
        assert report is not None
        seconds = min(timings)
        floor = hashlib_floor(envelopes, bodies if with_bodies else [], args.repeat)
        at_1m = seconds * 1_000_000 / size
        emit(
            "verify_seconds_with_bodies" if with_bodies else "verify_seconds_without_bodies",
            seconds,
            "s",
            **context,
            entries_per_s=size / seconds,
            runs=timings,
            verified=report.ok,
            problems=len(report.problems),
            bodies_checked=report.bodies_checked,
            checkpoints_checked=report.checkpoints_checked,
            seconds_at_1m=at_1m,
            seconds_at_1m_extrapolated=extrapolated,
            peer="hashlib.sha256 over the same envelopes in memory"
            + (" and the same body commitments" if with_bodies else "")
            + " (the floor)",
            peer_seconds=floor,
            peer_entries_per_s=size / floor,
            read_floor_seconds=read_s,
            read_floor="bare driver SELECT of every envelope, no objects, no hashing",
            ratio=ratio(seconds, floor),
            ratio_def="verify_store seconds / hashlib seconds",
            goal=f"<= {GOAL_SECONDS_AT_1M:g} s at 1,000,000 entries",
            goal_met=at_1m <= GOAL_SECONDS_AT_1M,
        )


def hashlib_floor(envelopes: list[bytes], bodies: list[tuple[bytes, bytes]], repeat: int) -> float:
    best = float("inf")
    sha256 = hashlib.sha256
    for _ in range(repeat):
        started = time.perf_counter()
        for envelope in envelopes:
            sha256(b"\x00" + envelope).digest()
        for salt, content in bodies:
            sha256(salt + content).hexdigest()
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":
    main()
