"""LDAP through the server and the command line: sign-in over HTTP against a real slapd,
then `flowloom admin ldap sync` (docs/auth.md's commands and configuration, as written)
deprovisions someone who left the group, and their session is refused at once."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings, load_server_settings
from tests.auth.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    SERVICE_PASSWORD,
    SUFFIX,
    Slapd,
    running_slapd,
)
from tests.server.support import ROOT, live_server

DOCS = ROOT / "docs" / "auth.md"


def _documented() -> tuple[dict[str, Any], list[list[str]]]:
    """The LDAP section's TOML table and its `flowloom admin` commands."""
    section = DOCS.read_text("utf-8").split("## LDAP", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    toml = next(b for b in blocks if b.startswith("toml"))
    commands = [
        shlex.split(line)[2:]
        for b in blocks
        for line in b.splitlines()
        if line.startswith("flowloom admin ")
    ]
    return tomllib.loads(toml.removeprefix("toml")), commands


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    with running_slapd(tmp_path / "slapd") as server:
        yield server


def test_sign_in_then_sync_deprovisions(tmp_path: Path, slapd: Slapd) -> None:
    import ldap3  # type: ignore[import-untyped]

    documented, commands = _documented()
    assert commands == [["ldap", "sync"]]
    table = documented["server"]["ldap"]
    assert table["user_base"].endswith("dc=example,dc=org")
    table.update(url=slapd.url, ca_file=str(slapd.ca_file))
    table.pop("bind_password")  # from the environment, as the docs allow
    config_home = tmp_path / "config"
    (config_home / "flowloom").mkdir(parents=True)
    lines = ["[server.ldap]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict)]
    lines += ["", "[server.ldap.teams]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table["teams"].items()]
    (config_home / "flowloom" / "config.toml").write_text("\n".join(lines) + "\n")
    database = str(tmp_path / "server.db")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),
        "FLOWLOOM_DATABASE": database,
        "FLOWLOOM_HOME": str(home),
        "FLOWLOOM_SERVER_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "HOME": str(tmp_path),
    }
    loaded = load_server_settings(tmp_path, env)
    assert loaded.ldap is not None and loaded.ldap["bind_password"] == SERVICE_PASSWORD
    settings = ServerSettings(
        database=database, home=home, public_url="http://flowloom.test", ldap=loaded.ldap
    )
    server = build_server(settings)
    try:
        directory = server.directory
        directory.create_project("payments")
        owner = directory.create_user("root@example.org", "Root Owner")
        directory.grant(owner.id, ALL_PROJECTS, "owner")
        directory.create_team("Engineering")
        directory.grant_team("Engineering", "payments", "developer")
        with live_server(server) as base, httpx.Client(base_url=base) as browser:
            wrong = browser.post("/api/v1/auth/login", json={"email": "ada", "password": "nope"})
            assert wrong.status_code == 401
            signed_in = browser.post(
                "/api/v1/auth/login", json={"email": "ada", "password": "ada-password-1"}
            )
            assert signed_in.status_code == 200, signed_in.text
            me = browser.get("/api/v1/me").json()
            assert me["name"] == "Ada Lovelace" and me["email"] == "ada@example.org"
            assert "payments" in json.dumps(me)
            tls = ldap3.Tls(ca_certs_file=str(slapd.ca_file))
            admin = ldap3.Connection(ldap3.Server(slapd.url, tls=tls), ADMIN_DN, ADMIN_PASSWORD)
            admin.open()
            assert admin.start_tls() and admin.bind()
            assert admin.modify(
                f"cn=flowloom-users,ou=groups,{SUFFIX}",
                {"member": [(ldap3.MODIFY_DELETE, [f"uid=ada,ou=people,{SUFFIX}"])]},
            )
            admin.unbind()
            assert browser.get("/api/v1/me").status_code == 200
            synced = subprocess.run(
                [sys.executable, "-m", "flowloom", "admin", *commands[0]],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert synced.returncode == 0, synced.stderr
            assert synced.stdout.strip() == "disabled 1, joined 0, left 1"
            assert browser.get("/api/v1/me").status_code == 401
            again = browser.post(
                "/api/v1/auth/login", json={"email": "ada", "password": "ada-password-1"}
            )
            assert again.status_code == 401
    finally:
        server.close()
