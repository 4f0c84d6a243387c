#!/usr/bin/env python3
"""Search latency of the project memory (`Memory.search`), p50/p95, SQLite and PostgreSQL.

What it measures: wall time of one ``Memory.search(query, all_branches=True)`` call —
the up-to-date check against the ledger, the full-text query (SQLite FTS5 + bm25 +
snippet(); PostgreSQL tsvector/GIN + ts_rank + ts_headline) and building the hits —
over a fixed query mix, at each size in ``--sizes`` (observations in the index).

The corpus is synthetic: pseudo-words drawn from a Zipf distribution (s = 1.07) over a
30,000-word vocabulary, 6–24 words per document; 70 % observations, 15 % prompts, 10 %
decisions (a tenth with files), 5 % replies; 40 authors; timestamps over a year. It is
bulk-loaded straight into the index tables (``memory_docs``; SQLite's FTS5 triggers or
PostgreSQL's generated tsvector do the indexing; the PostgreSQL GIN index is built after
the load), not projected from ledger events one by one: the figure is search, not load.
SQLite's FTS5 index is merged into one segment (``'optimize'``) after the load, as
``flowloom memory rebuild`` leaves it, and its WAL checkpointed. The load time is
printed too. Before timing, half as many queries of the same mix (another seed) warm
the page cache: the figure is a running server's, or a CLI's on a machine that has
searched before.

Query mix (``--queries`` per size, same seed for every store): 35 % one mid-frequency
word, 25 % two words (all must match), 10 % a rare word, 10 % a frequent word (the worst
case: many matches to rank), 10 % a word with filters (kind, author, time range), 10 %
a natural-language question (stopwords dropped, words ANDed, OR fallback).

The peer, same run, same database: the naive way, ``SELECT ... WHERE body LIKE
'%word%' [AND ...] LIMIT n`` with no index and no ranking, on the same queries (at most
``--peer-queries`` of them: at a million rows each takes seconds).

Goal: p95 ≤ 20 ms at 1,000,000 observations on SQLite.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import (  # noqa: E402
    build_ledger,
    emit,
    latency_summary_ms,
    machine,
    note,
    open_bench_db,
    ratio,
    store_kinds,
)
from flowloom.memory.service import Memory  # noqa: E402

LOG = "bench"
GOAL_P95_MS = 20.0
GOAL_SIZE = 1_000_000
VOCABULARY = 30_000
KINDS = ["observation"] * 14 + ["prompt"] * 3 + ["decision"] * 2 + ["reply"]
AUTHORS = [f"dev{i:02d}" for i in range(40)]
QUESTION_WORDS = ["why", "did", "we", "the", "how", "is", "what", "for"]
YEAR_START = 1_735_689_600  # 2025-01-01T00:00:00Z


def vocabulary(seed: int) -> list[str]:
    """Pronounceable pseudo-words (so the stemmer sees word-like text), most common first."""
    rnd = random.Random(seed)
    onsets = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "st", "pr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        syllables = rnd.choice((2, 2, 3, 3, 4))
        words.setdefault("".join(rnd.choice(onsets) + rnd.choice(vowels) for _ in range(syllables)))
    return list(words)


def ts_text(seconds: float) -> str:
    whole = int(seconds)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        + f".{int((seconds - whole) * 1e6):06d}Z"
    )


def documents(n: int, words: list[str], seed: int) -> Any:
    """Rows for memory_docs: (log, kind, ref, title, body, author, ts, entry, commit, session)."""
    rnd = random.Random(seed)
    weights = list(itertools.accumulate(1.0 / (rank**1.07) for rank in range(1, len(words) + 1)))
    step = 365 * 86400 / max(n, 1)
    shas = [f"{rnd.getrandbits(160):040x}" for _ in range(200)]
    batch = 10_000
    for start in range(0, n, batch):
        count = min(batch, n - start)
        lengths = [rnd.randint(6, 24) for _ in range(count)]
        drawn = rnd.choices(words, cum_weights=weights, k=sum(lengths))
        authors = [rnd.randrange(len(AUTHORS)) for _ in range(count)]
        offset = 0
        rows = []
        for j, length in enumerate(lengths):
            i = start + j
            body = " ".join(drawn[offset : offset + length])
            offset += length
            kind = KINDS[i % len(KINDS)]
            title = (
                " ".join(drawn[offset - length : offset - length + 4]) if kind == "decision" else ""
            )
            if kind == "observation":
                title = f"entity{i % 50_000}"
            rows.append(
                (
                    LOG,
                    kind,
                    title if kind in ("observation",) else str(i),
                    title,
                    body,
                    AUTHORS[authors[j]],
                    ts_text(YEAR_START + i * step),
                    i,
                    shas[i % len(shas)],
                    f"session-{i // 50}",
                )
            )
        yield rows


def load_sqlite(path: str, n: int, words: list[str], seed: int) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # a bulk load for a benchmark, not the ledger
    conn.execute("BEGIN")
    for rows in documents(n, words, seed):
        cur = conn.executemany(
            "INSERT INTO memory_docs (log, kind, ref, title, body, author, ts, entry, commit_sha,"
            " session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        del cur
        if rows[0][7] % 100_000 == 0:
            note(f"sqlite: {rows[0][7]:,} documents loaded")
    conn.execute(
        "INSERT INTO memory_doc_files (doc, path) SELECT id, 'src/mod' || (id % 97) || '.py'"
        " FROM memory_docs WHERE kind = 'decision' AND id % 10 = 0"
    )
    conn.execute(
        "INSERT OR IGNORE INTO memory_commits (log, sha) SELECT DISTINCT log, commit_sha"
        " FROM memory_docs"
    )
    conn.execute("COMMIT")
    conn.execute("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def load_postgres(url: str, n: int, words: list[str], seed: int) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX memory_docs_tsv")
        with conn.transaction():
            with conn.cursor().copy(
                "COPY memory_docs (log, kind, ref, title, body, author, ts, entry, commit_sha,"
                " session) FROM STDIN"
            ) as copy:
                for rows in documents(n, words, seed):
                    for row in rows:
                        copy.write_row(row)
                    if rows[0][7] % 100_000 == 0:
                        note(f"postgres: {rows[0][7]:,} documents loaded")
            conn.execute(
                "INSERT INTO memory_doc_files (doc, path)"
                " SELECT id, 'src/mod' || (id % 97) || '.py'"
                " FROM memory_docs WHERE kind = 'decision' AND id % 10 = 0"
            )
            conn.execute(
                "INSERT INTO memory_commits (log, sha) SELECT DISTINCT log, commit_sha"
                " FROM memory_docs ON CONFLICT DO NOTHING"
            )
        note("postgres: building the GIN index")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("CREATE INDEX memory_docs_tsv ON memory_docs USING GIN (tsv)")
        conn.execute("ANALYZE memory_docs")
    return time.perf_counter() - started


def query_mix(words: list[str], count: int, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    rnd = random.Random(seed)
    mid, rare, frequent = words[50:2000], words[5000:30000], words[3:20]
    mix: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(count):
        roll = i % 20
        if roll < 7:
            mix.append(("one_word", rnd.choice(mid), {}))
        elif roll < 12:
            mix.append(
                ("two_words", f"{rnd.choice(words[20:600])} {rnd.choice(words[20:600])}", {})
            )
        elif roll < 14:
            mix.append(("rare_word", rnd.choice(rare), {}))
        elif roll < 16:
            mix.append(("frequent_word", rnd.choice(frequent), {}))
        elif roll < 18:
            filters: dict[str, Any] = rnd.choice(
                [
                    {"kinds": ["decision"]},
                    {"author": rnd.choice(AUTHORS)},
                    {"since": "2025-06-01", "until": "2025-07-01"},
                    {"kinds": ["prompt", "reply"], "author": rnd.choice(AUTHORS)},
                ]
            )
            mix.append(("filtered", rnd.choice(words[20:800]), filters))
        else:
            question = " ".join(
                [
                    rnd.choice(QUESTION_WORDS),
                    rnd.choice(QUESTION_WORDS),
                    rnd.choice(mid),
                    rnd.choice(mid),
                ]
            )
            mix.append(("question", question, {}))
    rnd.shuffle(mix)
    return mix


def peer_sql(kind: str, query: str, filters: dict[str, Any], limit: int) -> tuple[str, list[Any]]:
    """The naive peer: LIKE over every row, no ranking; words ANDed like FlowLoom's."""
    marker = "?" if kind == "sqlite" else "%s"
    words = [w for w in query.split() if w not in QUESTION_WORDS] or query.split()
    where = ["log = " + marker] + [f"body LIKE {marker}" for _ in words]
    params: list[Any] = [LOG, *(f"%{w}%" for w in words)]
    if filters.get("kinds"):
        where.append("kind IN (" + ", ".join(marker for _ in filters["kinds"]) + ")")
        params += filters["kinds"]
    if filters.get("author"):
        where.append(f"author = {marker}")
        params.append(filters["author"])
    if filters.get("since"):
        where.append(f"ts >= {marker} AND ts < {marker}")
        params += [filters["since"], filters["until"]]
    sql = (
        f"SELECT id, kind, ref, title, body FROM memory_docs WHERE {' AND '.join(where)}"
        f" LIMIT {limit}"
    )
    return sql, params


