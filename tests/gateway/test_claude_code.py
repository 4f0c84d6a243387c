"""The real Claude Code CLI through the gateway, set up as docs/gateway.md says.

Claude Code (pinned: `CLAUDE_CODE_VERSION`) is installed from npm once into the test
cache (`$FLOWLOOM_TEST_CACHE`, default `~/.cache/flowloom-test`) and then runs offline:
its HOME is empty, every proxy variable points at a closed port (only loopback is
exempt), non-essential traffic and the auto-updater are off, so the only place it can
reach is the gateway at `ANTHROPIC_BASE_URL`, in front of the provider simulator.

- With no policy (`flowloom gateway serve --open-access`), `claude -p "say hi"` with its
  own default model is passed straight through to the Anthropic provider.
- With `examples/gateway.toml`, `--model gpt-4o` is translated to Chat Completions and its
  output limit (Claude Code asks for far more than gpt-4o's 16,384) is clamped and noted.

The installer lives in `tests/support/clis.py`, shared with the Codex tests.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from flowloom.gateway.mock import MockServer
from tests.gateway.processes import gateway_process, recorded_exchanges
from tests.server.support import ROOT
from tests.support.clis import CLAUDE_CODE_VERSION, offline_env

REPLY = "Hello from the FlowLoom mock provider."


def run_claude(claude: Path, tmp_path: Path, gateway: str, *args: str) -> str:
    """`claude -p "say hi" *args` pointed at `gateway`, offline; its stdout."""
    home = tmp_path / "claude-home"
    work = tmp_path / "claude-work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    env = offline_env(
        home,
        ANTHROPIC_BASE_URL=gateway,  # docs/gateway.md: export ANTHROPIC_BASE_URL=...
        ANTHROPIC_API_KEY="local",  # open access takes any key
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    done = subprocess.run(
        [str(claude), "-p", "say hi", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=work,
        check=False,
    )
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stdout} {done.stderr}"
    return done.stdout


def test_claude_code_with_its_default_model_passes_through(
    claude_code: Path, tmp_path: Path, mock_provider: MockServer
) -> None:
    moved = {"FLOWLOOM_ANTHROPIC_BASE_URL": mock_provider.url}
    with gateway_process(tmp_path, env=moved) as gateway:
        out = run_claude(claude_code, tmp_path, gateway)
    assert REPLY in out
    calls = mock_provider.requests("/v1/messages")
    assert calls and all(c["status"] == 200 for c in calls)
    models = {c["model"] for c in calls}
    assert all(re.fullmatch(r"claude-[\w.-]+", m) for m in models), models  # its own default
    exchanges = recorded_exchanges(tmp_path / "gateway.db")
    assert len(exchanges) == len(calls)
    for event in exchanges:
        refs = event["refs"]
        assert refs["status"] == 200 and refs["provider"] == "anthropic"
        assert refs["model"] in models and refs["upstream_model"] == refs["model"]
        assert refs["user_agent"].startswith("claude-cli/" + CLAUDE_CODE_VERSION)


def test_claude_code_on_a_smaller_model_is_clamped_and_translated(
    claude_code: Path, tmp_path: Path, mock_provider: MockServer
) -> None:
    example = ROOT / "examples" / "gateway.toml"
    with gateway_process(
        tmp_path, "--config", str(example), env={"FLOWLOOM_MOCK_URL": mock_provider.url}
    ) as gateway:
        out = run_claude(claude_code, tmp_path, gateway, "--model", "gpt-4o")
    assert REPLY in out
    sent = mock_provider.requests()  # the openai or the azure target (latency strategy)
    assert sent and all(r["path"].endswith("/chat/completions") for r in sent), sent
    assert all(r["body"]["max_completion_tokens"] == 16384 for r in sent)
    clamped = [
        e["refs"].get("max_tokens_clamped") for e in recorded_exchanges(tmp_path / "gateway.db")
    ]
    assert clamped and all(c is not None and c["sent"] == 16384 for c in clamped)
    assert all(c["requested"] > 16384 for c in clamped if c)
