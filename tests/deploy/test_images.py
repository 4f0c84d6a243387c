"""deploy/Dockerfile linted with hadolint and read for what it must say (deploy/compose.yaml
is validated by test_deployment_doc.py). No container engine is needed; building and
running the images is not verified here (docs/deployment.md, "What was verified where")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
