#!/usr/bin/env python3
"""The LLM gateway's overhead and capacity, FlowLoom beside LiteLLM, before the same simulator.

Set-up, on this machine: the provider simulator (``flowloom dev mock-provider``) and this
load generator (aiohttp over uvloop, keep-alive connection pool) on core 0; the proxy under
test (``flowloom gateway serve``, one worker, recording every exchange fail-closed into a
SQLite ledger, open access) and LiteLLM's proxy (``litellm --num_workers 1``, no
database, no callbacks, installed into its own virtualenv outside the repository) each
pinned to core 1, measured one at a time (the other is stopped with SIGSTOP meanwhile, so
each has the core to itself). Both proxies route ``claude-bench`` to the simulator's Anthropic
``/v1/messages`` and ``gpt-bench`` to its OpenAI ``/v1/chat/completions``.

Figures (FlowLoom ``value``, LiteLLM ``peer_value``, the bare simulator where it applies):

- added latency p50/p99 at concurrency 1: proxy → simulator minus direct → simulator,
  the same non-streaming mix (Anthropic and OpenAI alternately), interleaved in blocks so
  every target sees the same machine weather;
- throughput at p99 ≤ 50 ms: closed-loop concurrency stepped 1, 2, 4, ... until p99 passes
  50 ms; the best step that kept p99 ≤ 50 ms is the knee;
- added time to first token on streams (first content delta), concurrency 1;
- RSS idle (after a warm-up) and under load (max while stepping), VmRSS of the process tree;
- RSS over a soak at a steady paced rate (``--soak-seconds 600`` for the 10-minute run);
- the bare simulator's own throughput on one core (a second simulator pinned to core 1);
- that FlowLoom's ledger holds one ``gateway.exchange`` per request sent, and verifies;
- past one process (``--workers 1,2,4``): for each worker count, FlowLoom with that many
  workers recording into PostgreSQL and checking a virtual key's rpm, tpm and monthly
  budget (limits shared through the database, quota.py), beside LiteLLM with as many
  workers (no database: it checks no limit); added latency p50/p99 at concurrency 1,
  throughput at each ``--workers-concurrency`` step, and the proxy's CPU time per
  request (all its processes), which holds on a busy machine where req/s does not.
  Not pinned: the workers need both cores, which they share with the simulator and
  the load generator.

If LiteLLM cannot be installed or started (or with ``--no-litellm``) a JSON line says so
and FlowLoom is still measured against the bare simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aiohttp  # noqa: E402

from bench._common import emit, machine, note, percentile, ratio  # noqa: E402
from bench._gateway_setup import (  # noqa: E402
    ANTHROPIC_MODEL,
    CALLER_KEY,
    OPENAI_MODEL,
    Proc,
    SetupError,
    check_flowloom_ledger,
    install_litellm,
    limited_key,
    loadavg,
    pg_schema,
    quota_counted,
    start_flowloom,
    start_litellm,
    start_simulator,
    wait_recorder_idle,
)

GOAL_ADDED_P50_MS = 1.0
GOAL_ADDED_P99_MS = 2.5
GOAL_THROUGHPUT = 1000.0
GOAL_P99_MS = 50.0
GOAL_ADDED_TTFT_MS = 3.0
GOAL_RSS_IDLE_MB = 120.0
GOAL_SOAK_GROWTH_MB = 5.0
LOAD_CORE, PROXY_CORE = 0, 1

PROMPT = (
    "You are reviewing a pull request. Summarise the change to the streaming parser in one"
    " sentence and list any risk you see. The diff touches src/parser/stream.py and"
    " tests/test_stream.py; the tests pass locally. "
) * 2


# -- the request mix ------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request of the mix: path, headers and body bytes, sent alike to every target."""

    fmt: str
    path: str
    headers: dict[str, str]
    body: bytes
    stream: bool


def _anthropic(stream: bool) -> Req:
    body = {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 256,
        "system": "You are a careful code reviewer.",
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        body["stream"] = True
    return Req(
        "anthropic",
        "/v1/messages",
        {
            "content-type": "application/json",
            "x-api-key": CALLER_KEY,
            "anthropic-version": "2023-06-01",
        },
        json.dumps(body).encode(),
        stream,
    )


def _openai(stream: bool) -> Req:
    body: dict[str, Any] = {
        "model": OPENAI_MODEL,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a careful code reviewer."},
            {"role": "user", "content": PROMPT},
        ],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return Req(
        "openai",
        "/v1/chat/completions",
        {"content-type": "application/json", "authorization": f"Bearer {CALLER_KEY}"},
        json.dumps(body).encode(),
        stream,
    )


PLAIN_MIX = [_anthropic(False), _openai(False)]
STREAM_MIX = [_anthropic(True), _openai(True)]
SOAK_MIX = [_anthropic(False), _openai(False), _anthropic(True), _openai(False), _openai(True)]


# -- the load generator ---------------------------------------------------------------------


@dataclass
class Target:
    """Where requests go, and how many were sent there (FlowLoom must record each)."""

    name: str
    url: str
    proc: Proc | None
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    key: str | None = None  # a virtual key to send instead of CALLER_KEY
    _headers: dict[int, dict[str, str]] = field(default_factory=dict)

    def headers(self, req: Req) -> dict[str, str]:
        if self.key is None:
            return req.headers
        found = self._headers.get(id(req))
        if found is None:
            found = dict(req.headers)
            if "x-api-key" in found:
                found["x-api-key"] = self.key
            if "authorization" in found:
                found["authorization"] = f"Bearer {self.key}"
            self._headers[id(req)] = found
        return found

    def fail(self, text: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(text)


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=120),
        skip_auto_headers=("User-Agent",),
    )


