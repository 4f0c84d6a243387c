"""`flowloom status` reports the last verification and warns loudly when it failed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.capture.git_sandbox import Sandbox


def test_status_shows_the_last_verification(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.init("--agent", "none")
    assert "last verification: none" in box.ok("status")

    assert box.flowloom("log", "verify").returncode == 0
    shown = box.ok("status")
    assert "last verification: ok" in shown
    assert json.loads(box.ok("status", "--json"))["last_verification"]["ok"] is True

    database = box.repo / ".git" / "flowloom" / "ledger.db"
    conn = sqlite3.connect(database)
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("UPDATE entries SET envelope = CAST(envelope || ' ' AS BLOB) WHERE idx = 0")
    conn.commit()
    conn.close()
    assert box.flowloom("log", "verify").returncode == 1
    warned = box.flowloom("status")
    assert "WARNING: the last `flowloom log verify`" in warned.stdout
    assert "FAILED" in warned.stdout
