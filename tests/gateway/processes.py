"""`flowloom gateway serve` as a real process for tests, and the exchanges it recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowloom.services import open_store
from tests.server.support import ROOT, free_port, stop, wait_ready


@contextmanager
def gateway_process(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`flowloom --database <tmp>/gateway.db gateway serve --open-access --port P *args`
    until /readyz answers; yields its URL; SIGTERM after (the recorder flushes first)."""
    with served_gateway(tmp_path, "--open-access", *args, env=env) as (url, _):
        yield url


@contextmanager
def served_gateway(
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    database: str | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`flowloom --database DB gateway serve --port P *args` (DB: `database`, else
    <tmp>/gateway.db) until /readyz answers; yields its URL and process; SIGTERM after."""
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "FLOWLOOM_HOME": str(tmp_path / "home"),
        **(env or {}),
    }
    database = database or str(tmp_path / "gateway.db")
    argv = [sys.executable, "-m", "flowloom", "--database", database, "gateway", "serve"]
    process = subprocess.Popen(
        [*argv, "--port", str(port), *args],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=90)
        yield url, process
    finally:
        stop(process)


def recorded_exchanges(
    database: Path | str, *, logs: list[str] | None = None, bodies: bool = False
) -> list[dict[str, Any]]:
    """Every gateway.exchange event in `database` (in `logs`, else any log), oldest first
    per log; with `bodies`, each carries its body (request and response) as "_body"."""
    store = open_store(str(database))
    try:
        out = []
        for log in store.logs() if logs is None else logs:
            for index in range(store.size(log)):
                entry = store.entry(log, index)
                assert entry is not None
                envelope = json.loads(entry.envelope)
                if envelope["kind"] != "gateway.exchange":
                    continue
                if bodies:
                    body = store.body(envelope["body"]) if "body" in envelope else None
                    envelope["_body"] = json.loads(body.content) if body is not None else None
                out.append(envelope)
        return out
    finally:
        store.close()


def exchanges_with_bodies(database: Path | str) -> list[dict[str, Any]]:
    """`recorded_exchanges` with each exchange's body, for tests that read both."""
    return recorded_exchanges(database, bodies=True)
