"""The real Codex CLI through the gateway, with the `config.toml` of docs/gateway.md.

Codex (pinned: `CODEX_VERSION`) is installed from npm once into the test cache and then
runs offline (`offline_env`: an empty HOME holding only the documented
`~/.codex/config.toml`, every proxy closed but loopback), so the only place it can reach
is `flowloom gateway serve --open-access` (no policy: pass-through) in front of the
provider simulator. Codex ignores `OPENAI_BASE_URL`; it reaches a gateway only through a
`[model_providers.<id>]` block with `wire_api = "responses"`.

- its own GPT model goes to OpenAI's Responses API untouched;
- `-m claude-…` is translated to Anthropic Messages: Codex's `namespace` tools
  (sub-agents) are flattened and its hosted `web_search` becomes Anthropic's web search
  tool, never a 400; a call of a namespaced function comes back to Codex under its
  namespace, Codex runs it and sends the result, which is translated back;
- `-m gemini-…` is translated to Gemini the same way (Google Search for `web_search`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from flowloom.gateway.mock import MockServer
from tests.gateway.doc_snippets import at, doc_block
from tests.gateway.processes import exchanges_with_bodies as recorded_exchanges
from tests.gateway.processes import gateway_process
from tests.support.clis import CODEX_VERSION, offline_env

REPLY = "Hello from the FlowLoom mock provider."


def run_codex(codex: Path, tmp_path: Path, gateway: str, *args: str) -> str:
    """`codex exec *args` with the documented config.toml pointed at `gateway`; stdout."""
    home = tmp_path / "codex-home"
    work = tmp_path / "codex-work"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    config = at(gateway, doc_block("toml", "[model_providers.flowloom]"))
    (home / ".codex" / "config.toml").write_text(config)
    env = offline_env(home, FLOWLOOM_API_KEY="local")  # the docs' env_key; open access
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=work,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"codex exited {done.returncode}: {done.stdout} {done.stderr}"
    return done.stdout


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t.get("name") or t.get("type") for t in body.get("tools") or ()]


def moved(mock: MockServer) -> dict[str, str]:
    return {
        "FLOWLOOM_OPENAI_BASE_URL": mock.url + "/v1",
        "FLOWLOOM_ANTHROPIC_BASE_URL": mock.url,
        "FLOWLOOM_GEMINI_BASE_URL": mock.url,
    }


def test_codex_with_its_default_model_passes_through(
    codex: Path, tmp_path: Path, mock_provider: MockServer
) -> None:
    with gateway_process(tmp_path, env=moved(mock_provider)) as gateway:
        out = run_codex(codex, tmp_path, gateway, "say hi")
    assert REPLY in out
    calls = mock_provider.requests("/v1/responses")
    assert calls and all(c["status"] == 200 for c in calls)
    assert {"namespace", "web_search"} <= {t["type"] for t in calls[0]["body"]["tools"]}
    events = recorded_exchanges(tmp_path / "gateway.db")
    assert len(events) == len(calls)
    refs = events[0]["refs"]
    assert refs["provider"] == "openai" and refs["upstream_format"] == "responses"
    assert CODEX_VERSION in refs["user_agent"]


def test_codex_on_claude_runs_a_namespaced_tool_through_translation(
    codex: Path, tmp_path: Path, mock_provider: MockServer
) -> None:
    prompt = "Please use the tool multi_agent_v1__close_agent."  # the simulator obliges
    with gateway_process(tmp_path, env=moved(mock_provider)) as gateway:
        out = run_codex(codex, tmp_path, gateway, "-m", "claude-sonnet-4-5", prompt)
    assert REPLY in out
    calls = mock_provider.requests("/v1/messages")
    assert len(calls) == 2 and all(c["status"] == 200 for c in calls), calls
    names = tool_names(calls[0]["body"])
    assert "multi_agent_v1__close_agent" in names and "exec_command" in names
    assert {"type": "web_search_20250305", "name": "web_search"} in calls[0]["body"]["tools"]
    # Codex ran its own close_agent (it knew the call by its namespace) and sent the result.
    history = calls[1]["body"]["messages"]
    use = next(b for b in history[-2]["content"] if b["type"] == "tool_use")
    assert use["name"] == "multi_agent_v1__close_agent"
    result = history[-1]["content"][-1]
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    events = recorded_exchanges(tmp_path / "gateway.db")
    assert [e["refs"]["status"] for e in events] == [200, 200]
    for event in events:
        refs = event["refs"]
        assert refs["format"] == "responses" and refs["upstream_format"] == "anthropic"
        assert refs["input_tokens"] > 0 and refs["output_tokens"] > 0
    recorded = events[0]["_body"]["response"]
    call = next(i for i in recorded["output"] if i["type"] == "function_call")
    assert call["namespace"] == "multi_agent_v1" and call["name"] == "close_agent"


def test_codex_on_gemini_is_translated(
    codex: Path, tmp_path: Path, mock_provider: MockServer
) -> None:
    with gateway_process(tmp_path, env=moved(mock_provider)) as gateway:
        out = run_codex(codex, tmp_path, gateway, "-m", "gemini-2.5-pro", "say hi")
    assert REPLY in out
    calls = [r for r in mock_provider.requests() if "gemini-2.5-pro" in r["path"]]
    assert calls and all(c["status"] == 200 for c in calls)
    tools = calls[0]["body"]["tools"]
    declared = [d["name"] for d in tools[0]["functionDeclarations"]]
    assert "multi_agent_v1__spawn_agent" in declared
    assert {"googleSearch": {}} in tools
    refs = recorded_exchanges(tmp_path / "gateway.db")[0]["refs"]
    assert refs["upstream_format"] == "gemini" and refs["status"] == 200
