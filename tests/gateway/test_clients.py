"""Cursor and Aider set up as docs/gateway.md says, through the default set-up.

`flowloom gateway serve --open-access` (a real process, no policy: pass-through) in
front of the provider simulator.

- Cursor is a desktop application: its test reads the documented base URL and makes
  the calls an OpenAI-compatible client makes there (model list; a plain and a streamed
  Chat Completions call with tools) with the openai SDK, for an OpenAI, an Anthropic
  and a Gemini model.
- Aider is the real CLI (`aider-chat` from PyPI, pinned, installed once into the test
  cache), run offline with the documented shell lines, in both of its ways in: the
  OpenAI format at `OPENAI_API_BASE` and Anthropic's at `ANTHROPIC_API_BASE`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from flowloom.gateway.mock import MockServer
from tests.gateway.doc_snippets import at, doc_block
from tests.gateway.processes import exchanges_with_bodies as recorded_exchanges
from tests.gateway.processes import gateway_process
from tests.support.clis import offline_env

REPLY = "Hello from the FlowLoom mock provider."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def moved(mock: MockServer) -> dict[str, str]:
    return {
        "FLOWLOOM_OPENAI_BASE_URL": mock.url + "/v1",
        "FLOWLOOM_ANTHROPIC_BASE_URL": mock.url,
        "FLOWLOOM_GEMINI_BASE_URL": mock.url,
    }


def test_cursor_base_url_override(tmp_path: Path, mock_provider: MockServer) -> None:
    import openai

    settings = doc_block("text", "Override OpenAI Base URL:")
    with gateway_process(tmp_path, env=moved(mock_provider)) as gateway:
        found = re.search(r"Override OpenAI Base URL: (\S+)", at(gateway, settings))
        assert found is not None
        client = openai.OpenAI(base_url=found.group(1), api_key="local", max_retries=0)
        assert "gpt-4o" in [m.id for m in client.models.list()]
        for model in ("gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"):
            plain = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Say hello."}]
            )
            assert REPLY in (plain.choices[0].message.content or "")
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Please use the tool get_weather."}],
                tools=[WEATHER],  # type: ignore[list-item]
                stream=True,
            )
            arguments = "".join(
                d.function.arguments or ""
                for chunk in stream
                for c in chunk.choices
                for d in c.delta.tool_calls or ()
                if d.function
            )
            assert "city" in json.loads(arguments), model
    formats = {e["refs"]["upstream_format"] for e in recorded_exchanges(tmp_path / "gateway.db")}
    assert formats == {"openai", "anthropic", "gemini"}


# The first use installs aider-chat and its pinned dependencies (about 700 MB, several
# minutes on a machine with an empty cache): a long trial, run by `make trials`, with
# room for that install beyond the suite's per-test bound.
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("containing", "path"),
    [("OPENAI_API_BASE", "/v1/chat/completions"), ("ANTHROPIC_API_BASE", "/v1/messages")],
    ids=["openai-format", "anthropic-format"],
)
def test_aider_as_documented(
    aider: Path, tmp_path: Path, mock_provider: MockServer, containing: str, path: str
) -> None:
    home, work = tmp_path / "aider-home", tmp_path / "aider-work"
    home.mkdir()
    work.mkdir()
    with gateway_process(tmp_path, env=moved(mock_provider)) as gateway:
        script = at(gateway, doc_block("sh", containing))
        env = offline_env(
            home, PATH=f"{aider.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        )
        done = subprocess.run(
            ["bash", "-euc", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hello from the FlowLoom mock provider" in done.stdout
    calls = [r for r in mock_provider.requests() if r["path"] == "/v1/messages"]
    assert calls and all(c["model"] == "claude-sonnet-4-5" for c in calls)
    events = recorded_exchanges(tmp_path / "gateway.db")
    assert events and all(e["refs"]["endpoint"] == path for e in events)
    assert all(e["refs"]["provider"] == "anthropic" for e in events)
