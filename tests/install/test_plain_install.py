"""A plain install of the built wheel, no extras, in a fresh virtualenv: every command runs.

The rest of the suite runs against the editable `.[test]` install, which has every
optional package, so it cannot see a command that needs one of them (issue 15: `gateway
serve` and `dev mock-provider` once died on a missing uvloop). Here the wheel is built
from a copy of the source tree, installed alone into a new virtualenv (pip's own cache
makes that quick), and each command is run the way a user runs it: the long-running ones
until they answer on loopback (or, for `mcp`, on stdio), then stopped by their pid with
SIGTERM, which must end in exit status 0. Optional features must name the extra that
brings them. Last, uvloop and httptools are removed from the venv and the servers must
still answer (uvicorn's asyncio + h11 fallback).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 420  # a cold pip cache downloads every dependency once
START_TIMEOUT_S = 60

# Building the wheel and installing it with its dependencies into a fresh virtualenv is
# a minute and a half even with pip's cache warm (several minutes cold): a long trial,
# run by `make trials` (marker `slow`) rather than by `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class Venv:
    root: Path
    env: Mapping[str, str]
    work: Path

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin("flowloom"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(self.env),
            cwd=self.work,
            check=False,
        )


def _plain_env(work: Path) -> dict[str, str]:
    """The caller's environment minus anything that points Python at the dev install."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["FLOWLOOM_HOME"] = str(work / "home")
    env["TMPDIR"] = str(work / "tmp")
    env.pop("FLOWLOOM_DEBUG", None)
    return env


def _build_wheel(tmp: Path) -> Path:
    """`pip wheel` of a copy of the tree, so that the build leaves nothing in the checkout."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    dist = tmp / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = list(dist.glob("flowloom-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _make_venv(tmp: Path, wheel: Path) -> Venv:
    work = tmp / "work"
    (work / "tmp").mkdir(parents=True)
    env = _plain_env(work)
    root = tmp / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    installed = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return Venv(root, env, work)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(
    venv: Venv, args: list[str], url: str, path: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run `flowloom *args` until GET url+path answers 200; stop it by its pid after."""
    log = (venv.work / "tmp" / f"{args[0]}-{time.monotonic_ns()}.log").open("w+")
    process = subprocess.Popen(
        [venv.bin("flowloom"), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**venv.env, **(env or {})},
        cwd=venv.work,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                command = " ".join(args)
                pytest.fail(f"`flowloom {command}` exited {process.returncode}: {log.read()}")
            try:
                if httpx.get(url + path, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"`flowloom {' '.join(args)}` did not answer: {log.read()}")
            time.sleep(0.1)
        yield process
        process.terminate()  # SIGTERM to its pid
        assert process.wait(timeout=30) == 0, f"`flowloom {args[0]}` did not stop cleanly"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def _gateway_answers(venv: Venv) -> None:
    """The simulator and the gateway in front of it, then one Messages call through both:
    with no --config, so the packaged default policy passes the Claude name through."""
    mock_port, gateway_port = _free_port(), _free_port()
    mock = f"http://127.0.0.1:{mock_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    with (
        _serving(venv, ["dev", "mock-provider", "--port", str(mock_port)], mock, "/_mock/health"),
        _serving(
            venv,
            [
                "--database",
                str(venv.work / "gateway.db"),
                "gateway",
                "serve",
                "--open-access",
                "--port",
                str(gateway_port),
            ],
            gateway,
            "/readyz",
            env={"FLOWLOOM_ANTHROPIC_BASE_URL": mock},
        ),
    ):
        reply = httpx.post(
            gateway + "/v1/messages",
            headers={"x-api-key": "local", "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-sonnet-4-5-20250929",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["content"][0]["type"] == "text"


def _mcp_initializes(venv: Venv) -> None:
    """`flowloom mcp` over stdio answers an initialize request, and stops when stdin closes."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "plain-install", "version": "0"},
        },
    }
    process = subprocess.Popen(
        [venv.bin("flowloom"), "--database", str(venv.work / "mcp.db"), "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(venv.env),
        cwd=venv.work,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        reply = json.loads(process.stdout.readline())
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert reply["id"] == 1 and reply["result"]["serverInfo"]["name"], reply
    assert process.returncode == 0, stderr


def test_a_plain_install_runs_every_command(tmp_path: Path) -> None:
    venv = _make_venv(tmp_path, _build_wheel(tmp_path))

    shown = venv.run("--help")
    assert shown.returncode == 0 and "Usage: flowloom" in shown.stdout, shown.stderr
    demo = venv.run("demo", timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "tampering detected: True" in demo.stdout

    _gateway_answers(venv)

    server_port = _free_port()
    server = f"http://127.0.0.1:{server_port}"
    serve_args = ["serve", "--database", str(venv.work / "server.db"), "--port", str(server_port)]
    with _serving(venv, serve_args, server, "/readyz"):
        assert httpx.get(server + "/healthz", timeout=10).status_code == 200

    _mcp_initializes(venv)

    # Optional features name the extra that brings them, in one line, exit status 5.
    otel = venv.run("gateway", "serve", "--otel", "--upstream", "anthropic=http://127.0.0.1:9")
    assert otel.returncode == 5, otel.stderr
    assert "flowloom[otel]" in otel.stderr and len(otel.stderr.strip().splitlines()) == 1
    semantic = venv.run("--database", str(venv.work / "search.db"), "search", "--semantic", "x")
    assert semantic.returncode == 5, semantic.stderr
    assert "flowloom[semantic]" in semantic.stderr
    assert len(semantic.stderr.strip().splitlines()) == 1

    # Where uvloop and httptools cannot be installed, the servers run on asyncio and h11.
    removed = subprocess.run(
        [venv.bin("python"), "-m", "pip", "uninstall", "--yes", "--quiet", "uvloop", "httptools"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(venv.env),
        check=False,
    )
    assert removed.returncode == 0, removed.stderr
    gone = subprocess.run(
        [venv.bin("python"), "-c", "import uvloop"], capture_output=True, env=dict(venv.env)
    )
    assert gone.returncode != 0
    _gateway_answers(venv)
