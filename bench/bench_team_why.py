#!/usr/bin/env python3
"""`flowloom why FILE:LINE` in server mode (the team's record) against local mode, one run.

What it builds: a real FlowLoom server (``python -m flowloom serve`` on SQLite, on
loopback) with one project, one developer key; a git repository whose last commit names
a decision by its ``FlowLoom-Decision`` trailer; and `--n` decision records (prompt,
reply, decision: 3 entries each), written twice: to the server through its batch API,
and to the repository's local ledger. Then it times ``python -m flowloom why app.py:1
--json`` end to end, interleaved, over `--samples` runs each:

- ``local``: no server configured, the local ledger (the peer);
- ``server_cold``: server mode with no copy of the server's log yet (the copy made now:
  every entry fetched and checked against its leaf hash and the signed root);
- ``server_warm``: server mode, the copy up to date (the server asked for its signed
  checkpoint, nothing to fetch) — the default, ``fresh_seconds`` 0;
- ``server_fresh``: server mode within ``FLOWLOOM_SERVER_FRESH_SECONDS`` (the copy used
  as it is, "as of" shown; the server not asked);
- ``server_one_new``: server mode after one more entry reached the server (only it is
  fetched: the copy extends from its verified size).

Every answer is checked (right decision) before it counts. Goal: warm within 1.5x of
local and cold at ``--n`` 2000 within 10x (figures from this machine, same run).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench._common import emit, latency_summary_ms, machine, note, ratio  # noqa: E402
from flowloom.decisions.records import Decision, new_decision_id, record_meta  # noqa: E402

PROJECT = "bench"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def provision(database: str, home: Path, port: int) -> str:
    """The project and a developer with an API key, made in process before the server runs."""
    from flowloom.server.build import build_server
    from flowloom.server.settings import ServerSettings

    server = build_server(ServerSettings(database=database, home=home, host="127.0.0.1", port=port))
    try:
        server.directory.create_project(PROJECT)
        user = server.directory.create_user("dev@example.com", "Dev")
        server.directory.grant(user.id, PROJECT, "developer")
        _, secret = server.directory.create_key(user.id, name="bench")
        return secret
    finally:
        server.close()


def start_server(database: str, home: Path, port: int, env: dict[str, str]) -> Any:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "flowloom", "serve", "--database", database),
            *("--home", str(home), "--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "warning"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as ok,
        ):
            if ok.status == 200:
                return process
        time.sleep(0.2)  # waiting for a port: not a test, no event to wait on
    process.kill()
    raise SystemExit("the server did not start")


def records(n: int) -> list[tuple[str, dict[str, Any], str | None]]:
    """(kind, meta, body) of `n` prompt/reply/decision triples; the last decision's id
    is the subject of the last entry."""
    found: list[tuple[str, dict[str, Any], str | None]] = []
    for i in range(n):
        decision = Decision(
            id=new_decision_id(),
            title=f"Change {i}",
            rationale="the benchmark says so",
            session=f"s-{i // 50}",
            files=("app.py",),
        )
        session = {"session": decision.session or ""}
        found.append(("agent.prompt", session, f"prompt {i}"))
        found.append(("agent.response", session, f"reply {i}"))
        found.append(("decision.record", record_meta(decision), None))
    return found


def send(url: str, key: str, rows: list[tuple[str, dict[str, Any], str | None]]) -> None:
    from flowloom.client.http import HttpClient

    http = HttpClient(url, key, timeout=120)
    for start in range(0, len(rows), 500):
        events = []
        for kind, meta, body in rows[start : start + 500]:
            event: dict[str, Any] = {"kind": kind, "ts": "2026-12-07T10:00:00.000000Z", **meta}
            if body is not None:
                event["body"] = body
            events.append(event)
        http.post_json(f"/api/v1/projects/{PROJECT}/ledger/batch", {"events": events})


def record_locally(repo: Path, env: dict[str, str], rows: list[Any]) -> None:
    from flowloom.config import load_settings
    from flowloom.services import build_services

    services = build_services(load_settings(repo, env))
    try:
        ledger = services.ledger
        entries = [
            ledger.prepare(k, body=b.encode() if b else None, meta=m).entry for k, m, b in rows
        ]
        ledger.writer.append_many(entries)
    finally:
        services.close()


def why(repo: Path, env: dict[str, str], decision: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flowloom", "why", "app.py:1", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"why failed: {done.stderr}")
    answer = json.loads(done.stdout)
    if (answer.get("decision") or {}).get("id") != decision:
        raise SystemExit(f"why found the wrong decision: {done.stdout[:400]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="decisions (3 entries each)")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--dir", help="where to make the scratch directory")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="flowloom-bench-team-why-", dir=args.dir))
    process = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
        base.update(
            {
                "HOME": str(scratch / "user"),
                "XDG_CONFIG_HOME": str(scratch / "user" / ".config"),
                "FLOWLOOM_HOME": str(scratch / "user" / "flowloom"),
                "FLOWLOOM_PROJECT": PROJECT,
                **GIT_ENV,
            }
        )
        database = str(scratch / "server.db")
        key = provision(database, scratch / "server-home", port)
        server_env = {**base, "FLOWLOOM_HOME": str(scratch / "server-home")}
        process = start_server(database, scratch / "server-home", port, server_env)

        repo = scratch / "repo"
        repo.mkdir()
        rows = records(args.n)
        decision = rows[-1][1]["subject"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=base)
        (repo / "app.py").write_text("VALUE = 1\n")
        subprocess.run(["git", "add", "app.py"], cwd=repo, check=True, env=base)
        message = f"Set the value\n\nFlowLoom-Decision: {decision}\n"
        subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True, env=base)
        note(f"writing {len(rows)} entries to the server and to the local ledger")
        send(url, key, rows)
        record_locally(repo, base, rows)

        team = {**base, "FLOWLOOM_SERVER": url, "FLOWLOOM_API_KEY": key}
        fresh = {**team, "FLOWLOOM_SERVER_FRESH_SECONDS": "3600"}
        mirrors = str(repo / ".git" / "flowloom" / "servers" / "*.mirror.*")

        def cold() -> float:
            for path in glob.glob(mirrors):
                os.unlink(path)
            return why(repo, team, decision)

        def one_new() -> float:
            send(url, key, [("agent.prompt", {"session": "s-new"}, "one more")])
            return why(repo, team, decision)

        modes = {
            "local": lambda: why(repo, base, decision),
            "server_cold": cold,
            "server_warm": lambda: why(repo, team, decision),
            "server_fresh": lambda: why(repo, fresh, decision),
            "server_one_new": one_new,
        }
        why(repo, base, decision)  # warm the interpreter's files and the why index
        why(repo, team, decision)
        times: dict[str, list[float]] = {name: [] for name in modes}
        for sample in range(args.samples):
            note(f"sample {sample + 1}/{args.samples}")
            for name, run in modes.items():
                times[name].append(run())
        local = latency_summary_ms(times["local"])
        for name, seconds in times.items():
            summary = latency_summary_ms(seconds)
            goal = {"server_warm": 1.5, "server_cold": 10.0}.get(name)
            factor = ratio(summary["p50_ms"], local["p50_ms"])
            emit(
                f"team_why_{name}_p50",
                summary["p50_ms"],
                "ms",
                **summary,
                peer="local",
                peer_value=local["p50_ms"],
                ratio=factor,
                ratio_def="p50 / local p50",
                goal=goal,
                goal_met=None if goal is None or factor is None else factor <= goal,
                n=len(rows),
                samples=args.samples,
                **machine(),
            )
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        if args.keep:
            note(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
