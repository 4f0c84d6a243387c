"""The real agent CLIs from npm, pinned, installed once into the test cache.

Each CLI is installed with the system's npm into `$FLOWLOOM_TEST_CACHE` (default
`~/.cache/flowloom-test`) on first use and then runs offline: `offline_env` points
every proxy variable at a closed port (only loopback is exempt). Without node and npm
a test is skipped locally and fails under CI.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import in_ci

CLAUDE_CODE_VERSION = "2.1.337"
CODEX_VERSION = "0.171.0"
CACHE = Path(os.environ.get("FLOWLOOM_TEST_CACHE") or Path.home() / ".cache" / "flowloom-test")
CLOSED = "http://127.0.0.1:9"  # nothing listens: any non-loopback request fails at once


def missing(what: str) -> None:
    """Skip locally, fail under CI: the real-client tests must run there."""
    message = f"{what}; the real-CLI tests need node and npm"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so it must run)", pytrace=False)
    pytest.skip(message)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time across pytest-xdist workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def npm_cli(package: str, version: str, command: str) -> Path:
    """The `command` executable of `package@version`, installed from npm on first use."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        missing("node or npm is not on PATH")
    assert npm is not None
    name = package.rsplit("/", 1)[-1]
    root = CACHE / f"{name}-{version}"
    binary = root / "node_modules" / ".bin" / command
    with _locked(CACHE / f"{name}.lock"):
        if not binary.exists():
            staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=CACHE))
            installed = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(staging),
                    "--no-audit",
                    "--no-fund",
                    f"{package}@{version}",
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if installed.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                pytest.fail(f"npm could not install {package}: {installed.stderr[-2000:]}")
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
    return binary


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with an empty HOME and every proxy closed but loopback."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HTTPS_PROXY": CLOSED,
        "HTTP_PROXY": CLOSED,
        "https_proxy": CLOSED,
        "http_proxy": CLOSED,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


@pytest.fixture(scope="session")
def claude_code() -> Path:
    """The pinned `claude` executable."""
    binary = npm_cli("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION, "claude")
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.stdout.startswith(CLAUDE_CODE_VERSION), version.stdout + version.stderr
    return binary


@pytest.fixture(scope="session")
def codex() -> Path:
    """The pinned `codex` executable."""
    binary = npm_cli("@openai/codex", CODEX_VERSION, "codex")
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert CODEX_VERSION in version.stdout, version.stdout + version.stderr
    return binary


MEMORY_SERVER_VERSION = "2026.8.31"


@pytest.fixture(scope="session")
def reference_memory_server() -> Path:
    """The pinned `mcp-server-memory` executable (the MCP reference memory server).

    It serves over stdio and keeps its graph in the JSONL file named by MEMORY_FILE_PATH.
    """
    binary = npm_cli(
        "@modelcontextprotocol/server-memory", MEMORY_SERVER_VERSION, "mcp-server-memory"
    )
    manifest = binary.parents[1] / "@modelcontextprotocol" / "server-memory" / "package.json"
    assert f'"version": "{MEMORY_SERVER_VERSION}"' in manifest.read_text("utf-8")
    return binary