async def send(session: aiohttp.ClientSession, target: Target, req: Req) -> float | None:
    """One non-streaming request: seconds to the last byte, or None if it failed."""
    target.sent += 1
    started = time.perf_counter()
    try:
        async with session.post(
            target.url + req.path, data=req.body, headers=target.headers(req)
        ) as r:
            await r.read()
            if r.status != 200:
                target.fail(f"{req.path}: HTTP {r.status}")
                return None
    except (TimeoutError, aiohttp.ClientError) as exc:
        target.fail(f"{req.path}: {type(exc).__name__}: {exc}")
        return None
    return time.perf_counter() - started


def _is_token(req: Req, line: bytes) -> bool:
    if not line.startswith(b"data:"):
        return False
    if req.fmt == "anthropic":
        return b'"content_block_delta"' in line
    payload = line[5:].strip()
    if not payload.startswith(b"{"):
        return False
    try:
        choices = json.loads(payload).get("choices") or []
    except ValueError:
        return False
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


@dataclass
class StreamResult:
    ttft: float
    total: float
    events: int
    tokens: int


async def send_stream(
    session: aiohttp.ClientSession, target: Target, req: Req
) -> StreamResult | None:
    """One streaming request: time to the first content delta and to the end."""
    target.sent += 1
    started = time.perf_counter()
    first: float | None = None
    events = tokens = 0
    try:
        async with session.post(
            target.url + req.path, data=req.body, headers=target.headers(req)
        ) as r:
            if r.status != 200:
                await r.read()
                target.fail(f"{req.path} (stream): HTTP {r.status}")
                return None
            async for line in r.content:
                if line.startswith(b"data:"):
                    events += 1
                if _is_token(req, line):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter()
    except (TimeoutError, aiohttp.ClientError) as exc:
        target.fail(f"{req.path} (stream): {type(exc).__name__}: {exc}")
        return None
    ended = time.perf_counter()
    if first is None:
        target.fail(f"{req.path} (stream): no content delta")
        return None
    return StreamResult(first - started, ended - started, events, tokens)