def run_size(kind: str, n: int, args: argparse.Namespace, words: list[str]) -> None:
    db = None
    if args.db is not None and kind == "sqlite":
        db = str(Path(args.db).with_name(f"{Path(args.db).stem}-{n}{Path(args.db).suffix}"))
    reuse = db is not None and Path(db).exists()
    bench = open_bench_db(kind, workdir=args.dir, db=db, keep=args.keep)
    try:
        ledger = build_ledger(bench, LOG)
        memory = Memory(ledger)  # creates the index tables
        load = None
        if not reuse:
            load = (load_sqlite if kind == "sqlite" else load_postgres)(
                bench.target, n, words, args.seed
            )
            note(f"{kind}: {n:,} documents loaded in {load:.1f} s")
        mix = query_mix(words, args.queries, args.seed)
        # Warm the page cache with other queries of the same mix (another seed).
        for _, query, filters in query_mix(words, args.queries // 2, args.seed + 1):
            memory.search(query, all_branches=True, limit=args.limit, **filters)
        samples: dict[str, list[float]] = {}
        found = 0
        for category, query, filters in mix:
            started = time.perf_counter()
            hits = memory.search(query, all_branches=True, limit=args.limit, **filters)
            samples.setdefault(category, []).append(time.perf_counter() - started)
            found += len(hits)
        everything = [s for values in samples.values() for s in values]
        ours = latency_summary_ms(everything)

        peer_samples: list[float] = []
        if kind == "sqlite":
            conn: Any = sqlite3.connect(bench.target)
        else:
            import psycopg

            conn = psycopg.connect(bench.target, autocommit=True)
        try:
            for _, query, filters in mix[: args.peer_queries]:
                sql, params = peer_sql(kind, query, filters, args.limit)
                started = time.perf_counter()
                conn.execute(sql, params).fetchall()
                peer_samples.append(time.perf_counter() - started)
        finally:
            conn.close()
        peer = latency_summary_ms(peer_samples)
        memory.close()
        goal_applies = kind == "sqlite" and n >= GOAL_SIZE
        emit(
            "search_latency_p95",
            ours["p95_ms"],
            "ms",
            store=kind,
            n=n,
            queries=len(everything),
            limit=args.limit,
            p50_ms=ours["p50_ms"],
            p99_ms=ours["p99_ms"],
            max_ms=ours["max_ms"],
            mean_hits=found / max(1, len(everything)),
            by_category={
                c: {
                    "p50_ms": latency_summary_ms(v)["p50_ms"],
                    "p95_ms": latency_summary_ms(v)["p95_ms"],
                }
                for c, v in sorted(samples.items())
            },
            peer="LIKE '%word%' scan, no index, no ranking",
            peer_queries=len(peer_samples),
            peer_p50_ms=peer["p50_ms"],
            peer_p95_ms=peer["p95_ms"],
            ratio=ratio(peer["p95_ms"], ours["p95_ms"]),
            ratio_def="peer p95 / FlowLoom p95 (higher is better)",
            goal=f"p95 <= {GOAL_P95_MS:g} ms at {GOAL_SIZE:,} on SQLite",
            goal_met=(ours["p95_ms"] <= GOAL_P95_MS) if goal_applies else None,
            load_seconds=load,
            **machine(),
        )
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated document counts")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--queries", type=int, default=400, help="timed queries per size")
    parser.add_argument(
        "--peer-queries", type=int, default=None, help="default: all up to 100k, else 20"
    )
    parser.add_argument("--limit", type=int, default=20, help="hits per query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--db",
        default=None,
        help="SQLite file (one per size: NAME-<n>.db) to build once and reuse (kept)",
    )
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    words = vocabulary(args.seed)
    for kind in store_kinds(args.store):
        for n in sizes:
            if args.peer_queries is None:
                peer_queries = args.queries if n <= 100_000 else 20
            else:
                peer_queries = args.peer_queries
            run_size(
                kind, n, argparse.Namespace(**{**vars(args), "peer_queries": peer_queries}), words
            )


if __name__ == "__main__":
    main()
