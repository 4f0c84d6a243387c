#!/usr/bin/env python3
"""`flowloom why FILE:LINE` latency on a repository of N commits, against bare git blame.

What it builds: a git repository of `--commits` commits (default 10,000; written with
``git fast-import``) over `--files` files of `--lines` lines, each commit changing one
line, and a ledger in the repository's ``.git/flowloom/ledger.db`` holding for every
commit a prompt, a reply, a decision record and a ``commit.link`` (with its patch id):
40,000 entries for 10,000 commits. Commits reach their decision three ways, as in real
use: 75 % by ``FlowLoom-Decision`` trailer, 20 % by ``commit.link`` only (no trailer),
5 % by patch id only (the link names a pre-rebase commit id).

What it times, over `--samples` random lines, interleaved:

- ``why_latency``: ``flowloom.decisions.why.explain`` in process, with the look-up
  cache the CLI uses: blame, the commit's trailers, the link look-ups, the decision, and
  inclusion proofs of the record, prompt and reply against the latest checkpoint, with
  the bodies checked (``why_first_query``: the first question, which builds the cache);
- the floor, in the same run: ``git blame --porcelain -L N,N`` alone (a process, as
  ``why`` runs it);
- ``why_cli_latency``: ``python -m flowloom why FILE:LINE --json`` end to end over
  `--cli-samples` lines, against the same git blame floor; ``python -m flowloom
  --version`` (interpreter and CLI start-up) is shown beside it.

Goal: ``why`` median and p95 <= 200 ms at 10,000 commits. Every answer is checked
(right decision, verified) before it counts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import emit, latency_summary_ms, machine, note, ratio  # noqa: E402
from flowloom.config import load_settings  # noqa: E402
from flowloom.decisions.records import Decision, new_decision_id, record_meta  # noqa: E402
from flowloom.decisions.why import explain, index_path  # noqa: E402
from flowloom.services import Services, build_services  # noqa: E402
from flowloom.store.interface import PendingEntry  # noqa: E402

GOAL_MS = 200.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def how_linked(i: int) -> str:
    if i % 20 == 7:
        return "patch-id"
    if i % 5 == 1:
        return "commit.link"
    return "trailer"


def git(cwd: Path, env: dict[str, str], *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=True
    ).stdout


def record_decisions(services: Services, commits: int, batch: int = 2000) -> list[Decision]:
    """A prompt, a reply and a decision record per commit, appended in batches."""
    ledger = services.ledger
    decisions: list[Decision] = []
    pending: list[PendingEntry] = []
    base = ledger.size()
    for i in range(commits):
        at = base + 3 * i
        decision = Decision(
            id=new_decision_id(),
            title=f"Change {i}",
            context=f"Please change line {i}",
            choice=f"set value_{i}",
            rationale="the benchmark says so",
            requested_by="bench",
            session=f"s-{i // 50}",
            files=(f"src/f{i}.py",),
            prompt_entry=at,
            response_entry=at + 1,
        )
        session = {"session": decision.session or ""}
        pending.append(
            ledger.prepare("agent.prompt", body=f"prompt {i}".encode(), meta=session).entry
        )
        pending.append(
            ledger.prepare("agent.response", body=f"reply {i}".encode(), meta=session).entry
        )
        pending.append(ledger.prepare("decision.record", meta=record_meta(decision)).entry)
        decisions.append(decision)
        if len(pending) >= batch or i == commits - 1:
            acks = ledger.writer.append_many(pending)
            assert acks[-1].index == base + 3 * (i + 1) - 1, "indices are not where planned"
            pending = []
    return decisions


def fast_import_stream(decisions: list[Decision], files: int, lines: int) -> bytes:
    """Commits changing one line each; trailers only on the commits linked by trailer."""
    state: dict[int, list[str]] = {}
    out: list[bytes] = []
    for i, decision in enumerate(decisions):
        number = i % files
        content = state.setdefault(number, [f"line_{j} = 0\n" for j in range(lines)])
        content[(i // files) % lines] = f"value_{i} = {i}  # changed by commit {i}\n"
        message = f"Change {i}\n"
        if how_linked(i) == "trailer":
            message += f"\nFlowLoom-Decision: {decision.id}\nFlowLoom-Session: {decision.session}\n"
        body = "".join(content).encode()
        msg = message.encode()
        stamp = 1_700_000_000 + i
        out.append(
            b"commit refs/heads/main\n"
            + f"mark :{i + 1}\n".encode()
            + f"author Bench <bench@example.com> {stamp} +0000\n".encode()
            + f"committer Bench <bench@example.com> {stamp} +0000\n".encode()
            + f"data {len(msg)}\n".encode()
            + msg
            + (f"from :{i}\n".encode() if i else b"")
            + f"M 100644 inline src/f{number}.py\ndata {len(body)}\n".encode()
            + body
            + b"\n"
        )
    return b"".join(out)


def link_commits(
    services: Services, decisions: list[Decision], shas: list[str], pids: dict[str, str]
) -> None:
    ledger = services.ledger
    rnd = random.Random(7)
    batch: list[PendingEntry] = []
    for i, (decision, sha) in enumerate(zip(decisions, shas, strict=True)):
        # A patch-id-only commit was linked under the id it had before a rebase.
        subject = f"{rnd.getrandbits(160):040x}" if how_linked(i) == "patch-id" else sha
        refs = {
            "decision": decision.id,
            "session": decision.session,
            "entry": decision.response_entry,
            "patch_id": pids[sha],
            "branch": "main",
        }
        batch.append(ledger.prepare("commit.link", meta={"subject": subject, "refs": refs}).entry)
    for start in range(0, len(batch), 2000):
        ledger.writer.append_many(batch[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000, help="commits in the repository")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--lines", type=int, default=50, help="lines per file")
    parser.add_argument("--samples", type=int, default=200, help="lines asked about in process")
    parser.add_argument("--cli-samples", type=int, default=20, help="lines asked via the CLI")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 commits, 50 samples")
    parser.add_argument("--dir", type=Path, default=None, help="where temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the repository")
    args = parser.parse_args()
    if args.quick:
        args.commits, args.samples, args.cli_samples = 1_000, 50, 5

    scratch = Path(tempfile.mkdtemp(prefix="flowloom-bench-why-", dir=args.dir))
    repo = scratch / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        **GIT_ENV,
        "HOME": str(scratch),
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "FLOWLOOM_HOME": str(scratch / "home"),
    }
    for name in ("FLOWLOOM_DATABASE", "FLOWLOOM_PROJECT", "FLOWLOOM_DEBUG"):
        env.pop(name, None)
    services: Services | None = None
    try:
        git(repo, env, "init", "-q", "-b", "main")
        services = build_services(load_settings(repo, env))
        started = time.perf_counter()
        decisions = record_decisions(services, args.commits)
        note(f"recorded {3 * args.commits} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        stream = fast_import_stream(decisions, args.files, args.lines)
        git(repo, env, "fast-import", "--quiet", stdin=stream)
        git(repo, env, "reset", "-q", "--hard", "main")
        shas = git(repo, env, "rev-list", "--reverse", "main").decode().split()
        assert len(shas) == args.commits
        note(f"imported {args.commits} commits in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        log = git(repo, env, "log", "-p", "--no-color", "--format=commit %H", "main")
        pids = {
            sha: pid
            for pid, sha in (
                line.split()
                for line in git(repo, env, "patch-id", "--stable", stdin=log).decode().splitlines()
            )
        }
        link_commits(services, decisions, shas, pids)
        services.ledger.checkpoint()
        size = services.ledger.size()
        note(f"linked, ledger of {size} entries, in {time.perf_counter() - started:.1f} s")

        by_sha = {sha: (i, d) for i, (sha, d) in enumerate(zip(shas, decisions, strict=True))}
        rnd = random.Random(args.seed)
        locations = [
            (
                f"src/f{rnd.randrange(min(args.files, args.commits))}.py",
                rnd.randrange(args.lines) + 1,
            )
            for _ in range(args.samples)
        ]
        ledger = services.ledger
        cache = index_path(repo / ".git")
        t0 = time.perf_counter()
        explain(ledger, repo, *locations[0], index_path=cache)  # builds the look-up cache
        first_s = time.perf_counter() - t0
        emit(
            "why_first_query",
            first_s * 1000,
            "ms",
            n=args.commits,
            ledger_entries=size,
            what="the first why: builds the look-up cache from the whole log, then answers",
        )
        explain(ledger, repo, *locations[0], index_path=cache)  # warm: page cache

        why_s: list[float] = []
        blame_s: list[float] = []
        paths: Counter[str] = Counter()
        by_path: dict[str, list[float]] = {}
        clock = time.perf_counter
        for path, line in locations:
            t0 = clock()
            git(repo, env, "blame", "--porcelain", "-L", f"{line},{line}", "--", path)
            blame_s.append(clock() - t0)
            t0 = clock()
            answer = explain(ledger, repo, path, line, index_path=cache)
            elapsed = clock() - t0
            why_s.append(elapsed)
            i, expected = by_sha[answer.blame.commit]
            assert answer.decision.id == expected.id, (path, line)
            assert answer.linked_by == how_linked(i), (answer.linked_by, i)
            assert answer.verified, answer.to_json()
            paths[answer.linked_by] += 1
            by_path.setdefault(answer.linked_by, []).append(elapsed)

        context = {
            "n": args.commits,
            "ledger_entries": size,
            "files": args.files,
            "samples": args.samples,
            **machine(),
        }
        why_stats = latency_summary_ms(why_s)
        blame_stats = latency_summary_ms(blame_s)
        emit(
            "why_latency",
            why_stats["p50_ms"],
            "ms",
            **context,
            what="flowloom.decisions.why.explain in process (with its look-up cache): blame, "
            "trailers, link, decision, 3 proofs and body checks",
            **why_stats,
            by_link={k: latency_summary_ms(v)["p50_ms"] for k, v in sorted(by_path.items())},
            link_counts=dict(paths),
            peer="git blame --porcelain -L N,N alone (the floor)",
            peer_p50_ms=blame_stats["p50_ms"],
            peer_p95_ms=blame_stats["p95_ms"],
            ratio=ratio(why_stats["p50_ms"], blame_stats["p50_ms"]),
            ratio_def="why median / git blame median",
            goal=f"median and p95 <= {GOAL_MS:g} ms",
            goal_met=why_stats["p50_ms"] <= GOAL_MS and why_stats["p95_ms"] <= GOAL_MS,
        )

        services.close()
        services = None
        cli_s: list[float] = []
        cli_blame_s: list[float] = []
        start_s: list[float] = []
        command = [sys.executable, "-m", "flowloom"]
        for path, line in locations[: args.cli_samples]:
            t0 = clock()
            subprocess.run([*command, "--version"], env=env, capture_output=True, check=True)
            start_s.append(clock() - t0)
            t0 = clock()
            git(repo, env, "blame", "--porcelain", "-L", f"{line},{line}", "--", path)
            cli_blame_s.append(clock() - t0)
            t0 = clock()
            done = subprocess.run(
                [*command, "why", f"{path}:{line}", "--json"],
                cwd=repo,
                env=env,
                capture_output=True,
                check=False,
            )
            cli_s.append(clock() - t0)
            assert done.returncode == 0, done.stderr.decode()
        cli_stats = latency_summary_ms(cli_s)
        cli_blame = latency_summary_ms(cli_blame_s)
        emit(
            "why_cli_latency",
            cli_stats["p50_ms"],
            "ms",
            **{**context, "samples": args.cli_samples},
            what="python -m flowloom why FILE:LINE --json, end to end",
            **cli_stats,
            startup_p50_ms=latency_summary_ms(start_s)["p50_ms"],
            startup_what="python -m flowloom --version",
            peer="git blame --porcelain -L N,N alone (the floor)",
            peer_p50_ms=cli_blame["p50_ms"],
            peer_p95_ms=cli_blame["p95_ms"],
            ratio=ratio(cli_stats["p50_ms"], cli_blame["p50_ms"]),
            ratio_def="CLI median / git blame median",
        )
    finally:
        if services is not None:
            services.close()
        if args.keep:
            note(f"keeping {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
