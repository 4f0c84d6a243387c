"""docs/deployment.md: its `sh` blocks run as written (helm from `make helm`,
docker-compose from `make compose`), from the checkout's root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "deployment.md").read_text(), flags=re.S)


def _run(block: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-e", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_blocks_are_the_compose_and_helm_checks() -> None:
    assert len(BLOCKS) == 2
    assert "docker-compose" in BLOCKS[0] and "helm lint" in BLOCKS[1]


def test_compose_validates_as_the_page_says() -> None:
    require_tool("docker-compose", "compose")
    _run(BLOCKS[0])
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    assert set(services) == {"db", "server", "gateway"}
    for name in ("server", "gateway"):
        assert services[name]["build"]["target"] == name


def test_the_chart_lints_and_renders_as_the_page_says() -> None:
    require_tool("helm", "helm")
    _run(BLOCKS[1])
