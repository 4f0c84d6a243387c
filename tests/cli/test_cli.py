"""The command line, run as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.ledger.merkle import leaf_hash
from flowloom.ledger.note import Verifier
from flowloom.ledger.receipt import Receipt, verify_receipt


class Flowloom:
    """Runs `python -m flowloom` with an isolated home and database."""

    def __init__(self, tmp_path: Path, database: str | None = None) -> None:
        self.home = tmp_path / "home"
        self.cwd = tmp_path / "work"
        self.cwd.mkdir(exist_ok=True)
        self.database = database or str(tmp_path / "ledger.db")
        self.env = {
            **os.environ,
            "FLOWLOOM_HOME": str(self.home),
            "FLOWLOOM_DATABASE": self.database,
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
        }
        self.env.pop("FLOWLOOM_DEBUG", None)

    def __call__(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            input=input,
            capture_output=True,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, input: bytes | None = None) -> str:
        result = self(*args, input=input)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()

    def size(self) -> int:
        return len(self.ok("log", "show").splitlines())


@pytest.fixture
def fl(tmp_path: Path) -> Flowloom:
    return Flowloom(tmp_path)


def _one_line_error(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("flowloom: error: ")
    return err


def test_end_to_end(fl: Flowloom, tmp_path: Path) -> None:
    out = fl.ok("log", "append", "--kind", "agent.prompt", "--body-file", "-", input=b"add a cache")
    index, leaf = out.split()
    assert index == "1"  # entry 0 records the new signing key
    assert len(bytes.fromhex(leaf)) == 32
    meta = json.dumps({"session": "s-1", "subject": "app.py", "refs": {"ticket": "ABC-1"}})
    fl.ok("log", "append", "--kind", "artifact.write", "--meta", meta)
    shown = fl.ok("log", "show", "--json").splitlines()
    events = [json.loads(line) for line in shown]
    assert [e["event"]["kind"] for e in events] == [
        "key.generated",
        "agent.prompt",
        "artifact.write",
    ]
    assert events[2]["event"]["refs"] == {"ticket": "ABC-1"}
    assert "agent.prompt" in fl.ok("log", "show", "--kind", "agent.prompt")
    digest = events[1]["event"]["body"]
    assert fl.ok("log", "body", digest) == "add a cache"

    note = fl.ok("log", "checkpoint")
    assert note.startswith("flowloom.local/proj\n3\n")
    vkey = fl.ok("log", "vkey").strip()
    verifier = Verifier.from_vkey(vkey)
    receipt = Receipt.parse(fl.ok("log", "prove", "1"))
    envelope = json.dumps(events[1]["event"], separators=(",", ":"), sort_keys=True).encode()
    assert verify_receipt(receipt, leaf_hash(envelope), verifier).size == 3
    consistency = fl.ok("log", "consistency", "1")
    assert consistency.startswith("old 1\n")

    assert "ok: the log verifies" in fl.ok("log", "verify")
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(note)
    assert fl("log", "verify", "--against", str(kept)).returncode == 0

    bundle = tmp_path / "bundle"
    fl.ok("log", "export", str(bundle))
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(vkey + "\n")
    assert "ok: the bundle verifies" in fl.ok(
        "log", "verify-bundle", str(bundle), "--vkey", str(vkey_file)
    )
    (bundle / "tile" / "entries" / "000.p/4").write_bytes(b"\x00\x02{}")
    broken = fl("log", "verify-bundle", str(bundle), "--vkey", vkey)
    assert broken.returncode == 1
    assert b"entry 0:" in broken.stdout


def test_private_key_stays_private(fl: Flowloom) -> None:
    outputs = [fl("log", "vkey"), fl("log", "checkpoint"), fl("log", "show", "--json")]
    outputs.append(
        fl(
            "log",
            "append",
            "--kind",
            "agent.prompt",
            "--body-file",
            "-",
            "--data-subject",
            "x",
            input=b"secret",
        )
    )
    keys = list((fl.home / "keys").iterdir())
    assert {k.suffix for k in keys} == {".skey", ".key"}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = next(k for k in keys if k.suffix == ".skey").read_text().strip()
    for result in outputs:
        assert secret.encode() not in result.stdout + result.stderr
        assert b"PRIVATE" not in result.stdout + result.stderr


def test_group_readable_key_is_refused(fl: Flowloom) -> None:
    fl.ok("log", "checkpoint")  # the first write to a new log generates its key
    key = next((fl.home / "keys").glob("*.skey"))
    key.chmod(0o644)
    fl.ok("log", "append", "--kind", "agent.tool")  # a plain event needs no key
    err = _one_line_error(fl("log", "checkpoint"), 5)
    assert "chmod 600" in err


def test_verify_names_tampered_entries(fl: Flowloom) -> None:
    for i in range(5):
        fl.ok("log", "append", "--kind", "agent.tool", "--meta", json.dumps({"subject": f"f{i}"}))
    fl.ok("log", "checkpoint")
    conn = sqlite3.connect(fl.database)
    conn.execute("DROP TRIGGER entries_append_only_update")
    conn.execute("DROP TRIGGER entries_append_only_delete")
    conn.execute(
        "UPDATE entries SET envelope = CAST(replace(envelope, 'f2', 'f9') AS BLOB) WHERE idx = 3"
    )
    conn.execute("DELETE FROM entries WHERE idx = 5")
    conn.commit()
    conn.close()
    result = fl("log", "verify")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "entry 3: modified" in out
    assert "entry 5: missing" in out


def test_rollback_detected_against_kept_checkpoint(fl: Flowloom, tmp_path: Path) -> None:
    import shutil

    fl.ok("log", "append", "--kind", "agent.tool")
    backup = tmp_path / "backup.db"
    fl.ok("log", "checkpoint")
    shutil.copy(fl.database, backup)
    fl.ok("log", "append", "--kind", "agent.tool")
    kept = tmp_path / "kept"
    kept.write_text(fl.ok("log", "checkpoint"))
    shutil.copy(backup, fl.database)  # restore an old backup: history rolled back
    for suffix in ("-wal", "-shm"):
        Path(fl.database + suffix).unlink(missing_ok=True)
    assert fl("log", "verify").returncode == 0
    result = fl("log", "verify", "--against", str(kept))
    assert result.returncode == 1
    assert b"rollback" in result.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["log", "append", "--kind", "agent.tool", "--meta", "{not json"], None, "--meta"),
        (["log", "append", "--kind", "agent.tool", "--meta", "[1]"], None, "JSON object"),
        (["log", "append", "--kind", "agent.tool", "--meta", '{"v":1}'], None, "v"),
        (["log", "append", "--kind", "agent.tool", "--meta", '{"a":1,"a":2}'], None, "duplicate"),
        (["log", "append", "--kind", "no.such.kind"], None, "kind"),
        (["log", "append", "--kind", "agent.tool", "--body-file", "-"], b"x" * 2000, "limit"),
        (
            ["log", "append", "--kind", "agent.tool", "--body-file", "/nonexistent"],
            None,
            "cannot read",
        ),
        (["log", "prove", "99"], None, "99"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    fl: Flowloom, args: list[str], stdin: bytes | None, message: str
) -> None:
    fl.ok("log", "append", "--kind", "agent.tool")
    before = fl.size()
    result = fl(*args, input=stdin, env={"FLOWLOOM_MAX_BODY_BYTES": "1024"})
    err = _one_line_error(result, 6 if args[1] == "prove" else 3)
    assert message in err
    assert fl.size() == before


def test_invalid_utf8_meta_file(fl: Flowloom, tmp_path: Path) -> None:
    bad = tmp_path / "meta.json"
    bad.write_bytes(b'{"subject": "caf\xe9"}')
    err = _one_line_error(fl("log", "append", "--kind", "agent.tool", "--meta", f"@{bad}"), 3)
    assert "UTF-8" in err


def test_corrupt_database_file(fl: Flowloom) -> None:
    fl.ok("log", "append", "--kind", "agent.tool")
    data = bytearray(Path(fl.database).read_bytes())
    data[100:4096] = os.urandom(3996)  # wreck the header page and the schema
    Path(fl.database).write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(fl.database + suffix).unlink(missing_ok=True)
    _one_line_error(fl("log", "show"), 4)


def test_foreign_database_file(fl: Flowloom, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n" * 100)
    err = _one_line_error(fl("--database", str(text), "log", "show"), 4)
    assert "not a FlowLoom database" in err
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    err = _one_line_error(fl("--database", str(other), "log", "show"), 4)
    assert "did not create" in err
    assert other.read_bytes()  # untouched


def test_unreachable_postgres(fl: Flowloom) -> None:
    url = "postgresql://flowloom:s3cret@127.0.0.1:1/nowhere"
    err = _one_line_error(fl("--database", url, "log", "show"), 4)
    assert "s3cret" not in err


def test_usage_error_exit_code(fl: Flowloom) -> None:
    assert fl("log", "append").returncode == 2
    assert fl("log", "prove", "-3").returncode == 2


def test_demo_runs(tmp_path: Path) -> None:
    fl = Flowloom(tmp_path)
    out = fl.ok("demo", "--dir", str(tmp_path / "demo"))
    # The main job, step by step (README: `make demo`).
    assert "-> agent.prompt" in out and "FlowLoom-Decision: D-" in out
    assert "reply:    entry" in out and "not recorded" not in out  # `why` on the new line
    assert "commit refused" in out and "FlowLoom-Override: docs only" in out
    assert "(verified: ssh)" in out  # the reviewer's approval, signed with their key
    assert "ok: 2 commits" in out and "1 linked, 1 overridden" in out  # `flowloom check`
    assert "part11.html: signature by" in out
    assert "bundle verifies: True" in out
    assert "tampering detected: True" in out
