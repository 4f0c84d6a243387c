"""Installing agent hooks: merged into the agents' settings, idempotent, reversible."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from flowloom.capture.agents.install import (
    agent_hook_status,
    detect_agents,
    hook_command,
    install_agent_hooks,
    uninstall_agent_hooks,
)
from flowloom.errors import ConfigError, InputError
from tests.capture.agent_sandbox import AgentSandbox

USER_HOOK = {"type": "command", "command": 'npx prettier --write "$FILE"'}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # No agent CLIs on PATH; FlowLoom is, as for anyone who installed it.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    top = tmp_path / "repo"
    top.mkdir()
    return top


def test_claude_settings_are_merged_not_replaced(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(
        json.dumps(
            {
                "permissions": {"allow": ["Bash(npm test)"]},
                "hooks": {"PostToolUse": [{"matcher": "Write|Edit", "hooks": [USER_HOOK]}]},
            }
        )
    )
    assert install_agent_hooks(repo, ["claude-code"]) == [str(settings)]
    doc = json.loads(settings.read_text())
    assert doc["permissions"] == {"allow": ["Bash(npm test)"]}
    command = hook_command("claude-code")
    assert "exec flowloom hook claude-code" in command and sys.executable not in command
    post = doc["hooks"]["PostToolUse"]
    assert post[0] == {"matcher": "Write|Edit", "hooks": [USER_HOOK]}
    assert post[1] == {"hooks": [{"type": "command", "command": command}]}
    pre = doc["hooks"]["PreToolUse"]
    assert pre == [
        {
            "matcher": "Write|Edit|MultiEdit|NotebookEdit",
            "hooks": [{"type": "command", "command": command}],
        }
    ]
    assert set(doc["hooks"]) == {
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",  # failed tool calls leave a trace too
        "Stop",
        "SessionEnd",
    }
    assert agent_hook_status(repo)["claude-code"] is True

    # idempotent
    assert install_agent_hooks(repo, ["claude-code"]) == []
    assert json.loads(settings.read_text()) == doc

    # what an earlier version wrote (one machine's interpreter) is replaced, not duplicated
    stale = json.dumps(doc).replace(
        json.dumps(command), json.dumps("/old/venv/bin/python -m flowloom hook claude-code")
    )
    settings.write_text(stale)
    assert agent_hook_status(repo)["claude-code"] is False
    assert install_agent_hooks(repo, ["claude-code"]) == [str(settings)]
    assert json.loads(settings.read_text()) == doc

    # uninstall leaves the user's own hooks and settings
    assert uninstall_agent_hooks(repo, ["claude-code"]) == [str(settings)]
    assert json.loads(settings.read_text()) == {
        "permissions": {"allow": ["Bash(npm test)"]},
        "hooks": {"PostToolUse": [{"matcher": "Write|Edit", "hooks": [USER_HOOK]}]},
    }
    assert agent_hook_status(repo)["claude-code"] is False


def test_codex_hooks_and_feature_flag(repo: Path) -> None:
    config = repo / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text('model = "gpt-5-codex"\n\n[features]\nweb_search_request = true\n')
    written = install_agent_hooks(repo, ["codex"])
    assert written == [str(repo / ".codex" / "hooks.json"), str(config)]
    parsed = tomllib.loads(config.read_text())
    assert parsed == {
        "model": "gpt-5-codex",
        "features": {"web_search_request": True, "hooks": True},  # today's key
    }
    hooks = json.loads((repo / ".codex" / "hooks.json").read_text())["hooks"]
    assert hooks["PreToolUse"][0]["matcher"] == "apply_patch|Bash"
    assert agent_hook_status(repo)["codex"] is True
    assert install_agent_hooks(repo, ["codex"]) == []

    assert uninstall_agent_hooks(repo, ["codex"]) == [
        str(repo / ".codex" / "hooks.json"),
        str(config),
    ]
    assert not (repo / ".codex" / "hooks.json").exists()
    assert config.read_text() == 'model = "gpt-5-codex"\n\n[features]\nweb_search_request = true\n'


@pytest.mark.parametrize("setting", ["codex_hooks = false", "hooks = false", "codex_hooks = true"])
def test_codex_flag_left_alone_when_the_user_set_it(repo: Path, setting: str) -> None:
    config = repo / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(f"[features]\n{setting}\n")
    assert install_agent_hooks(repo, ["codex"]) == [str(repo / ".codex" / "hooks.json")]
    assert config.read_text() == f"[features]\n{setting}\n"


def test_the_deprecated_codex_hooks_line_flowloom_added_becomes_hooks(repo: Path) -> None:
    """Earlier versions wrote `codex_hooks = true`, which Codex reports as deprecated."""
    config = repo / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text("[features]  # added by flowloom\ncodex_hooks = true  # added by flowloom\n")
    assert str(config) in install_agent_hooks(repo, ["codex"])
    assert (
        config.read_text() == "[features]  # added by flowloom\nhooks = true  # added by flowloom\n"
    )
    assert install_agent_hooks(repo, ["codex"]) == []
    uninstall_agent_hooks(repo, ["codex"])
    assert not config.exists()
    # When the user also set the current key, FlowLoom's old line just goes.
    config.write_text("[features]\nhooks = true\ncodex_hooks = true  # added by flowloom\n")
    install_agent_hooks(repo, ["codex"])
    assert config.read_text() == "[features]\nhooks = true\n"


def test_cursor_hooks_json(repo: Path) -> None:
    path = repo / ".cursor" / "hooks.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps({"version": 1, "hooks": {"afterFileEdit": [{"command": "./fmt.sh"}]}})
    )
    assert install_agent_hooks(repo, ["cursor"]) == [str(path)]
    doc = json.loads(path.read_text())
    command = hook_command("cursor")
    assert doc["version"] == 1
    assert doc["hooks"]["afterFileEdit"] == [{"command": "./fmt.sh"}, {"command": command}]
    assert "beforeShellExecution" not in doc["hooks"]  # no permission decisions
    assert doc["hooks"]["beforeSubmitPrompt"] == [{"command": command}]
    assert agent_hook_status(repo) == {"claude-code": False, "codex": False, "cursor": True}
    assert install_agent_hooks(repo, ["cursor"]) == []
    uninstall_agent_hooks(repo, ["cursor"])
    assert json.loads(path.read_text()) == {
        "version": 1,
        "hooks": {"afterFileEdit": [{"command": "./fmt.sh"}]},
    }


def test_aider_needs_nothing_installed_and_unknown_agents_are_refused(repo: Path) -> None:
    assert install_agent_hooks(repo, ["aider"]) == []
    with pytest.raises(InputError, match="unknown agent"):
        install_agent_hooks(repo, ["copilot"])


def test_a_broken_settings_file_is_reported_not_overwritten(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{ not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        install_agent_hooks(repo, ["claude-code"])
    assert settings.read_text() == "{ not json"


def test_detect_agents_by_their_files(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert detect_agents(repo) == []
    (repo / ".cursor").mkdir()
    (repo / ".aider.chat.history.md").write_text("")
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    assert detect_agents(repo) == ["claude-code", "cursor", "aider"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    codex = bin_dir / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert detect_agents(repo) == ["claude-code", "codex", "cursor", "aider"]


def test_installed_claude_hooks_capture_a_prompt_end_to_end(tmp_path: Path) -> None:
    """The installed command is exactly what runs: take it from the file and run it."""
    box = AgentSandbox(tmp_path)
    install_agent_hooks(box.repo, ["claude-code"])
    doc = json.loads((box.repo / ".claude" / "settings.json").read_text())
    command = doc["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    payload = json.dumps(box.claude("UserPromptSubmit", prompt="from the installed hook"))
    result = box.run(["sh", "-c", command], input=payload)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    box.settled()
    assert box.body(box.events("agent.prompt")[0]) == "from the installed hook"
