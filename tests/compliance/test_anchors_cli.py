"""`flowloom anchor …` as a user runs it: real processes, a local TSA, witness and S3."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from flowloom.compliance.anchors.s3 import make_client
from flowloom.ledger.note import Verifier
from tests.support.tsa import LocalTsa
from tests.support.witness import LocalWitness


class Flowloom:
    """Runs `python -m flowloom` with an isolated home and database."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        self.database = tmp_path / "ledger.db"
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.env = {
            **os.environ,
            "FLOWLOOM_HOME": str(tmp_path / "home"),
            "FLOWLOOM_DATABASE": str(self.database),
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.env.pop("FLOWLOOM_DEBUG", None)
        self.endpoint = endpoint

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.env,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def db_files(self) -> list[Path]:
        return [p for p in self.database.parent.iterdir() if p.name.startswith("ledger.db")]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = make_client(endpoint_url=endpoint, region="us-east-1")
    client.create_bucket(Bucket="cli-locked", ObjectLockEnabledForBucket=True)
    client.create_bucket(Bucket="cli-plain")
    return client


@pytest.fixture
def tsa() -> Iterator[LocalTsa]:
    server = LocalTsa().start()
    yield server
    server.stop()


def _append(fl: Flowloom, count: int, tag: str) -> None:
    for i in range(count):
        fl.ok("log", "append", "--kind", "agent.prompt", "--meta", f'{{"subject": "{tag}{i}"}}')


def test_anchor_commands_and_rollback_detection(
    tmp_path: Path, endpoint: str, s3: Any, tsa: LocalTsa
) -> None:
    fl = Flowloom(tmp_path, endpoint)
    _append(fl, 3, "first")  # after the key.generated event of the first run
    vkey = fl.ok("log", "vkey").strip()
    witness = LocalWitness(trusted=[Verifier.from_vkey(vkey)]).start()
    try:
        fl.ok("anchor", "witness", "--url", witness.url, "--vkey", witness.vkey)
        backup = tmp_path / "backup"
        backup.mkdir()
        for path in fl.db_files():
            shutil.copy(path, backup / path.name)

        _append(fl, 3, "second")
        record = json.loads(fl.ok("anchor", "tsa", "--url", tsa.url, "--json"))
        assert record["type"] == "tsa" and record["checkpoint"]["size"] == 8
        kept = tmp_path / "tsa-record.json"
        kept.write_text(json.dumps(record))
        out = fl.ok("anchor", "witness", "--url", witness.url, "--vkey", witness.vkey)
        assert out.startswith("anchored: witness size 9")
        out = fl.ok(
            "anchor", "s3", "--bucket", "cli-locked", "--endpoint-url", endpoint,
            "--retain-days", "2",
        )  # fmt: skip
        assert "anchored: s3 size 11" in out  # the export event comes first
        listed = fl.ok("anchor", "list").splitlines()
        assert [line.split("\t")[1].split()[0] for line in listed] == [
            "witness",
            "tsa",
            "witness",
            "s3",
        ]
        checked = fl(
            "anchor", "verify", "--witness-vkey", witness.vkey, "--endpoint-url", endpoint,
            "--witness-url", witness.url, "--bucket", "cli-locked",
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.count("ok    ") == 6 and "FAIL" not in checked.stdout

        refused = fl("anchor", "s3", "--bucket", "cli-plain", "--endpoint-url", endpoint)
        assert refused.returncode == 5
        assert "does not have Object Lock enabled" in refused.stderr

        # The database is restored from the backup: every later anchor event is gone.
        for path in fl.db_files():
            path.unlink()
        for path in backup.iterdir():
            shutil.copy(path, fl.database.parent / path.name)
        assert [line.split("\t")[0] for line in fl.ok("anchor", "list").splitlines()] == ["4"]
        assert fl.ok("anchor", "verify", "--offline").count("ok    ") == 1  # blind alone

        result = fl(
            "anchor", "verify", "--record", str(kept), "--witness-url", witness.url,
            "--witness-vkey", witness.vkey, "--bucket", "cli-locked", "--endpoint-url", endpoint,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        assert len(fails) == 3, result.stdout
        assert "holds checkpoint 8, but the database has only 5 entries" in fails[0]
        assert "s3 bucket cli-locked" in fails[1] and "rolled back" in fails[1]
        # the probe above advanced the witness to 12
        assert "has cosigned size 12 but this log has only 5" in fails[2]
        assert "anchor check(s) failed" in result.stderr

        again = fl("anchor", "witness", "--url", witness.url, "--vkey", witness.vkey)
        assert again.returncode == 1 and "rolled back" in again.stderr
    finally:
        witness.stop()


def test_unreachable_tsa_exits_with_the_remote_code(tmp_path: Path, endpoint: str) -> None:
    fl = Flowloom(tmp_path, endpoint)
    _append(fl, 1, "x")
    server = LocalTsa().start()
    url = server.url
    server.stop()
    result = fl("anchor", "tsa", "--url", url, "--timeout", "2")
    assert result.returncode == 9
    assert "cannot reach the time-stamping authority" in result.stderr
    assert fl.ok("anchor", "list").startswith("no anchors recorded")
