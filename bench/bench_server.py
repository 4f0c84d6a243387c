#!/usr/bin/env python3
"""Appends per second through the HTTP API (`flowloom serve`), SQLite and PostgreSQL.

What it measures: events acknowledged per second by a real `flowloom serve` process
over loopback HTTP, from the first request to the last acknowledgement, with
``--clients`` (4) threads each holding one keep-alive httpx connection. Two modes:

- ``single``: one event per ``POST .../ledger/entries`` (the server's group commit
  batches concurrent requests into shared transactions);
- ``batch``: ``--batch`` (100) events per ``POST .../ledger/batch`` (one transaction
  per request).

Every event is a 256-byte ``agent.prompt`` body with a session and a subject, so the
server authenticates, validates, redacts, seals and appends each one.

The peer, measured in the same run on the same database: the same events recorded
in-process, no HTTP, by the same number of threads: ``Ledger.record`` per event for
``single``, ``Ledger.prepare`` + one ``LogWriter.append_many`` per batch for ``batch``.
The ratio (server / peer) is what the HTTP layer, authentication and JSON cost.
``server_cpu_ms_per_event`` is the server process's CPU time per acknowledged event:
single appends are bound by it (one Python process, about one core busy).

Afterwards the log is checkpointed, verified with ``verify_store`` and checked for
contiguous indices (``server_log_verified`` must be true).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402

from bench._common import (  # noqa: E402
    BenchDB,
    body_for,
    build_ledger,
    check_log,
    emit,
    machine,
    note,
    open_bench_db,
    ratio,
    split,
    store_kinds,
)
from flowloom.auth.permissions import ALL_PROJECTS  # noqa: E402
from flowloom.ledger.keys import KeyStore  # noqa: E402
from flowloom.ledger.verify import verify_store  # noqa: E402
from flowloom.server.build import build_server  # noqa: E402
from flowloom.server.settings import ServerSettings  # noqa: E402

PROJECT = "bench"
PUBLIC_URL = "http://flowloom.bench"


def _event(i: int) -> dict[str, Any]:
    return {
        "kind": "agent.prompt",
        "session": "bench-session",
        "subject": f"src/module_{i % 97}.py",
        "body": body_for(i).decode(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prepare_server(bench: BenchDB) -> str:
    """Create the project and a service account in the database; return its API key."""
    settings = ServerSettings(database=bench.target, home=bench.home, public_url=PUBLIC_URL)
    server = build_server(settings)
    try:
        directory = server.directory
        directory.create_project(PROJECT)
        user = directory.create_user(None, "bench client", kind="service")
        directory.grant(user.id, ALL_PROJECTS, "service")
        _, secret = directory.create_key(user.id, name="bench")
        return secret
    finally:
        server.close()


def _start_server(bench: BenchDB, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowloom",
            "serve",
            "--database",
            bench.target,
            "--home",
            str(bench.home),
            "--port",
            str(port),
            "--public-url",
            PUBLIC_URL,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not become ready within 60 s")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: the server is one Python process,
    so at about one core's worth per second it is CPU-bound, whatever it waits on."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_threads(work: Callable[[list[int]], int], chunks: list[list[int]]) -> tuple[float, int]:
    """Run `work` on each chunk in its own thread, started together: (seconds, acked)."""
    done: list[int] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(len(chunks) + 1)

    def body(chunk: list[int]) -> None:
        gate.wait()
        try:
            done.append(work(chunk))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(c,)) for c in chunks]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, sum(done)


def _http_single(base: str, key: str) -> Callable[[list[int]], int]:
    def work(numbers: list[int]) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            for i in numbers:
                response = client.post(f"/api/v1/projects/{PROJECT}/ledger/entries", json=_event(i))
                if response.status_code != 201:
                    raise SystemExit(f"append failed: {response.status_code} {response.text}")
        return len(numbers)

    return work


def _http_batch(base: str, key: str, size: int) -> Callable[[list[int]], int]:
    def work(numbers: list[int]) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            for at in range(0, len(numbers), size):
                events = [_event(i) for i in numbers[at : at + size]]
                response = client.post(
                    f"/api/v1/projects/{PROJECT}/ledger/batch", json={"events": events}
                )
                if response.status_code != 201:
                    raise SystemExit(f"batch failed: {response.status_code} {response.text}")
        return len(numbers)

    return work


def bench_store(kind: str, args: argparse.Namespace) -> None:
    bench = open_bench_db(kind, keep=args.keep)
    try:
        _bench_store(bench, args)
    finally:
        bench.close()


def _bench_store(bench: BenchDB, args: argparse.Namespace) -> None:
    kind, n, clients = bench.kind, args.n, args.clients
    key = _prepare_server(bench)
    port = _free_port()
    note(f"{kind}: starting flowloom serve on port {port}")
    process = _start_server(bench, port)
    base = f"http://127.0.0.1:{port}"
    context = {"store": kind, "n": n, "clients": clients, "batch": args.batch, **machine()}
    http_rates: dict[str, float] = {}
    cpu_per_event: dict[str, float] = {}
    try:
        note(f"{kind}: {n} single appends over HTTP, {clients} clients")
        cpu = _cpu_seconds(process.pid)
        elapsed, acked = _run_threads(_http_single(base, key), split(list(range(n)), clients))
        http_rates["single"] = acked / elapsed
        cpu_per_event["single"] = (_cpu_seconds(process.pid) - cpu) / acked
        note(f"{kind}: {n} appends in batches of {args.batch} over HTTP")
        numbers = list(range(n, 2 * n))
        cpu = _cpu_seconds(process.pid)
        elapsed, acked = _run_threads(_http_batch(base, key, args.batch), split(numbers, clients))
        http_rates["batch"] = acked / elapsed
        cpu_per_event["batch"] = (_cpu_seconds(process.pid) - cpu) / acked
    finally:
        _stop(process)

    # The in-process peer: a log of its own in the same database.
    peer = build_ledger(bench, "bench-peer")
    meta = {"session": "bench-session"}

    def peer_single(numbers: list[int]) -> int:
        for i in numbers:
            peer.record("agent.prompt", body=body_for(i), meta={**meta, "subject": f"s{i % 97}"})
        return len(numbers)

    def peer_batch(numbers: list[int]) -> int:
        for at in range(0, len(numbers), args.batch):
            entries = [
                peer.prepare(
                    "agent.prompt", body=body_for(i), meta={**meta, "subject": f"s{i % 97}"}
                ).entry
                for i in numbers[at : at + args.batch]
            ]
            peer.writer.append_many(entries)
        return len(numbers)

    note(f"{kind}: the in-process peer")
    peer_rates = {
        "single": n / _run_threads(peer_single, split(list(range(n)), clients))[0],
        "batch": n / _run_threads(peer_batch, split(list(range(n)), clients))[0],
    }
    peer.writer.close()
    for mode in ("single", "batch"):
        emit(
            f"server_append_throughput_{mode}",
            http_rates[mode],
            "events/s",
            **context,
            mode="one event per POST" if mode == "single" else f"{args.batch} events per POST",
            peer="in-process Ledger.record per event, same threads and database"
            if mode == "single"
            else f"in-process prepare + append_many per {args.batch}, same threads and database",
            peer_value=peer_rates[mode],
            ratio=ratio(http_rates[mode], peer_rates[mode]),
            ratio_def="server / peer",
            server_cpu_ms_per_event=round(cpu_per_event[mode] * 1000, 3),
        )
    signer, _ = KeyStore(bench.home).signer(f"{PUBLIC_URL.split('://')[1]}/{PROJECT}")
    size = bench.store.size(PROJECT)
    indices = [e.index for e in bench.store.entries(PROJECT)]
    report = verify_store(bench.store, PROJECT, signer.verifier())
    peer_check = check_log(bench, peer, 2 * n)
    ok = (
        report.ok
        and indices == list(range(size))
        and size >= 2 * n
        and bool(peer_check["verified"])
        and bool(peer_check["contiguous"])
    )
    emit(
        "server_log_verified",
        ok,
        "bool",
        store=kind,
        size=size,
        problems=[p.line() for p in report.problems[:5]],
        peer_log=peer_check,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=2_000, help="events per mode (default 2000)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    for kind in store_kinds(args.store):
        bench_store(kind, args)


if __name__ == "__main__":
    main()
