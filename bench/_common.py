"""Shared setup for the benchmark scripts: stores, ledgers, naive peers, timing, JSON.

Every script in bench/ prints one JSON object per figure (DESIGN §9). The helpers here
build a Ledger over a SQLite file or over a fresh PostgreSQL schema, the "naive peer"
(one INSERT + COMMIT per event on the same database, same durability, no tree), event
batches, percentiles and the JSON lines themselves.

Import this after putting the repository root and ``src`` on ``sys.path`` (each script
does that itself, so ``.venv/bin/python bench/bench_x.py`` works from the repo root).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.writer import BatchObserver, LogWriter
from flowloom.store.interface import PendingEntry, Store

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get(
    "FLOWLOOM_BENCH_PG_URL",
    os.environ.get("FLOWLOOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
STORES = ("sqlite", "postgres")
BODY_BYTES = 256
"""Size of each event body: a short prompt, about what a hook records."""


# -- output --------------------------------------------------------------------------


def emit(metric: str, value: float | int | bool | None, unit: str, **extra: Any) -> None:
    """Print one figure as a JSON line (and flush, so a long run shows progress)."""
    record: dict[str, Any] = {"metric": metric, "value": _round(value), "unit": unit}
    record.update({k: _round(v) for k, v in extra.items()})
    sys.stdout.write(json.dumps(record, sort_keys=False) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """Progress for humans, on stderr so stdout stays pure JSON lines."""
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if abs(value) < 100 else round(value, 1)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def machine() -> dict[str, Any]:
    """Context printed with each run: the figures mean little without it."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


