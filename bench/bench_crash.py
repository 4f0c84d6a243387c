#!/usr/bin/env python3
"""Crash safety: SIGKILL a busy appender at random moments, then check every promise.

What it measures: runs the crash harness of tests/support/crash.py for `--trials`
trials (default 50; ``--trials 1000`` by hand). Each trial starts a child that appends
from 4 threads through the group-commit writer and signs a checkpoint every 10 ms,
kills it with SIGKILL after a random delay, reopens the store and checks that every
acknowledged entry is present with its acknowledged leaf hash, indices are contiguous,
the tree leaves match the entries, no checkpoint is ahead of the data and the whole log
verifies. Trials share one database, so each trial also checks everything earlier
trials were promised; since that check reads the whole log, a long run grows
quadratically, and ``--fresh-every K`` starts a new database every K trials (1,000
trials on one database take about 35 minutes here, with ``--fresh-every 250`` about 12).

It prints the trials run, the acknowledged entries, the failures (must be 0) and the
elapsed time. There is no peer: the figure is a count of broken promises, and the only
acceptable value is zero on any machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import BenchDB, emit, machine, note, open_bench_db  # noqa: E402
from tests.support.crash import check_after_crash, run_trial  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="kills (default 50)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--max-delay", type=float, default=None, help="longest run before kill")
    parser.add_argument("--seed", type=int, default=0, help="first trial's seed")
    parser.add_argument(
        "--fresh-every", type=int, default=0, help="new database every K trials (0: never)"
    )
    parser.add_argument("--quick", action="store_true", help="10 trials")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if args.quick:
        args.trials = 10
    max_delay = args.max_delay or (0.15 if args.store == "sqlite" else 0.3)

    workdir = Path(tempfile.mkdtemp(prefix="flowloom-crash-", dir=args.dir))
    home = workdir / "home"
    pgs: list[BenchDB] = []

    def fresh_database(generation: int) -> str:
        if args.store == "sqlite":
            return str(workdir / f"ledger-{generation}.db")
        pg = open_bench_db("postgres", workdir=args.dir, keep=args.keep)
        pg.store.close()  # only its fresh schema is wanted; children open their own
        pgs.append(pg)
        return pg.target

    database = fresh_database(0)
    acked: dict[int, str] = {}
    sizes: list[int] = []
    all_sizes: list[list[int]] = [sizes]
    acked_total = 0
    failures: list[dict[str, object]] = []
    checkpoints_seen = 0
    started = time.perf_counter()
    try:
        for trial in range(args.seed, args.seed + args.trials):
            done = trial - args.seed
            if args.fresh_every and done and done % args.fresh_every == 0:
                acked_total += len(acked)
                acked = {}
                sizes = []
                all_sizes.append(sizes)
                database = fresh_database(done // args.fresh_every)
            try:
                result = run_trial(database, home, seed=trial, max_delay=max_delay)
                acked.update(result.acked)
                checkpoints_seen += len(result.checkpoints)
                sizes.append(check_after_crash(database, home, acked))
            except Exception as exc:  # a broken promise or a harness error: count, go on
                failures.append(
                    {
                        "trial": trial,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                        "where": traceback.format_exc(limit=3)[-800:],
                    }
                )
                note(f"trial {trial} FAILED: {exc}")
            if (done + 1) % 25 == 0:
                elapsed = time.perf_counter() - started
                total = acked_total + len(acked)
                note(f"{done + 1}/{args.trials} trials, {total} acked, {elapsed:.0f} s")
    finally:
        elapsed = time.perf_counter() - started
        for pg in pgs:
            pg.close()
        if args.keep:
            note(f"keeping {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    monotonic = all(s == sorted(s) for s in all_sizes)
    emit(
        "crash_failures",
        len(failures),
        "trials",
        store=args.store,
        trials=args.trials,
        acknowledged_entries=acked_total + len(acked),
        databases=len(all_sizes),
        fresh_every=args.fresh_every or None,
        final_sizes=[s[-1] if s else 0 for s in all_sizes],
        sizes_monotonic=monotonic,
        checkpoints_signed_seen=checkpoints_seen,
        max_delay_s=max_delay,
        elapsed_s=elapsed,
        seconds_per_trial=elapsed / max(1, args.trials),
        failure_details=failures[:5],
        peer=None,
        goal="0 failures",
        goal_met=not failures and monotonic,
        **machine(),
    )


if __name__ == "__main__":
    main()
