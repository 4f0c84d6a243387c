"""`flowloom serve --gateway`: the team server also serves the LLM gateway's provider routes.

A real server process over a real SQLite database; a virtual key made with the gateway's
Access in the server's own database; the anthropic and openai SDKs pointed at the
server's URL; the upstream is the provider simulator. The exchanges land in the key's
project ledger, signed with the server's key for that project, readable through the API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flowloom.gateway.access import Access
from flowloom.gateway.mock import MockServer
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.note import Verifier
from flowloom.ledger.verify import verify_store
from flowloom.services import open_store
from tests.server.support import OWN, ROOT, free_port, make_world, stop, wait_ready

CONFIG = """
[providers.anthropic]
kind = "anthropic"
base_url = "{url}"

[providers.openai]
kind = "openai"
base_url = "{url}/v1"

[models.claude]
targets = [{{ provider = "anthropic", model = "claude-upstream" }}]

[models."gpt-4o"]
targets = [{{ provider = "openai", model = "gpt-4o" }}]
"""


def test_serve_with_gateway_records_into_the_projects_ledger(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    import anthropic
    import openai

    database = str(tmp_path / "server.db")
    home = tmp_path / "home"
    world = make_world(database, home, public_url="http://flowloom.test")
    owner_key = world.keys["instance_owner"]
    world.close()
    with Access(database, master_key_loader=KeyStore(home).master_key) as access:
        _, secret = access.create_key(name="ci", project=OWN)
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=mock_provider.url))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLOWLOOM_HOME": str(home)}
    process = subprocess.Popen(
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
            "http://flowloom.test",
            "--home",
            str(home),
            "--gateway",
            str(config),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(base, process)
        claude = anthropic.Anthropic(base_url=base, api_key=secret, max_retries=0)
        message = claude.messages.create(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].type == "text" and message.content[0].text
        with claude.messages.stream(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert stream.get_final_message().content[0].text
        gpt = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0)
        assert (
            gpt.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            .choices[0]
            .message.content
        )

        # The server's own routes are still the server's.
        assert httpx.get(base + "/healthz").status_code == 200
        assert httpx.get(base + "/api/v1/me").status_code == 401
        # A caller without a virtual key gets the provider's own 401 shape.
        refused = httpx.post(
            base + "/v1/messages",
            headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"},
            json={"model": "claude", "max_tokens": 5, "messages": []},
        )
        assert refused.status_code == 401 and refused.json()["type"] == "error"

        # The exchanges are in the key's project, readable through the server's API.
        owner = {"Authorization": f"Bearer {owner_key}"}
        ledger = f"{base}/api/v1/projects/{OWN}/ledger"
        deadline = time.monotonic() + 120
        while True:
            page = httpx.get(
                ledger + "/entries", params={"kind": "gateway.exchange"}, headers=owner
            ).json()
            if len(page["entries"]) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(page["entries"]) == 3
        vkey = httpx.get(ledger + "/vkey", headers=owner).text.strip()
    finally:
        stop(process)  # SIGTERM: the gateway drains its recorder before the ledgers close

    # One log, one signing key: the server's for the project.
    store = open_store(database)
    try:
        report = verify_store(store, OWN, Verifier.from_vkey(vkey))
        assert report.ok, report
    finally:
        store.close()


def test_standalone_gateway_with_the_servers_public_url_signs_as_the_server(
    tmp_path: Path, mock_provider: MockServer
) -> None:
    import anthropic

    from flowloom.gateway import build_gateway
    from flowloom.server.build import build_server
    from flowloom.server.settings import ServerSettings
    from flowloom.server.state import ServerState
    from tests.gateway.core.harness import start_gateway

    database = str(tmp_path / "server.db")
    home = tmp_path / "home"
    world = make_world(database, home, public_url="https://flowloom.test/team")
    server: ServerState = world.server
    server.ledger(OWN).record("agent.prompt", meta={"subject": "before the gateway"})
    vkey = server.ledger(OWN).verifier.vkey
    world.close()
    with Access(database, master_key_loader=KeyStore(home).master_key) as access:
        _, secret = access.create_key(name="ci", project=OWN)
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=mock_provider.url))

    gateway = build_gateway(
        database=database, config_path=config, home=home, origin_prefix="flowloom.test/team"
    )
    run = start_gateway(gateway, None)  # type: ignore[arg-type]
    try:
        claude = anthropic.Anthropic(base_url=run.url, api_key=secret, max_retries=0)
        claude.messages.create(
            model="claude", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        run.stop()

    # The server signs a checkpoint over the gateway's appends with its key for the log;
    # the gateway generated no key of its own (which would be a key.generated event).
    server = build_server(
        ServerSettings(database=database, home=home, public_url="https://flowloom.test/team")
    )
    try:
        server.ledger(OWN).checkpoint()
    finally:
        server.close()
    store = open_store(database)
    try:
        kinds = [entry.kind for entry in store.entries(OWN, 0, store.size(OWN))]
        assert kinds.count("gateway.exchange") == 1
        assert kinds.count("key.generated") == 1
        report = verify_store(store, OWN, Verifier.from_vkey(vkey))
        assert report.ok, report
    finally:
        store.close()