# -- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of `values`; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100), at least 1
    return float(ordered[min(len(ordered), int(rank)) - 1])


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in milliseconds."""
    ms = sorted(s * 1000.0 for s in seconds)
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else 0.0,
        "mean_ms": statistics.fmean(ms) if ms else 0.0,
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` holds the elapsed seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


# -- stores --------------------------------------------------------------------------


def url_with_schema(url: str, schema: str) -> str:
    """`url`, with its connections using `schema` first (search_path via options)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    options = dict(parse_qsl(parts.query)).get("options", "")
    query.append(("options", f"{options} -csearch_path={schema}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@dataclass
class BenchDB:
    """One database for one benchmark run: the FlowLoom store and the peer's handle.

    `target` is the SQLite path or the PostgreSQL URL (with its own schema); `home`
    holds the key files the ledger signs with.
    """

    kind: str
    target: str
    home: Path
    store: Store
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def open_bench_db(
    kind: str, *, workdir: Path | None = None, db: str | None = None, keep: bool = False
) -> BenchDB:
    """A fresh SQLite file (or `db`, reused) or a fresh PostgreSQL schema.

    Fresh databases are deleted by ``close()`` unless `keep`; a given `db` is never
    deleted, and its keys live beside it in ``<db>.home`` so a later run can verify it.
    """
    if kind == "sqlite":
        from flowloom.store.sqlite import SQLiteStore

        cleanups: list[Callable[[], None]] = []
        if db is not None:
            path = Path(db).resolve()
            home = path.with_name(path.name + ".home")
        else:
            directory = Path(tempfile.mkdtemp(prefix="flowloom-bench-", dir=workdir))
            path = directory / "ledger.db"
            home = directory / "home"
            if not keep:
                cleanups.append(lambda: shutil.rmtree(directory, ignore_errors=True))
            else:
                note(f"keeping {path}")
        return BenchDB(kind, str(path), home, SQLiteStore(path), cleanups)
    if kind == "postgres":
        import psycopg
        from psycopg import sql

        from flowloom.store.postgres import PostgresStore

        if db is not None:
            raise SystemExit("--db names a SQLite file; PostgreSQL runs use a fresh schema")
        schema = f"flowloom_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))

        def drop() -> None:
            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
                admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

        url = url_with_schema(PG_URL, schema)
        home = Path(tempfile.mkdtemp(prefix="flowloom-bench-home-", dir=workdir))
        cleanups = [lambda: shutil.rmtree(home, ignore_errors=True)]
        if not keep:
            cleanups.append(drop)
        else:
            note(f"keeping schema {schema}")
        try:
            pg_store = PostgresStore(url, max_size=12)
        except Exception:
            drop()
            raise
        return BenchDB(kind, url, home, pg_store, cleanups)
    raise SystemExit(f"unknown store {kind!r}; use one of {', '.join(STORES)}")


def store_kinds(choice: str) -> list[str]:
    return list(STORES) if choice == "both" else [choice]


# -- the ledger ----------------------------------------------------------------------

ORIGIN_PREFIX = "flowloom.bench/"


def build_ledger(
    bench: BenchDB,
    log: str,
    *,
    observer: BatchObserver | None = None,
    max_batch: int = 2000,
) -> Ledger:
    """A Ledger as tests/support/ledgers.make_ledger builds one, with our own writer."""
    keys = KeyStore(bench.home)
    signer, _ = keys.signer(ORIGIN_PREFIX + log)
    return Ledger(
        bench.store,
        log=log,
        origin=signer.name,
        signer=lambda: signer,
        cipher=lambda: BodyCipher(keys.master_key()),
        actor={"type": "agent", "id": "bench", "name": "flowloom-bench"},
        max_body_bytes=1 << 20,
        writer=LogWriter(bench.store, log, max_batch=max_batch, observer=observer),
    )


def body_for(i: int, size: int = BODY_BYTES) -> bytes:
    text = f"prompt {i}: refactor the parser so it streams tokens. "
    return (text * (size // len(text) + 1)).encode()[:size]


def prepare_one(ledger: Ledger, i: int, *, body: bool = True) -> PendingEntry:
    """A realistic event: agent.prompt with a session, a subject and a 256-byte body."""
    return ledger.prepare(
        "agent.prompt",
        body=body_for(i) if body else None,
        meta={"session": "bench-session", "subject": f"src/module_{i % 97}.py"},
    ).entry


def prepare_entries(
    ledger: Ledger, count: int, *, start: int = 0, body: bool = True
) -> list[PendingEntry]:
    """`count` events from `prepare_one`, numbered from `start`."""
    return [prepare_one(ledger, i, body=body) for i in range(start, start + count)]


class BatchStats:
    """A LogWriter observer: how many transactions, how big, how long."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds: list[float] = []

    def __call__(self, count: int, seconds: float) -> None:
        self.sizes.append(count)
        self.seconds.append(seconds)

    def reset(self) -> None:
        self.sizes.clear()
        self.seconds.clear()

    def summary(self) -> dict[str, float | int]:
        if not self.sizes:
            return {"batches": 0}
        return {
            "batches": len(self.sizes),
            "mean_batch": statistics.fmean(self.sizes),
            "max_batch": max(self.sizes),
            "mean_txn_ms": statistics.fmean(self.seconds) * 1000,
        }


def check_log(bench: BenchDB, ledger: Ledger, expected: int | None = None) -> dict[str, Any]:
    """Checkpoint, then verify the whole log and check the indices are contiguous."""
    from flowloom.ledger.verify import verify_store

    ledger.checkpoint()
    size = bench.store.size(ledger.log)
    indices = [e.index for e in bench.store.entries(ledger.log)]
    contiguous = indices == list(range(size))
    report = verify_store(bench.store, ledger.log, ledger.verifier)
    return {
        "log": ledger.log,
        "size": size,
        "size_as_expected": expected is None or size == expected,
        "contiguous": contiguous,
        "verified": report.ok,
        "problems": [p.line() for p in report.problems[:5]],
    }


# -- the naive peer: one INSERT + COMMIT per event, same database, same durability -----

NAIVE_TABLE = "bench_naive"


class NaivePeer:
    """Appends rows the obvious way: an autocommit INSERT per event, no tree.

    SQLite: its own connection per thread, WAL and synchronous=FULL like the store.
    PostgreSQL: its own connection per thread, the server's default synchronous_commit.
    """

    def __init__(self, bench: BenchDB) -> None:
        self.kind = bench.kind
        self.target = bench.target
        with contextlib.closing(self.connect()) as conn:
            if self.kind == "sqlite":
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} (id INTEGER PRIMARY KEY,"
                    " envelope BLOB NOT NULL, kind TEXT NOT NULL, body BLOB)"
                )
            else:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} (id BIGSERIAL PRIMARY KEY,"
                    " envelope BYTEA NOT NULL, kind TEXT NOT NULL, body BYTEA)"
                )

    def connect(self) -> Any:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.target, isolation_level=None, timeout=60)
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        import psycopg

        return psycopg.connect(self.target, autocommit=True)

    def inserter(self) -> tuple[Callable[[PendingEntry], None], Callable[[], None]]:
        """A function that durably inserts one entry, and one that closes its connection."""
        conn = self.connect()
        if self.kind == "sqlite":
            sql = f"INSERT INTO {NAIVE_TABLE} (envelope, kind, body) VALUES (?, ?, ?)"
        else:
            sql = f"INSERT INTO {NAIVE_TABLE} (envelope, kind, body) VALUES (%s, %s, %s)"

        def insert(entry: PendingEntry) -> None:
            conn.execute(sql, (entry.envelope, entry.kind, _body_bytes(entry)))

        return insert, conn.close


def _body_bytes(entry: PendingEntry) -> bytes | None:
    return entry.body.content if entry.body is not None else None


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """`items` dealt into `parts` nearly equal contiguous slices."""
    size, extra = divmod(len(items), parts)
    out: list[list[Any]] = []
    at = 0
    for p in range(parts):
        take = size + (1 if p < extra else 0)
        out.append(list(items[at : at + take]))
        at += take
    return out
