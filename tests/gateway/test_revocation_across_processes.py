"""A `flowloom gateway serve` process refuses a key revoked by another process at the next
request, though it had the key verified in its cache: every request re-reads revocation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from flowloom.errors import AuthError, StoreUnavailableError
from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from flowloom.gateway.mock import MockServer
from tests.gateway.processes import served_gateway
from tests.server.support import ROOT

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _access(database: str) -> Access:
    return Access(
        database, master_key_loader=lambda: bytes(32), settings=AccessSettings(background=False)
    )


def _ask(client: httpx.Client, url: str, secret: str) -> int:
    headers = {"authorization": f"Bearer {secret}"}
    return client.post(url + "/v1/chat/completions", json=BODY, headers=headers).status_code


def test_a_key_revoked_elsewhere_is_refused_at_the_next_request(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    database = str(tmp_path / "gateway.db")
    tmp_path.joinpath("home").mkdir()
    access = _access(database)
    try:
        by_cli, cli_secret = access.create_key(owner_user="ann")
        _, user_secret = access.create_key(owner_user="bob@example.com")
        _, kept_secret = access.create_key(owner_user="carl")
    finally:
        access.close()
    args = ("--upstream", f"openai={mock_provider.url}")
    with (
        served_gateway(tmp_path, *args, database=database) as (url, _),
        httpx.Client(timeout=60) as client,
    ):
        # Each key is verified once, so the gateway holds all three in its key cache.
        assert [_ask(client, url, s) for s in (cli_secret, user_secret, kept_secret)] == [
            200,
            200,
            200,
        ]
        # Another process revokes one key: the documented `gateway keys revoke`.
        argv = [sys.executable, "-m", "flowloom", "--database", database]
        done = subprocess.run(
            [*argv, "gateway", "keys", "revoke", by_cli.prefix],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLOWLOOM_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert _ask(client, url, cli_secret) == 401
        # A user deprovisioned elsewhere (SCIM, LDAP, an access review) loses their keys
        # the same way: the server revokes every key the user owns.
        other = _access(database)
        try:
            assert len(other.revoke_owned_keys("user", ["bob@example.com"])) == 1
        finally:
            other.close()
        assert _ask(client, url, user_secret) == 401
        assert _ask(client, url, kept_secret) == 200  # others' keys are untouched
        assert _ask(client, url, cli_secret) == 401


@pytest.mark.postgres
def test_on_postgres_a_cached_key_revoked_by_another_process_is_refused(pg_url: str) -> None:
    here, there = _access(pg_url), _access(pg_url)
    try:
        key, secret = here.create_key(owner_user="dana")
        assert there.authenticate(secret).id == key.id  # cached there, probe connected
        assert there.authenticate(secret).id == key.id  # a cached hit, checked again
        here.revoke_key(key.prefix)
        with pytest.raises(AuthError):
            there.authenticate(secret)
        # The probe's connection holds no transaction open between requests.
        with there.engine.connect() as conn:
            idle = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle in transaction'"
                )
            ).scalar()
        assert idle == 0
    finally:
        here.close()
        there.close()


def test_a_database_that_cannot_answer_refuses_the_key(tmp_path: Path) -> None:
    database = str(tmp_path / "gone.db")
    access = _access(database)
    try:
        _, secret = access.create_key(owner_user="erin")
        access.authenticate(secret)
        with access.engine.begin() as conn:
            conn.execute(text("ALTER TABLE gateway_vkeys RENAME TO gateway_vkeys_moved"))
        with pytest.raises(StoreUnavailableError, match="revocation"):
            access.authenticate(secret)  # never let through unchecked
    finally:
        with access.engine.begin() as conn:
            conn.execute(text("ALTER TABLE gateway_vkeys_moved RENAME TO gateway_vkeys"))
        access.close()
