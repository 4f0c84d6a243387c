"""The real Claude Code (pinned) talks to `flowloom mcp` as `flowloom init` registers it:
it opens the connection with the 2026-07-28 protocol (answered without the SDK,
`flowloom.cli.mcp_front`), and a FlowLoom tool the model calls is served by the SDK
server, which takes the connection over at that call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_real_agents import governed, run_claude
from tests.support.scripted_models import Script, ToolUse

TOOL = "mcp__flowloom__recent_activity"


@pytest.mark.slow
def test_claude_code_calls_a_flowloom_tool(claude_code: Path, tmp_path: Path) -> None:
    box = governed(tmp_path, "claude-code")
    script = Script([ToolUse(TOOL, {"limit": 2})], reply="Two events so far.")
    done, models = run_claude(
        claude_code, box, script, "What happened lately?", "--allowedTools", TOOL
    )
    [result] = [
        block
        for request in models.requests[1:]
        for message in request["body"]["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert not result.get("is_error"), result
    content = result["content"]
    text = content if isinstance(content, str) else json.dumps(content)
    assert '"events"' in text and "agent.prompt" in text  # the ledger's, through the SDK
    assert "Two events so far." in done.stdout
