"""A server's project logs keep one pinned key: reads create none, rotation is explicit,
and `flowloom log verify --project P` verifies the server's database out of the box."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.errors import KeyMissingError
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.keyring import key_name, log_keys
from flowloom.ledger.note import Verifier
from flowloom.ledger.verify import verify_store
from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings
from tests.cli.test_log_keys import digest, listing
from tests.server.support import OTHER, OWN, World, live_server, make_world

L = f"/api/v1/projects/{OWN}/ledger"


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[World, str]]:
    world = make_world(db_url, tmp_path / "server-home")
    try:
        with live_server(world.server) as base:
            yield world, base
    finally:
        world.close()


def cli(database: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWLOOM_HOME": str(home), "HOME": str(home.parent)}
    for name in ("FLOWLOOM_DATABASE", "FLOWLOOM_PROJECT", "FLOWLOOM_DEBUG"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "flowloom", "--database", database, *args],
        cwd=home.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_new_project_has_no_key_until_something_is_recorded(
    served: tuple[World, str], tmp_path: Path
) -> None:
    world, base = served
    new = "/api/v1/projects/gamma"
    with httpx.Client(base_url=base, headers=world.headers("instance_owner"), timeout=30) as http:
        assert http.post("/api/v1/projects", json={"name": "gamma"}).status_code == 201
        keys_before = listing(tmp_path / "server-home")
        for path in ("/ledger/vkey", "/ledger/checkpoint", "/ledger/entries", ""):
            http.get(new + path)
        assert http.get(new + "/ledger/vkey").status_code == 404
        assert http.get(new).json()["vkey"] is None
        assert http.get("/ui/projects/gamma/ledger").status_code == 200
        assert world.server.store.size("gamma") == 0
        assert world.server.store.checkpoints("gamma") == []
        assert listing(tmp_path / "server-home") == keys_before  # no key for gamma yet
        created = http.post(new + "/ledger/entries", json={"kind": "agent.prompt", "body": "hi"})
        assert created.json()["index"] == 1  # entry 0 pins the project's new key
        vkey = http.get(new + "/ledger/vkey").text.strip()
    history = log_keys(world.server.store, "gamma")
    assert history.current == Verifier.from_vkey(vkey) and history.all[0].since == 0
    assert len(listing(tmp_path / "server-home")) == len(keys_before) + 1


def test_rotation_over_the_api(served: tuple[World, str]) -> None:
    world, base = served
    with httpx.Client(base_url=base, timeout=30) as http:
        owner, developer = world.headers("owner"), world.headers("developer")
        http.post(L + "/entries", json={"kind": "agent.prompt", "body": "one"}, headers=developer)
        first = http.post(L + "/checkpoint", headers=developer).text
        old = Verifier.from_vkey(http.get(L + "/vkey", headers=developer).text.strip())
        size = open_checkpoint(first, old).size
        denied = http.post(L + "/key/rotate", json={"reason": "mine"}, headers=developer)
        assert denied.status_code == 403
        done = http.post(L + "/key/rotate", json={"reason": "yearly"}, headers=owner)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["old_vkey"] == old.vkey
        new = Verifier.from_vkey(body["new_vkey"])
        assert http.get(L + "/vkey", headers=developer).text.strip() == new.vkey
        http.post(L + "/entries", json={"kind": "agent.prompt", "body": "two"}, headers=developer)
        latest = http.get(L + "/checkpoint", headers=developer).text
        assert open_checkpoint(latest, new).size == body["checkpoint"] + 1
        assert body["index"] == size and body["checkpoint"] == size + 1
        rotated = http.get(L + f"/entries/{body['index']}", headers=developer).json()
    envelope = rotated["envelope"]
    assert envelope["kind"] == "key.rotated"
    assert envelope["actor"]["id"] == world.user_ids["owner"]
    assert envelope["refs"]["reason"] == "yearly"
    assert envelope["refs"]["attestation"]["key"] == key_name(old)
    report = verify_store(world.server.store, OWN)
    assert report.ok, [p.line() for p in report.problems]
    assert report.key == new and report.checkpoints_checked == 3


def test_a_home_without_the_projects_key(db_url: str, tmp_path: Path) -> None:
    world = make_world(db_url, tmp_path / "server-home")
    try:
        world.server.ledger(OWN).record("agent.prompt", body=b"one")
        world.server.ledger(OWN).checkpoint()
        pinned = world.server.ledger(OWN).verifier
        owner = world.headers("owner")
    finally:
        world.close()
    # Served with another home, it refuses to start: it could not record what it does.
    elsewhere = tmp_path / "elsewhere"
    settings = ServerSettings(database=db_url, home=elsewhere, public_url="http://flowloom.test")
    with pytest.raises(KeyMissingError, match="flowloom-instance"):
        build_server(settings)
    assert listing(elsewhere) == []
    # With the instance log's key but not the project's, it never mints a second key.
    instance_key = "flowloom.test_flowloom-instance.skey"
    (elsewhere / "keys").mkdir(parents=True, mode=0o700)
    shutil.copy2(tmp_path / "server-home" / "keys" / instance_key, elsewhere / "keys")
    server = build_server(settings)
    try:
        with live_server(server) as base, httpx.Client(base_url=base, timeout=30) as http:
            http.headers.update(owner)
            assert http.get(L + "/vkey").text.strip() == pinned.vkey

            def reads(last: int) -> None:
                """Every read of the project's log and pages: nothing changes."""
                before = digest(db_url)
                for path, status in (
                    (L + "/vkey", 200),
                    (L + "/entries", 200),
                    (L + f"/entries/{last}", 200),
                    (L + "/checkpoint", 200),  # the stored one, when it cannot sign
                    (L + f"/proof/inclusion?index={size - 1}", 200),
                    (L + "/proof/consistency?old=1", 200),
                    (L + "/bundle", 503),  # an export is recorded: it needs the key
                    (f"/api/v1/projects/{OWN}", 200),
                    *(
                        (f"/ui/projects/{OWN}{page}", 200)
                        for page in (
                            "", "/timeline", f"/entries/{last}", "/decisions", "/ledger",
                            "/ledger/verify", f"/ledger/receipt?index={size - 1}", "/usage",
                            "/members", "/why?path=prices.py",
                        )
                    ),
                ):  # fmt: skip
                    got = http.get(path)
                    assert got.status_code == status, (path, got.text[:300])
                    assert digest(db_url) == before, path

            size = world_size = server.store.size(OWN)
            reads(world_size - 1)
            # A plain event needs no key; signing over it does.
            plain = http.post(L + "/entries", json={"kind": "agent.prompt", "body": "two"})
            assert plain.status_code == 201
            reads(world_size)
            late = http.get(L + f"/proof/inclusion?index={world_size}")
            assert late.status_code == 503 and key_name(pinned) in late.text
            before = digest(db_url)
            refused = http.post(L + "/checkpoint")
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "key_missing"
            assert key_name(pinned) in error["message"] and str(elsewhere) in error["message"]
            rotate = http.post(L + "/key/rotate", json={"reason": "take over"})
            assert rotate.status_code == 503
            assert digest(db_url) == before
    finally:
        server.close()
    assert [line.split()[0] for line in listing(elsewhere)] == [instance_key]


