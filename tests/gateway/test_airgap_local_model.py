"""docs/airgap.md, "Local models through the gateway": the gateway started as the page
says, with an OpenAI-compatible model server inside the site (the simulator on loopback),
answers an agent's call and records the exchange."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest

from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from flowloom.gateway.mock import MockServer
from tests.gateway.processes import recorded_exchanges, served_gateway

DOC = Path(__file__).resolve().parents[2] / "docs" / "airgap.md"
SITE_URL = "http://models.internal:8000/v1"


def _serve_args() -> list[str]:
    lines = re.findall(r"^flowloom gateway serve .*$", DOC.read_text("utf-8"), flags=re.M)
    assert len(lines) == 1, lines
    return shlex.split(lines[0])[3:]


@pytest.mark.slow  # a gateway process start: `make trials`
def test_a_local_model_server_behind_the_gateway(tmp_path: Path, mock_provider: MockServer) -> None:
    args = _serve_args()
    assert SITE_URL in " ".join(args)
    args = [a.replace(SITE_URL, f"{mock_provider.url}/v1") for a in args]
    database = str(tmp_path / "gateway.db")
    access = Access(
        database, master_key_loader=lambda: bytes(32), settings=AccessSettings(background=False)
    )
    try:
        _, secret = access.create_key(owner_user="site")
    finally:
        access.close()
    with served_gateway(tmp_path, *args, database=database) as (url, _):
        response = httpx.post(
            f"{url}/v1/chat/completions",  # OPENAI_BASE_URL=<gateway>/v1, as the page says
            json={"model": "local-llama", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {secret}"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    exchanges = recorded_exchanges(database)
    assert len(exchanges) == 1