async def warm_up(target: Target, count: int) -> None:
    async with _session(4) as session:
        for i in range(count):
            await send(session, target, PLAIN_MIX[i % 2])
        for i in range(max(2, count // 5)):
            await send_stream(session, target, STREAM_MIX[i % 2])


async def interleaved(
    targets: list[Target],
    rounds: int,
    block: int,
    one: Callable[[aiohttp.ClientSession, Target, int], Awaitable[Any]],
) -> dict[str, list[Any]]:
    """Concurrency 1: `block` requests per target per round, targets taking turns."""
    results: dict[str, list[Any]] = {t.name: [] for t in targets}
    sessions = {t.name: _session(1) for t in targets}
    try:
        for r in range(rounds):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for target in order:
                for i in range(block):
                    got = await one(sessions[target.name], target, r * block + i)
                    if got is not None:
                        results[target.name].append(got)
    finally:
        for session in sessions.values():
            await session.close()
    return results


@contextlib.contextmanager
def alone(target: Target, proxies: list[Target]) -> Iterator[None]:
    """Stop (SIGSTOP) every other proxy while `target` is measured: they share its core."""
    others = [p.proc for p in proxies if p is not target and p.proc is not None]
    for proc in others:
        proc.pause()
    try:
        yield
    finally:
        for proc in others:
            proc.resume()


async def pairs(
    direct: Target,
    proxies: list[Target],
    rounds: int,
    block: int,
    one: Callable[[aiohttp.ClientSession, Target, int], Awaitable[Any]],
) -> dict[str, list[Any]]:
    """Each proxy in turn, alone on its core, interleaved with direct calls.

    Keys: the proxy's name, and ``direct@<proxy>`` for the direct calls made beside it.
    """
    results: dict[str, list[Any]] = {}
    for proxy in proxies:
        with alone(proxy, proxies):
            got = await interleaved([direct, proxy], rounds, block, one)
        results[proxy.name] = got[proxy.name]
        results[f"direct@{proxy.name}"] = got[direct.name]
    return results


@dataclass
class Step:
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_cpu_pct: float | None
    client_cpu_pct: float
    rss_max_mb: float | None

    @property
    def rps_per_core(self) -> float | None:
        """Requests per second of the server's own CPU time: capacity if it had a whole core."""
        if not self.proxy_cpu_pct:
            return None
        return self.rps * 100.0 / self.proxy_cpu_pct

    def row(self) -> dict[str, Any]:
        return {**vars(self), "rps_per_core": self.rps_per_core}


async def _sample_rss(proc: Proc, into: list[float], every: float) -> None:
    while True:
        into.append(proc.rss_mb())
        await asyncio.sleep(every)


async def closed_loop(target: Target, concurrency: int, seconds: float, warmup: float) -> Step:
    """`concurrency` workers each sending the next request as soon as one returns."""
    latencies: list[float] = []
    errors = 0
    rss: list[float] = []
    async with _session(concurrency) as session:
        loop_start = time.perf_counter()
        measure_from = loop_start + warmup
        end = measure_from + seconds
        cpu_before: float | None = None
        cpu_after: float | None = None
        client_before = client_after = 0.0

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < end:
                req = PLAIN_MIX[i % len(PLAIN_MIX)]
                i += 1
                t0 = time.perf_counter()
                got = await send(session, target, req)
                t1 = time.perf_counter()
                if t0 >= measure_from and t1 <= end:
                    if got is None:
                        errors += 1
                    else:
                        latencies.append(got)

        async def cpu_mark() -> None:
            # CPU use over exactly the measured window (not the drain after it).
            nonlocal cpu_before, client_before, cpu_after, client_after
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu_before = target.proc.cpu_seconds() if target.proc else None
            client_before = _own_cpu()
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            cpu_after = target.proc.cpu_seconds() if target.proc else None
            client_after = _own_cpu()

        sampler = asyncio.ensure_future(_sample_rss(target.proc, rss, 0.2)) if target.proc else None
        marker = asyncio.ensure_future(cpu_mark())
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        await marker
        client_cpu = 100.0 * (client_after - client_before) / seconds
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    ms = [x * 1000 for x in latencies]
    cpu_pct = (
        100.0 * (cpu_after - cpu_before) / seconds
        if cpu_after is not None and cpu_before is not None
        else None
    )
    return Step(
        concurrency,
        len(latencies) / seconds,
        percentile(ms, 50),
        percentile(ms, 99),
        errors,
        cpu_pct,
        client_cpu,
        max(rss) if rss else None,
    )


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def sweep(target: Target, steps: list[int], seconds: float) -> list[Step]:
    """Step concurrency up until p99 passes 50 ms twice or throughput falls off."""
    out: list[Step] = []
    over = 0
    for concurrency in steps:
        step = await closed_loop(target, concurrency, seconds, warmup=min(0.5, seconds / 3))
        out.append(step)
        note(
            f"{target.name}: c={concurrency} {step.rps:,.0f} req/s p50 {step.p50_ms:.2f} ms"
            f" p99 {step.p99_ms:.2f} ms errors {step.errors}"
            + (f" server cpu {step.proxy_cpu_pct:.0f}%" if step.proxy_cpu_pct is not None else "")
            + f" client cpu {step.client_cpu_pct:.0f}%"
        )
        over = over + 1 if step.p99_ms > GOAL_P99_MS else 0
        best = max(s.rps for s in out)
        if over >= 2 or (step.p99_ms > GOAL_P99_MS and step.rps < 0.7 * best):
            break
    return out


def knee(steps: list[Step]) -> Step | None:
    ok = [s for s in steps if s.p99_ms <= GOAL_P99_MS and s.errors == 0 and s.rps > 0]
    return max(ok, key=lambda s: s.rps) if ok else None


async def soak(target: Target, seconds: float, rate: float, workers: int) -> dict[str, Any]:
    """A steady paced load (mixed, streams included); RSS sampled throughout."""
    samples: list[tuple[float, float]] = []
    latencies: list[float] = []
    errors = 0
    count = 0
    every = max(0.5, seconds / 300)
    async with _session(workers) as session:
        start = time.perf_counter()
        end = start + seconds

        async def sampler() -> None:
            while True:
                samples.append((time.perf_counter() - start, target.proc.rss_mb()))  # type: ignore[union-attr]
                await asyncio.sleep(every)

        async def worker() -> None:
            nonlocal errors, count
            while True:
                i = count
                count += 1
                due = start + i / rate
                if due >= end:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                req = SOAK_MIX[i % len(SOAK_MIX)]
                if req.stream:
                    got = await send_stream(session, target, req)
                    value = got.total if got else None
                else:
                    value = await send(session, target, req)
                if value is None:
                    errors += 1
                else:
                    latencies.append(value)

        task = asyncio.ensure_future(sampler())
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - start
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    samples.append((elapsed, target.proc.rss_mb()))  # type: ignore[union-attr]
    fifth = max(1, len(samples) // 5)
    first = statistics.median(v for _, v in samples[:fifth])
    last = statistics.median(v for _, v in samples[-fifth:])
    ms = [x * 1000 for x in latencies]
    return {
        "seconds": round(elapsed, 1),
        "rate_target": rate,
        "rate_achieved": len(latencies) / elapsed,
        "requests": len(latencies) + errors,
        "errors": errors,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "rss_first_fifth_mb": first,
        "rss_last_fifth_mb": last,
        "rss_min_mb": min(v for _, v in samples),
        "rss_max_mb": max(v for _, v in samples),
        "growth_mb": last - first,
        "samples": len(samples),
        "rss_curve_mb": _curve(samples, 12),
    }


def _curve(samples: list[tuple[float, float]], points: int) -> list[list[float]]:
    if len(samples) <= points:
        return [[round(t, 1), round(v, 1)] for t, v in samples]
    stride = (len(samples) - 1) / (points - 1)
    return [
        [round(samples[round(i * stride)][0], 1), round(samples[round(i * stride)][1], 1)]
        for i in range(points)
    ]


# -- figures ------------------------------------------------------------------------------


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else 0.0,
    }


class Figures:
    """Collects per-target results and prints the JSON lines with context and goals."""

    def __init__(self, args: argparse.Namespace, litellm_version: str | None) -> None:
        self.context: dict[str, Any] = {
            **machine(),
            "pinned": {"proxy": PROXY_CORE, "simulator_and_load": LOAD_CORE} if args.pin else None,
            "litellm_version": litellm_version,
        }
        self.has_peer = litellm_version is not None

    def emit(
        self,
        metric: str,
        value: Any,
        unit: str,
        *,
        peer_value: Any = None,
        ratio_value: float | None = None,
        ratio_def: str | None = None,
        goal: str | None = None,
        goal_met: bool | None = None,
        **extra: Any,
    ) -> None:
        fields: dict[str, Any] = {**self.context, "load": loadavg()}
        if self.has_peer:
            fields.update(
                peer=f"LiteLLM proxy {self.context['litellm_version']}, one worker,"
                " no database, no callbacks",
                peer_value=peer_value,
                ratio=ratio_value,
                ratio_def=ratio_def,
            )
        else:
            fields["peer"] = None
        fields.update(goal=goal, goal_met=goal_met, **extra)
        emit(metric, value, unit, **fields)


def _added(results: dict[str, list[float]], name: str, pct: float) -> float:
    """The `pct` percentile via `name` minus the same percentile direct beside it, in ms."""
    ms = [x * 1000 for x in results[name]]
    base = [x * 1000 for x in results[f"direct@{name}"]]
    return percentile(ms, pct) - percentile(base, pct)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.dir) if args.dir else None
    base = Path(tempfile.mkdtemp(prefix="flowloom-bench-gw-", dir=workdir))
    load_core = LOAD_CORE if args.pin else None
    proxy_core = PROXY_CORE if args.pin else None
    procs: list[Proc] = []
    litellm_version: str | None = None
    litellm_exe: Path | None = None
    started_load = loadavg()
    try:
        note(f"load average {started_load}; work directory {base}")
        simulator = start_simulator(base, load_core)
        procs.append(simulator)
        if args.workers_only:
            return await _workers_only(args, base, simulator, started_load)
        flowloom = start_flowloom(base, simulator.url, proxy_core, plain_io=args.plain_io)
        procs.append(flowloom)
        targets = [
            Target("direct", simulator.url, simulator),
            Target("flowloom", flowloom.url, flowloom),
        ]
        litellm: Proc | None = None
        if args.no_litellm:
            emit("gateway_litellm_available", False, "bool", reason="--no-litellm")
        else:
            try:
                note("installing / checking LiteLLM in its own virtualenv")
                exe, litellm_version = install_litellm(args.litellm_upgrade)
                litellm_exe = exe
                note(f"starting LiteLLM {litellm_version}")
                litellm = start_litellm(base, simulator.url, proxy_core, exe, litellm_version)
                procs.append(litellm)
                targets.append(Target("litellm", litellm.url, litellm))
                emit("gateway_litellm_available", True, "bool", version=litellm_version)
            except (SetupError, OSError, subprocess.SubprocessError) as exc:
                litellm_version = None
                emit(
                    "gateway_litellm_available",
                    False,
                    "bool",
                    reason=f"LiteLLM could not be installed or started: {exc}"[:1500],
                    note="measuring FlowLoom against the bare simulator only",
                )
        figures = Figures(args, litellm_version)
        by = {t.name: t for t in targets}
        proxies = [t for t in targets if t.name != "direct"]

        # RSS at idle: right after start-up, then after a warm-up (lazy imports loaded).
        rss_cold = {t.name: t.proc.rss_mb() for t in proxies if t.proc}
        for target in targets:
            await warm_up(target, args.warmup)
        await asyncio.sleep(1.0)
        rss_idle = {t.name: t.proc.rss_mb() for t in proxies if t.proc}

        # Added latency at concurrency 1.
        rounds = max(1, args.n // args.block)
        note(f"latency at concurrency 1: {rounds} rounds of {args.block} per target")

        async def plain(session: aiohttp.ClientSession, target: Target, i: int) -> Any:
            got = await send(session, target, PLAIN_MIX[i % 2])
            return None if got is None else (PLAIN_MIX[i % 2].fmt, got)

        raw = await pairs(by["direct"], proxies, rounds, args.block, plain)
        lat = {name: [s for _, s in rows] for name, rows in raw.items()}
        per_fmt = {
            name: {
                fmt: _summary([s * 1000 for f, s in rows if f == fmt])
                for fmt in ("anthropic", "openai")
            }
            for name, rows in raw.items()
        }
        summaries = {name: _summary([s * 1000 for s in v]) for name, v in lat.items()}
        for pct, metric, goal in (
            (50, "gateway_added_latency_p50", GOAL_ADDED_P50_MS),
            (99, "gateway_added_latency_p99", GOAL_ADDED_P99_MS),
        ):
            value = _added(lat, "flowloom", pct) if lat["flowloom"] else None
            peer = _added(lat, "litellm", pct) if lat.get("litellm") else None
            figures.emit(
                metric,
                value,
                "ms",
                peer_value=peer,
                ratio_value=ratio(peer, value) if peer is not None and value else None,
                ratio_def="litellm added / flowloom added",
                goal=f"<= {goal}",
                goal_met=value is not None and value <= goal,
                n=args.n,
                concurrency=1,
                definition=f"p{pct}(proxy -> simulator) - p{pct}(direct -> simulator),"
                " non-streaming, Anthropic and OpenAI alternately; each proxy alone on its core"
                " (the other stopped), interleaved with direct calls (direct@<proxy>)",
                latency=summaries,
                by_format=per_fmt,
            )

        # Added time to first token on streams.
        s_rounds = max(1, args.stream_n // args.block)
        note(f"streams at concurrency 1: {s_rounds} rounds of {args.block} per target")

        async def streamed(session: aiohttp.ClientSession, target: Target, i: int) -> Any:
            got = await send_stream(session, target, STREAM_MIX[i % 2])
            return None if got is None else (STREAM_MIX[i % 2].fmt, got)

        sraw = await pairs(by["direct"], proxies, s_rounds, args.block, streamed)
        ttft = {name: [r.ttft for _, r in rows] for name, rows in sraw.items()}
        stream_info = {
            name: {
                "ttft": _summary([r.ttft * 1000 for _, r in rows]),
                "total": _summary([r.total * 1000 for _, r in rows]),
                "events_per_stream": {
                    fmt: statistics.median([r.events for f, r in rows if f == fmt] or [0])
                    for fmt in ("anthropic", "openai")
                },
                "content_deltas_per_stream": {
                    fmt: statistics.median([r.tokens for f, r in rows if f == fmt] or [0])
                    for fmt in ("anthropic", "openai")
                },
            }
            for name, rows in sraw.items()
        }
        value = _added(ttft, "flowloom", 50) if ttft["flowloom"] else None
        value99 = _added(ttft, "flowloom", 99) if ttft["flowloom"] else None
        peer = _added(ttft, "litellm", 50) if ttft.get("litellm") else None
        peer99 = _added(ttft, "litellm", 99) if ttft.get("litellm") else None
        figures.emit(
            "gateway_added_ttft_p50",
            value,
            "ms",
            peer_value=peer,
            ratio_value=ratio(peer, value) if peer is not None and value else None,
            ratio_def="litellm added / flowloom added",
            goal=f"<= {GOAL_ADDED_TTFT_MS}",
            goal_met=value is not None and value <= GOAL_ADDED_TTFT_MS,
            added_p99_ms=value99,
            peer_added_p99_ms=peer99,
            n=args.stream_n,
            definition="p50 time to the first content delta via the proxy minus direct,"
            " streaming, Anthropic and OpenAI alternately; each proxy alone on its core",
            streams=stream_info,
        )

        # Throughput: the bare simulator on one core, then each proxy.
        steps = [int(x) for x in args.steps.split(",")]
        note("the bare simulator, pinned to the proxy's core")
        bare_proc = start_simulator(base, proxy_core, name="simulator-bare")
        procs.append(bare_proc)
        bare = Target("simulator", bare_proc.url, bare_proc)
        await warm_up(bare, args.warmup)
        bare_steps = await sweep(bare, steps, args.step_seconds)
        bare_proc.stop()
        bare_best = max(bare_steps, key=lambda s: s.rps)
        bare_knee = knee(bare_steps)
        emit(
            "gateway_simulator_throughput",
            bare_best.rps,
            "req/s",
            **figures.context,
            load=loadavg(),
            peer=None,
            at_p99_50ms=bare_knee.rps if bare_knee else None,
            steps=[s.row() for s in bare_steps],
            note="the simulator alone on one core, no proxy: the ceiling of this set-up",
        )
        sweeps: dict[str, list[Step]] = {}
        for target in proxies:
            note(f"throughput sweep: {target.name}")
            with alone(target, proxies):
                sweeps[target.name] = await sweep(target, steps, args.step_seconds)
        knees = {name: knee(s) for name, s in sweeps.items()}
        fk, lk = knees.get("flowloom"), knees.get("litellm")
        figures.emit(
            "gateway_throughput_p99_50ms",
            fk.rps if fk else 0.0,
            "req/s",
            peer_value=(lk.rps if lk else 0.0) if "litellm" in sweeps else None,
            ratio_value=ratio(fk.rps, lk.rps) if fk and lk else None,
            ratio_def="flowloom / litellm",
            goal=f">= {GOAL_THROUGHPUT:.0f} at p99 <= {GOAL_P99_MS:.0f} ms",
            goal_met=bool(fk and fk.rps >= GOAL_THROUGHPUT),
            knee_concurrency=fk.concurrency if fk else None,
            peer_knee_concurrency=lk.concurrency if lk else None,
            simulator_rps=bare_best.rps,
            step_seconds=args.step_seconds,
            steps={name: [s.row() for s in st] for name, st in sweeps.items()},
            definition="closed loop, concurrency stepped up; the best step with p99 <= 50 ms"
            " and no errors (proxy_cpu_pct: the proxy's own CPU use, 100 = one core;"
            " client_cpu_pct: the load generator's; rps_per_core: rps / proxy CPU share)",
        )

        # Memory: idle and under load.
        figures.emit(
            "gateway_rss_idle",
            rss_idle.get("flowloom"),
            "MB",
            peer_value=rss_idle.get("litellm"),
            ratio_value=ratio(rss_idle.get("litellm") or 0, rss_idle["flowloom"]),
            ratio_def="litellm / flowloom",
            goal=f"<= {GOAL_RSS_IDLE_MB:.0f}",
            goal_met=rss_idle["flowloom"] <= GOAL_RSS_IDLE_MB,
            cold_mb=rss_cold.get("flowloom"),
            peer_cold_mb=rss_cold.get("litellm"),
            definition="VmRSS of the process tree, 1 s after a warm-up of both formats"
            " (cold_mb: right after start-up)",
        )
        loaded = {name: max((s.rss_max_mb or 0.0) for s in st) for name, st in sweeps.items()}
        figures.emit(
            "gateway_rss_under_load",
            loaded.get("flowloom"),
            "MB",
            peer_value=loaded.get("litellm"),
            ratio_value=ratio(loaded.get("litellm") or 0, loaded["flowloom"]),
            ratio_def="litellm / flowloom",
            definition="max VmRSS of the process tree sampled every 0.2 s during the sweep",
        )

        # Soak.
        soaks: dict[str, dict[str, Any]] = {}
        for target in proxies:
            seconds = args.soak_seconds if target.name == "flowloom" else args.soak_peer_seconds
            k = knees.get(target.name)
            capacity = k.rps if k else max((s.rps for s in sweeps[target.name]), default=10.0)
            rate = max(1.0, min(args.soak_rate, 0.5 * capacity))
            note(f"soak: {target.name} for {seconds:.0f} s at {rate:.0f} req/s")
            with alone(target, proxies):
                soaks[target.name] = await soak(target, seconds, rate, args.soak_workers)
        fs, ls = soaks["flowloom"], soaks.get("litellm")
        figures.emit(
            "gateway_soak_rss_growth",
            fs["growth_mb"],
            "MB",
            peer_value=ls["growth_mb"] if ls else None,
            ratio_value=None,
            ratio_def="growth in MB for each; no ratio (either may be ~0)",
            goal=f"<= {GOAL_SOAK_GROWTH_MB:.0f} MB between the first and last fifth",
            goal_met=fs["growth_mb"] <= GOAL_SOAK_GROWTH_MB and fs["errors"] == 0,
            soak=soaks,
            definition="paced mixed load (1 in 5 streamed) at min(--soak-rate, half the"
            " proxy's knee); median VmRSS of the last fifth minus the first fifth",
        )

        # Recording: one verified gateway.exchange per request FlowLoom served.
        fl = by["flowloom"]
        status = wait_recorder_idle(flowloom)
        flowloom.stop()
        procs.remove(flowloom)
        check = check_flowloom_ledger(flowloom, fl.sent)
        figures.emit(
            "gateway_recorded",
            check["ok"],
            "bool",
            recorder_before_stop=status,
            **check,
        )
        if args.workers:
            ok = await workers_phase(args, base, simulator, litellm_exe, litellm_version)
            check["ok"] = check["ok"] and ok
        failures = {t.name: t.failures for t in targets if t.failures}
        if failures:
            emit("gateway_failures", sum(len(v) for v in failures.values()), "count", **failures)
        emit("gateway_load", loadavg()[0], "loadavg", at_start=started_load, at_end=loadavg())
        return 0 if check["ok"] else 1
    except SetupError as exc:
        emit("gateway_setup_failed", False, "bool", reason=str(exc)[:2000])
        return 2
    finally:
        for proc in reversed(procs):
            proc.stop(10)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            note(f"kept {base}")


async def _measure_workers(
    args: argparse.Namespace, direct: Target, target: Target
) -> dict[str, Any]:
    """Added latency at concurrency 1, then throughput and CPU per request at each step."""
    await warm_up(target, args.warmup)
    rounds = max(1, args.workers_n // args.block)

    async def plain(session: aiohttp.ClientSession, t: Target, i: int) -> Any:
        return await send(session, t, PLAIN_MIX[i % len(PLAIN_MIX)])

    lat = await interleaved([direct, target], rounds, args.block, plain)
    mine = [x * 1000 for x in lat[target.name]]
    base = [x * 1000 for x in lat[direct.name]]
    out: dict[str, Any] = {
        "added_p50_ms": percentile(mine, 50) - percentile(base, 50),
        "added_p99_ms": percentile(mine, 99) - percentile(base, 99),
        "n": len(mine),
        "steps": [],
    }
    for concurrency in [int(c) for c in args.workers_concurrency.split(",") if c]:
        step = await closed_loop(target, concurrency, args.step_seconds, warmup=0.5)
        cpu_us = (
            step.proxy_cpu_pct / 100.0 / step.rps * 1e6
            if step.proxy_cpu_pct is not None and step.rps > 0
            else None
        )
        row = {**step.row(), "proxy_cpu_us_per_request": cpu_us}
        out["steps"].append(row)
        note(
            f"{target.name}: c={concurrency} {step.rps:,.0f} req/s p99 {step.p99_ms:.1f} ms"
            f" errors {step.errors} proxy cpu {step.proxy_cpu_pct or 0:.0f}%"
            + (f" = {cpu_us:,.0f} us/request" if cpu_us else "")
        )
    best = max(out["steps"], key=lambda r: r["rps"]) if out["steps"] else None
    out["best_rps"] = best["rps"] if best else None
    out["best_cpu_us_per_request"] = best["proxy_cpu_us_per_request"] if best else None
    out["rss_mb"] = target.proc.rss_mb() if target.proc else None
    return out


async def _workers_only(
    args: argparse.Namespace, base: Path, simulator: Proc, started_load: list[float]
) -> int:
    """--workers-only: the multi-process phase alone (the simulator is up)."""
    exe: Path | None = None
    version: str | None = None
    if args.no_litellm:
        emit("gateway_litellm_available", False, "bool", reason="--no-litellm")
    else:
        try:
            exe, version = install_litellm(args.litellm_upgrade)
            emit("gateway_litellm_available", True, "bool", version=version)
        except (SetupError, OSError, subprocess.SubprocessError) as exc:
            emit("gateway_litellm_available", False, "bool", reason=str(exc)[:1500])
    ok = await workers_phase(args, base, simulator, exe, version)
    emit("gateway_load", loadavg()[0], "loadavg", at_start=started_load, at_end=loadavg())
    return 0 if ok else 1


async def workers_phase(
    args: argparse.Namespace,
    base: Path,
    simulator: Proc,
    litellm_exe: Path | None,
    litellm_version: str | None,
) -> bool:
    """FlowLoom with 1, 2, 4 workers on PostgreSQL-backed limits, LiteLLM with as many."""
    direct = Target("direct", simulator.url, simulator)
    all_ok = True
    for count in [int(w) for w in args.workers.split(",") if w]:
        where = base / f"workers-{count}"
        where.mkdir(parents=True, exist_ok=True)
        row: dict[str, Any] = {"workers": count}
        with pg_schema() as database:
            secret = limited_key(
                database,
                rpm=args.workers_rpm,
                tpm=min(args.workers_rpm * 100, 2_000_000_000),
                budget_usd=1e6,
            )
            note(f"FlowLoom, {count} worker(s), limits on PostgreSQL")
            proc = start_flowloom(
                where, simulator.url, None, workers=count, database=database, name="flowloom"
            )
            target = Target(f"flowloom-{count}w", proc.url, proc, key=secret)
            try:
                row["flowloom"] = await _measure_workers(args, direct, target)
                wait_recorder_idle(proc)
            finally:
                proc.stop()
            check = check_flowloom_ledger(proc, target.sent)
            counted = quota_counted(database)
            row["flowloom"].update(
                recorded=check["exchanges"],
                sent=target.sent,
                verified=check["verified"],
                refused_or_failed=target.failures[:3],
                quota_counted=counted,
            )
            all_ok = all_ok and check["ok"]
        if litellm_exe is not None and litellm_version is not None:
            note(f"LiteLLM, {count} worker(s)")
            try:
                peer = start_litellm(
                    where, simulator.url, None, litellm_exe, litellm_version, workers=count
                )
            except (SetupError, OSError) as exc:
                row["litellm"] = {"error": str(exc)[:500]}
            else:
                try:
                    row["litellm"] = await _measure_workers(
                        args, direct, Target(f"litellm-{count}w", peer.url, peer)
                    )
                finally:
                    peer.stop()
        fl = row["flowloom"]
        lt = row.get("litellm") or {}
        emit(
            "gateway_workers",
            fl["best_rps"],
            "req/s",
            **machine(),
            load=loadavg(),
            workers=count,
            added_p50_ms=fl["added_p50_ms"],
            added_p99_ms=fl["added_p99_ms"],
            cpu_us_per_request=fl["best_cpu_us_per_request"],
            peer=f"LiteLLM proxy {litellm_version}, {count} workers, no database (no limits)"
            if lt
            else None,
            peer_value=lt.get("best_rps"),
            peer_added_p50_ms=lt.get("added_p50_ms"),
            peer_added_p99_ms=lt.get("added_p99_ms"),
            peer_cpu_us_per_request=lt.get("best_cpu_us_per_request"),
            ratio=ratio(fl["best_rps"] or 0, lt["best_rps"]) if lt.get("best_rps") else None,
            ratio_def="flowloom req/s / litellm req/s",
            flowloom=fl,
            litellm=lt or None,
            definition="best closed-loop req/s over --workers-concurrency; CPU time of all"
            " the proxy's processes per request at that step; added latency at concurrency"
            " 1 vs direct, interleaved. FlowLoom checks a virtual key's rpm, tpm and budget"
            " shared through PostgreSQL and records every exchange there.",
        )
    return all_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per target, concurrency 1")
    parser.add_argument("--stream-n", type=int, default=400, help="streams per target")
    parser.add_argument("--block", type=int, default=20, help="requests per turn when interleaving")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests per target")
    parser.add_argument("--steps", default="1,2,4,8,16,32,64,128,256", help="concurrency steps")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="seconds per step")
    parser.add_argument(
        "--soak-seconds", type=float, default=30.0, help="FlowLoom's soak (600 = 10 min)"
    )
    parser.add_argument(
        "--soak-peer-seconds", type=float, default=None, help="LiteLLM's soak (default: the same)"
    )
    parser.add_argument(
        "--soak-rate", type=float, default=300.0, help="soak req/s (capped at half the knee)"
    )
    parser.add_argument("--soak-workers", type=int, default=16, help="concurrent soak clients")
    parser.add_argument("--no-litellm", action="store_true", help="FlowLoom vs the simulator only")
    parser.add_argument(
        "--litellm-upgrade", action="store_true", help="pip install --upgrade first"
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    parser.add_argument(
        "--plain-io",
        action="store_true",
        help="run FlowLoom's gateway without uvloop and httptools (asyncio + h11)",
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="worker counts for the PostgreSQL-backed multi-process phase"
        " (default 1,2,4; with --quick none; '' to skip)",
    )
    parser.add_argument(
        "--workers-concurrency", default="8,32,64", help="closed-loop steps in that phase"
    )
    parser.add_argument(
        "--workers-n", type=int, default=600, help="requests per target, concurrency 1, per count"
    )
    parser.add_argument(
        "--workers-rpm", type=int, default=10_000_000, help="the virtual key's rpm in that phase"
    )
    parser.add_argument("--workers-only", action="store_true", help="only the multi-process phase")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--dir", default=None, help="where the work directory goes")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, ledger)"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.stream_n, args.block, args.warmup = 60, 20, 10, 10
        args.steps, args.step_seconds, args.soak_seconds = "1,8,32", 0.6, 2.0
        args.soak_rate = 100.0
        args.workers_n, args.workers_concurrency = 40, "8"
    if args.workers is None:
        args.workers = "" if args.quick and not args.workers_only else "1,2,4"
    if args.soak_peer_seconds is None:
        args.soak_peer_seconds = args.soak_seconds
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        args.pin = False
    if args.pin:
        os.sched_setaffinity(0, {LOAD_CORE})  # the load generator shares the simulator's core
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
