"""deploy/Dockerfile linted with hadolint, and deploy/compose.yaml validated by
docker-compose against the Compose schema. Neither needs a container engine; building
and running the images is `make trials`' test_image_smoke (docs/deployment.md says where
each was verified)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.tools import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool("hadolint", "unit")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_builds_from_the_wheel_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text("utf-8")
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.M)
    assert stages == ["wheels", "runtime", "server", "gateway"]
    assert "--no-index --find-links /wheels" in text
    assert "USER 10001:10001" in text and "PYTHONDONTWRITEBYTECODE=1" in text
    for target in ("server", "gateway"):
        section = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "HEALTHCHECK" in section and "/healthz" in section and "/readyz" in section
        assert "ENTRYPOINT" in section


def test_compose_validates() -> None:
    compose = require_tool("docker-compose", "compose")
    env = {**os.environ, "FLOWLOOM_DB_PASSWORD": "pw"}
    done = subprocess.run(
        [compose, "-f", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"db", "server", "gateway"}
    for name in ("server", "gateway"):
        assert services[name]["read_only"] is True and services[name]["user"] == "10001:10001"
        assert services[name]["build"]["target"] == name
