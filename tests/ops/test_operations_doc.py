"""docs/operations.md, run as written: every `sh` block goes through bash with the real CLI
(SQLite), the drill against a C2SP witness on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from flowloom.ledger.note import Verifier
from tests.support.witness import LocalWitness

DOC = Path(__file__).parents[2] / "docs" / "operations.md"
BLOCKS = re.findall(r"```sh\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def _block(containing: str) -> str:
    found = [b for b in BLOCKS if containing in b]
    assert len(found) == 1, f"one sh block of docs/operations.md with {containing!r}"
    return found[0]


BACKUP = _block("flowloom admin backup backups/nightly")
KEYS = _block("tar -C")
RESTORE = _block("flowloom admin restore backups/nightly\n")
FORCE = _block("--force --reason")
DRILL = _block("drill-older")


def test_every_block_of_the_doc_is_run_by_a_test() -> None:
    assert sorted(BLOCKS) == sorted({BACKUP, KEYS, RESTORE, FORCE, DRILL})


def _shell(tmp: Path, script: str, **extra: str) -> str:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "flowloom"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m flowloom "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
    env.pop("XDG_CONFIG_HOME", None)
    env.update(
        HOME=str(tmp),
        PATH=f"{bin_dir}:{env['PATH']}",
        FLOWLOOM_HOME=str(tmp / "home"),
        FLOWLOOM_DATABASE=str(tmp / "ledger.db"),
        FLOWLOOM_PROJECT="proj",
        **extra,
    )
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout + done.stderr


def test_the_drill_backup_keys_and_restore_run_as_written(tmp_path: Path) -> None:
    seed = 'flowloom log append --kind agent.prompt --meta \'{"subject": "seed"}\' >&2\n'
    _shell(tmp_path, seed + "flowloom log vkey > log.vkey")
    vkey = (tmp_path / "work" / "log.vkey").read_text().strip()
    witness = LocalWitness(trusted=[Verifier.from_vkey(vkey)]).start()
    try:
        out = _shell(tmp_path, DRILL, WITNESS_URL=witness.url, WITNESS_VKEY=witness.vkey)
    finally:
        witness.stop()
    assert "restore refused" in (tmp_path / "work" / "refused.txt").read_text()
    assert "verified" in out

    _shell(tmp_path, "mkdir -p backups\n" + BACKUP)
    _shell(tmp_path, KEYS)
    with tarfile.open(tmp_path / "work" / "flowloom-keys.tar.gz") as kept:
        names = kept.getnames()
    assert "anchors.jsonl" in names and any(n.startswith("keys/") for n in names)
    assert not any("key" in p.name for p in (tmp_path / "work" / "backups" / "nightly").iterdir())
    assert "verified" in _shell(tmp_path, RESTORE)
    forced = _shell(tmp_path, FORCE)  # nothing to override here: recorded as not forced
    assert "verified" in forced and "FORCED" not in forced
