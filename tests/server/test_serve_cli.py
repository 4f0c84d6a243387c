"""`flowloom serve`: settings layering, bootstrapping an owner, a real process answering."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flowloom.errors import ConfigError
from flowloom.server.settings import ServerSettings, load_server_settings
from tests.server.support import ROOT, free_port, serve_process, stop, wait_ready


def test_settings_layering(tmp_path: Path) -> None:
    config = tmp_path / "config" / "flowloom" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[server]\nport = 9000\npublic_url = "https://fl.example.com/x"\n')
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "FLOWLOOM_HOME": str(tmp_path / "home"),
        "FLOWLOOM_SERVER_MAX_BATCH_EVENTS": "10",
    }
    settings = load_server_settings(tmp_path, env)
    assert settings.port == 9000
    assert settings.max_batch_events == 10
    assert settings.origin("payments") == "fl.example.com/x/payments"
    assert settings.secure_cookies
    assert settings.home == tmp_path / "home"
    moved = settings.with_overrides(port=9100)
    assert moved.public_url == "https://fl.example.com/x"  # given explicitly: kept
    derived = ServerSettings(database="x.db", home=tmp_path).with_overrides(port=9200)
    assert derived.public_url == "http://127.0.0.1:9200"

    config.write_text('[server]\n[server.oidc]\nissuer = "https://idp.example.com"\n')
    with_sso = load_server_settings(tmp_path, {**env, "FLOWLOOM_SERVER_OIDC_CLIENT_ID": "fl"})
    assert with_sso.oidc == {"issuer": "https://idp.example.com", "client_id": "fl"}
    assert (
        load_server_settings(tmp_path / "nowhere", {**env, "XDG_CONFIG_HOME": "/nonexistent"}).oidc
        is None
    )

    config.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown"):
        load_server_settings(tmp_path, env)
    with pytest.raises(ConfigError, match="public_url"):
        ServerSettings(database="x.db", home=tmp_path, public_url="ftp://nope")


def test_create_admin_then_serve(tmp_path: Path) -> None:
    database = str(tmp_path / "server.db")
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLOWLOOM_HOME": str(home)}
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowloom",
            "serve",
            "--database",
            database,
            "--home",
            str(home),
            "--create-admin",
            "boss@example.org",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("flk_") and key not in created.stderr
    port = free_port()
    process = serve_process(database, home, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/api/v1/me", headers=headers).json()["grants"] == {"*": ["owner"]}
        made = httpx.post(f"{base}/api/v1/projects", json={"name": "payments"}, headers=headers)
        assert made.status_code == 201
        assert made.json()["origin"] == "flowloom.test/payments"
    finally:
        stop(process)
    assert process.returncode == 0
