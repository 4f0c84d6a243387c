"""docs/airgap.md: the offline bundle is built on a connected machine, then installed into a
fresh virtualenv with no index and no network (its own network namespace when `unshare`
can make one), and the installed `flowloom` runs. Slow: it downloads every wheel once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "airgap.md"
BLOCKS = re.findall(r"```sh\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


def _block(containing: str) -> str:
    found = [b for b in BLOCKS if containing in b]
    assert len(found) == 1, f"one sh block of docs/airgap.md with {containing!r}"
    return found[0]


BUILD = _block("wheelhouse.py bundle")
INSTALL = _block("--no-index")


def _offline() -> list[str]:
    """A prefix that runs a command with no network at all, when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [unshare, "-rn"]
    return []


def test_every_shell_block_is_run() -> None:
    assert sorted(BLOCKS) == sorted({BUILD, INSTALL})


def test_every_direct_dependency_is_locked() -> None:
    """A runtime dependency added to pyproject.toml without `wheelhouse.py lock` would be
    missing from the offline bundle (and the image): caught here, without the network."""
    import tomllib

    def name(requirement: str) -> str:
        found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
        assert found, requirement
        return re.sub(r"[-_.]+", "-", found.group(0)).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    lines = (ROOT / "deploy" / "requirements.lock").read_text("utf-8").splitlines()
    locked = {name(line) for line in lines if line.strip() and not line.startswith("#")}
    direct = {name(r) for r in project["dependencies"]}
    assert direct - locked == set(), "run `python deploy/wheelhouse.py lock`"


@pytest.mark.slow
def test_the_bundle_installs_with_no_network(tmp_path: Path) -> None:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    build = subprocess.run(
        ["bash", "-e", "-c", BUILD.replace("deploy/", f"{ROOT}/deploy/")],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},  # the connected side: pip as configured here
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    bundle = tmp_path / "flowloom-bundle"
    assert (bundle / "SHA256SUMS").is_file() and (bundle / "requirements.lock").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # no index or find-links from this machine's config
    script = INSTALL.replace("/opt/flowloom", str(tmp_path / "venv"))
    python = shutil.which("python3.11") or sys.executable
    script = script.replace("python3 -m venv", f"{python} -m venv")
    install = subprocess.run(
        [*_offline(), "bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    assert "flowloom, version" in install.stdout
