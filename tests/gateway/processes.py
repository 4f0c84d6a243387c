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
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "FLOWLOOM_HOME": str(tmp_path / "home"),
        **(env or {}),
    }
    database = tmp_path / "gateway.db"
    argv = [sys.executable, "-m", "flowloom", "--database", str(database), "gateway", "serve"]
    process = subprocess.Popen(
        [*argv, "--open-access", "--port", str(port), *args],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=60)
        yield url
    finally:
        stop(process)


def recorded_exchanges(database: Path) -> list[dict[str, Any]]:
    """Every gateway.exchange event in `database`, any log, oldest first per log."""
    store = open_store(str(database))
    try:
        out = []
        for log in store.logs():
            for index in range(store.size(log)):
                entry = store.entry(log, index)
                assert entry is not None
                envelope = json.loads(entry.envelope)
                if envelope["kind"] == "gateway.exchange":
                    out.append(envelope)
        return out
    finally:
        store.close()
