"""Helpers for the server tests: a populated server, a live loopback server, processes.

`World` builds a real server (build_server) over a real database, with two projects
(alpha, the principals' own; beta, someone else's), one user per role on alpha, an
instance owner (owner on "*"), and an API key for each.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.server.app import create_app
from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings
from flowloom.server.state import ServerState

ROOT = Path(__file__).resolve().parents[2]
OWN = "alpha"
OTHER = "beta"
ROLES = ("owner", "admin", "approver", "developer", "auditor", "service")
LOOPBACK_ALLOW = ("127.0.0.0/8", "::1/128")
"""[server] outbound_allow for tests whose receivers and stand-ins listen on loopback."""


@dataclass
class World:
    server: ServerState
    keys: dict[str, str] = field(default_factory=dict)
    """principal name (a role, or "instance_owner") → API key."""
    user_ids: dict[str, str] = field(default_factory=dict)
    body_index: dict[str, int] = field(default_factory=dict)
    reviews: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Access review scope → an open campaign and a line to decide (the matrix's)."""

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"} if who in self.keys else {}

    def close(self) -> None:
        self.server.close()


def make_world(
    database: str,
    home: Path,
    *,
    public_url: str = "http://flowloom.test",
    outbound_allow: tuple[str, ...] = LOOPBACK_ALLOW,
) -> World:
    settings = ServerSettings(
        database=database, home=home, public_url=public_url, outbound_allow=outbound_allow
    )
    server = build_server(settings)
    world = World(server)
    directory = server.directory
    directory.create_project(OWN)
    directory.create_project(OTHER)
    admin = directory.create_user("root@example.org", "Root Owner")
    directory.grant(admin.id, ALL_PROJECTS, "owner")
    world.keys["instance_owner"] = directory.create_key(admin.id, name="test")[1]
    world.user_ids["instance_owner"] = admin.id
    for role in ROLES:
        kind = "service" if role == "service" else "user"
        email = None if kind == "service" else f"{role}@example.org"
        user = directory.create_user(email, f"{role.title()} Person", kind=kind)
        directory.grant(user.id, OWN, role)
        world.keys[role] = directory.create_key(user.id, name="test")[1]
        world.user_ids[role] = user.id
    return world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def live_server(server: ServerState, app: Any = None, *, lifespan: str = "off") -> Iterator[str]:
    """Serve `server` (or `app`, made from it) over loopback HTTP in a thread; yields the
    base URL. Proxy headers are left to the app, as `flowloom serve` does; `lifespan="on"`
    runs the app's start-up and shut-down as `flowloom serve` does."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app or create_app(server), log_level="warning", lifespan=lifespan, proxy_headers=False
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=20)
        sock.close()


def serve_process(
    database: str,
    home: Path,
    port: int,
    *,
    public_url: str = "http://flowloom.test",
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start `python -m flowloom serve` (a real process) on `port`, with `extra` options."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    env["FLOWLOOM_HOME"] = str(home)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowloom",
            "serve",
            "--database",
            database,
            "--port",
            str(port),
            "--public-url",
            public_url,
            "--home",
            str(home),
            "--log-level",
            "warning",
            *extra,
        ],
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise RuntimeError(f"server exited {process.returncode}: {err.decode()[-2000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base} not ready after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()
    if process.stderr:
        process.stderr.close()
