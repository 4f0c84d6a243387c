"""`flowloom init` registers the MCP server for Claude Code in the repository's .mcp.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.capture.agents.install import (
    install_mcp_server,
    mcp_server_status,
    uninstall_mcp_server,
)
from flowloom.errors import ConfigError
from tests.capture.git_sandbox import Sandbox

OURS = {"command": "flowloom", "args": ["mcp"]}
OTHER = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]}


def test_created_then_unchanged(tmp_path: Path) -> None:
    assert install_mcp_server(tmp_path) == "created"
    path = tmp_path / ".mcp.json"
    assert json.loads(path.read_text()) == {"mcpServers": {"flowloom": OURS}}
    before = path.read_bytes()
    assert install_mcp_server(tmp_path) == "unchanged"
    assert path.read_bytes() == before
    assert mcp_server_status(tmp_path)


def test_other_servers_and_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"memory": OTHER}, "note": "team servers"}))
    assert install_mcp_server(tmp_path) == "updated"
    doc = json.loads(path.read_text())
    assert doc == {"mcpServers": {"memory": OTHER, "flowloom": OURS}, "note": "team servers"}
    assert uninstall_mcp_server(tmp_path)
    assert json.loads(path.read_text()) == {"mcpServers": {"memory": OTHER}, "note": "team servers"}
    assert not uninstall_mcp_server(tmp_path)


def test_a_customised_entry_of_ours_is_kept(tmp_path: Path) -> None:
    custom = {
        "command": "/opt/tools/bin/flowloom",
        "args": ["--project", "shop", "mcp"],
        "env": {"FLOWLOOM_DEBUG": "1"},
    }
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"flowloom": custom}}))
    assert install_mcp_server(tmp_path) == "unchanged"
    assert json.loads(path.read_text())["mcpServers"]["flowloom"] == custom
    assert uninstall_mcp_server(tmp_path)
    assert not path.exists()  # nothing else was in it


def test_an_entry_named_flowloom_that_is_not_ours(tmp_path: Path) -> None:
    """Install replaces it with ours; uninstall never removes what is not ours."""
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"flowloom": OTHER}}))
    assert not mcp_server_status(tmp_path)
    assert not uninstall_mcp_server(tmp_path)
    assert json.loads(path.read_text())["mcpServers"]["flowloom"] == OTHER
    assert install_mcp_server(tmp_path) == "updated"
    assert json.loads(path.read_text())["mcpServers"]["flowloom"] == OURS


@pytest.mark.parametrize(
    "text", ['{"mcpServers": {', "[1, 2]", '{"mcpServers": []}'], ids=["json", "list", "servers"]
)
def test_a_malformed_file_is_reported_not_overwritten(tmp_path: Path, text: str) -> None:
    path = tmp_path / ".mcp.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        install_mcp_server(tmp_path)
    assert ".mcp.json" in raised.value.diagnostics()
    assert path.read_text() == text
    assert not mcp_server_status(tmp_path)


def test_init_and_uninstall_through_the_command_line(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    path = box.repo / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {"memory": OTHER}}, indent=2) + "\n")
    out = box.ok("init", "--agent", "claude-code")
    assert "mcp server: .mcp.json updated" in out
    assert json.loads(path.read_text())["mcpServers"] == {"memory": OTHER, "flowloom": OURS}
    change = box.events("config.change")[-1]
    assert change["refs"]["mcp"] == "updated"
    again = box.ok("init", "--agent", "claude-code")
    assert "mcp server: .mcp.json unchanged" in again
    assert "nothing to change" in again
    out = box.ok("uninstall")
    assert "mcp server: removed from .mcp.json" in out
    assert json.loads(path.read_text()) == {"mcpServers": {"memory": OTHER}}


def test_init_without_claude_code_leaves_mcp_json_alone(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    out = box.ok("init", "--agent", "cursor")
    assert "mcp server" not in out
    assert not (box.repo / ".mcp.json").exists()


def test_init_refuses_a_broken_mcp_json_in_one_line(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    path = box.repo / ".mcp.json"
    path.write_text('{"mcpServers": ')
    result = box.flowloom("init", "--agent", "claude-code")
    assert result.returncode == 5, result.stderr
    assert ".mcp.json is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"mcpServers": '