def test_log_verify_on_a_server_database(db_url: str, tmp_path: Path) -> None:
    world = make_world(db_url, tmp_path / "server-home")
    try:
        for project in (OWN, OTHER):
            ledger = world.server.ledger(project)
            for i in range(3):
                ledger.record("agent.prompt", body=f"{project} {i}".encode())
            ledger.checkpoint()
            ledger.record("agent.tool", meta={"subject": "after"})
        vkeys = {p: world.server.ledger(p).verifier.vkey for p in (OWN, OTHER, INSTANCE_PROJECT)}
    finally:
        world.close()
    fresh = tmp_path / "fresh" / "home"
    fresh.parent.mkdir()
    before = digest(db_url)
    for project in (OWN, OTHER, INSTANCE_PROJECT):
        done = cli(db_url, fresh, "--project", project, "log", "verify")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ok: the log verifies" in done.stdout
        assert key_name(Verifier.from_vkey(vkeys[project])) in done.stdout
        shown = cli(db_url, fresh, "--project", project, "log", "vkey")
        assert shown.stdout.strip() == vkeys[project]
        pinned = cli(db_url, fresh, "--project", project, "log", "verify", "--vkey", vkeys[project])
        assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    wrong = cli(db_url, fresh, "--project", OWN, "log", "verify", "--vkey", vkeys[OTHER])
    assert wrong.returncode == 1 and "is not a key of this log" in wrong.stdout
    assert digest(db_url) == before
    assert listing(fresh) == []


def test_admin_commands_with_another_home_change_nothing(db_url: str, tmp_path: Path) -> None:
    world = make_world(db_url, tmp_path / "server-home")
    world.close()
    fresh = tmp_path / "fresh" / "home"
    fresh.parent.mkdir()
    before = digest(db_url)
    made = cli(db_url, fresh, "admin", "create-user", "--email", "x@example.org", "--name", "X")
    assert made.returncode == 5, made.stderr
    assert "flowloom-instance" in made.stderr and str(fresh / "keys") in made.stderr
    assert digest(db_url) == before and listing(fresh) == []
    users = cli(db_url, tmp_path / "server-home", "admin", "list-users", "--json")
    assert users.returncode == 0, users.stderr
    assert "x@example.org" not in users.stdout
