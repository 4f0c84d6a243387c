"""The worked example of docs/reports.md, run as written over the month of world.py.

The real CLI in subprocesses (installed entry point, `sys.executable`'s directory on
PATH), a real git repository with a committed allowed-signers file and an SSH signing
key, the SQLite ledger: the project makes the Part 11 and SOX packs, management responds
to the direct push, the SOX pack is made again and shows the response under the same
exception id; the auditor verifies both packs with FlowLoom (re-performed against the
repository) and without it (sha256sum, the documented Python, the sample drawn again).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compliance.test_signed_reports import DOCS
from tests.compliance.world import CAROL, PROJECT, World, at, build_world
from tests.support.sshkeys import make_key

SECTION = DOCS.read_text().split("## Worked example", 1)[1]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("worked-example"))
    # At the start of April Carol, who speaks for management, is set up to sign.
    key = make_key(built.root / "keys", "carol")
    built.clock.set(at(1, 9, month=4))
    built.git("config", "gpg.format", "ssh")
    built.git("config", "user.signingkey", str(key.private))
    built.git("config", "user.email", CAROL[1])
    built.commit(
        ".flowloom/allowed_signers",
        f'{CAROL[1]} namespaces="flowloom" {key.public_line}\n',
        "Allowed signers",
        who=CAROL,
    )
    yield built
    built.close()


def shell(world: World, script: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(world.root / "home"),
        "XDG_CONFIG_HOME": str(world.root / "home" / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(world.root / "home" / ".gitconfig"),
        "FLOWLOOM_HOME": str(world.root / "flowloom-home"),
        "FLOWLOOM_DATABASE": str(world.root / "ledger.db"),
        "FLOWLOOM_PROJECT": PROJECT,
        "FLOWLOOM_ORIGIN": f"flowloom.example.com/{PROJECT}",
        **extra,
    }
    if "PYTHONPATH" in os.environ:  # a worktree's sources, when the suite runs from one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def report_json(pack: Path) -> dict[str, object]:
    with zipfile.ZipFile(pack) as archive:
        data: dict[str, object] = json.loads(archive.read("report.json"))
    return data


def test_the_worked_example_runs_as_written(world: World, tmp_path: Path) -> None:
    make, respond, verify, without = blocks("sh")
    repo = world.repo.cwd
    done = shell(world, make, repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\nid,check,severity,what,message," in done.stdout
    first = report_json(repo / "march-sox.zip")
    exceptions = first["exceptions"]
    assert isinstance(exceptions, list)
    pushed = next(e for e in exceptions if e["what"] == "unlinked-commit")
    assert pushed["commit"] == world.expected["c3"]
    assert first["responses"] == []
    # Management responds; the SOX pack made again shows it under the same id.
    done = shell(world, respond, repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"response to {pushed['id']} by {CAROL[1]} recorded" in done.stdout
    second = report_json(repo / "march-sox.zip")
    again = second["exceptions"]
    assert isinstance(again, list)
    assert [e["id"] for e in again] == [e["id"] for e in exceptions]
    responses = second["responses"]
    assert isinstance(responses, list) and len(responses) == 1
    assert responses[0]["exception"] == pushed["id"] and responses[0]["by"] == CAROL[1]
    assert responses[0]["owner"] == "Carol Ops" and responses[0]["due"] == "2026-04-15"
    with zipfile.ZipFile(repo / "march-sox.zip") as archive:
        html = archive.read("report.html").decode()
        rows = archive.read("exceptions.csv").decode()
    assert "Reverted; branch protection now enforced on main" in html
    assert f"{CAROL[1]} (SSH signature by key" in html  # who generated it, proven
    assert pushed["id"] in rows and "Reverted; branch protection" in rows
    # The auditor, with FlowLoom: both packs verify and re-perform without difference.
    audit = tmp_path / "audit"
    audit.mkdir()
    for name in ("march-part11.zip", "march-sox.zip", "log.vkey"):
        shutil.copy(repo / name, audit / name)
    done = shell(world, verify, audit, REPO=str(repo))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("re-performed: no difference") == 2, done.stdout
    # And without FlowLoom: integrity, signature, fingerprint, the sample drawn again.
    script = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (audit / "verify_statement.py").write_text(
        next(b for b in script if "# verify_statement.py" in b)
    )
    plain = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", without], cwd=audit, env=plain,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signature OK" in done.stdout and "checkpoint OK" in done.stdout
    sampling = second["sampling"]
    assert isinstance(sampling, dict)
    assert f"sample of {sampling['size']} drawn again from seed {sampling['seed']}" in done.stdout
    # An edited report.json fails the same commands.
    forged = tmp_path / "forged"
    forged.mkdir()
    shutil.copy(audit / "verify_statement.py", forged)
    shutil.copy(audit / "log.vkey", forged)
    with (
        zipfile.ZipFile(audit / "march-sox.zip") as src,
        zipfile.ZipFile(forged / "march-sox.zip", "w") as dst,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "report.json":
                data = data.replace(b'"seed": "', b'"seed": "0')
            dst.writestr(info, data)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", without], cwd=forged, env=plain,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
