#!/usr/bin/env python3
"""Proof generation latency: inclusion and consistency proofs at N entries.

What it measures: p50/p99 latency over `--samples` random indices (and random old
sizes) in a log of `--n` entries (default 100,000; ``--n 1000000`` by hand) of

- ``merkle.inclusion_proof(index, size, lookup)`` with the store's node lookup;
- ``merkle.consistency_proof(old, size, lookup)`` with the store's node lookup;
- ``Ledger.prove(index)`` + ``Receipt.text()``: the full receipt a caller gets
  (finds the latest checkpoint, reads the size, builds and formats the tlog-proof);
- ``Ledger.consistency(old)``: the consistency proof against the latest checkpoint.

The peer, in the same run: the same merkle functions over an in-memory dict holding
the nodes those proofs need (loaded beforehand). That is the floor, no storage at all,
so the ratio is what reading nodes from the store costs. A sample of the proofs is
checked against the signed root. Goal: p99 <= 1 ms.

The log is built like bench_verify.py builds it (``--db`` reuses its SQLite file).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import (  # noqa: E402
    emit,
    latency_summary_ms,
    machine,
    note,
    open_bench_db,
    ratio,
)
from bench.bench_verify import LOG, build_log  # noqa: E402
from flowloom.ledger import merkle  # noqa: E402
from flowloom.store.interface import NodeId, NodeLookup  # noqa: E402

GOAL_P99_MS = 1.0


def time_each(items: Sequence[int], one: Callable[[int], object]) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter
    for item in items:
        started = clock()
        one(item)
        samples.append(clock() - started)
    return samples


def dict_lookup(nodes: Mapping[NodeId, bytes]) -> NodeLookup:
    def lookup(ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        return {node: nodes[node] for node in ids if node in nodes}

    return lookup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=100_000, help="entries in the log")
    parser.add_argument("--samples", type=int, default=2_000, help="proofs timed per figure")
    parser.add_argument("--batch", type=int, default=5_000, help="entries per build batch")
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median p99 is shown")
    parser.add_argument("--quick", action="store_true", help="n=20000, 1000 samples")
    parser.add_argument("--db", default=None, help="SQLite file to build in (kept) or reuse")
    parser.add_argument("--dir", type=Path, default=None, help="where temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if args.quick:
        args.n, args.samples = 20_000, 1_000
    bench = open_bench_db(args.store, workdir=args.dir, db=args.db, keep=args.keep)
    try:
        ledger = build_log(bench, args.n, batch=args.batch, checkpoint_every=args.checkpoint_every)
        store = bench.store
        checkpoint = ledger.checkpoint_at(None)
        size, root = checkpoint.size, checkpoint.root
        rnd = random.Random(args.seed)
        indices = [rnd.randrange(size) for _ in range(args.samples)]
        olds = [rnd.randrange(1, size) for _ in range(args.samples)]
        context = {
            "store": bench.kind,
            "n": size,
            "samples": args.samples,
            "repeat": args.repeat,
            "checkpoints": len(store.checkpoints(LOG)),
            **machine(),
        }

        # The floor's nodes: exactly those the sampled proofs need, read beforehand.
        needed: set[NodeId] = set()
        for index in indices:
            for start, end in merkle.inclusion_proof_nodes(index, size):
                needed.update(merkle.perfect_nodes(start, end))
        for old in olds:
            for start, end in merkle.consistency_proof_nodes(old, size):
                needed.update(merkle.perfect_nodes(start, end))
        memory = dict_lookup(store.nodes(LOG, sorted(needed)))
        stored = ledger.lookup()

        # Correctness of what is being timed, on a sample.
        leaves = store.nodes(LOG, [(0, i) for i in indices[:50]])
        for index in indices[:50]:
            proof = merkle.inclusion_proof(index, size, stored)
            merkle.verify_inclusion(leaves[(0, index)], index, size, proof, root)
        for old in olds[:50]:
            proof = merkle.consistency_proof(old, size, stored)
            merkle.verify_consistency(old, size, proof, merkle.root_at(old, stored), root)

        # Warm up: every sampled proof once, so the pages it reads are in the OS cache
        # (a cold 1 GB file would measure the disk, not the proof code).
        for index in indices:
            merkle.inclusion_proof(index, size, stored)
        for old in olds:
            merkle.consistency_proof(old, size, stored)

        note(f"{bench.kind}: timing proofs over {size} entries, {args.repeat} run(s)")

        def timed(items: list[int], one: Callable[[int], object]) -> dict[str, float]:
            """Latency summary of the run with the median p99 among `--repeat` runs."""
            runs = [latency_summary_ms(time_each(items, one)) for _ in range(args.repeat)]
            return sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2]

        peer_inclusion = timed(indices, lambda i: merkle.inclusion_proof(i, size, memory))
        peer_consistency = timed(olds, lambda o: merkle.consistency_proof(o, size, memory))
        figures: list[tuple[str, str, Callable[[int], object], list[int], dict[str, float]]] = [
            (
                "proof_inclusion_p99",
                "merkle.inclusion_proof with the store's node lookup",
                lambda i: merkle.inclusion_proof(i, size, stored),
                indices,
                peer_inclusion,
            ),
            (
                "proof_consistency_p99",
                "merkle.consistency_proof with the store's node lookup",
                lambda o: merkle.consistency_proof(o, size, stored),
                olds,
                peer_consistency,
            ),
            (
                "proof_receipt_p99",
                "Ledger.prove(index) + Receipt.text(): latest checkpoint, size, proof, format",
                lambda i: ledger.prove(i).text(),
                indices,
                peer_inclusion,
            ),
            (
                "proof_ledger_consistency_p99",
                "Ledger.consistency(old) against the latest checkpoint",
                lambda o: ledger.consistency(o),
                olds,
                peer_consistency,
            ),
        ]
        for metric, what, one, items, peer in figures:
            stats = timed(items, one)
            emit(
                metric,
                stats["p99_ms"],
                "ms",
                **context,
                what=what,
                **stats,
                peer="the same merkle proof over an in-memory dict of the needed nodes (the floor)",
                peer_p50_ms=peer["p50_ms"],
                peer_p99_ms=peer["p99_ms"],
                ratio=ratio(stats["p99_ms"], peer["p99_ms"]),
                ratio_def="store p99 / in-memory p99",
                goal=f"p99 <= {GOAL_P99_MS:g} ms",
                goal_met=stats["p99_ms"] <= GOAL_P99_MS,
            )
    finally:
        bench.close()


if __name__ == "__main__":
    main()
