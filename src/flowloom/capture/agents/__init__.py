"""Agent hook adapters: Claude Code, Codex CLI, Cursor, Aider."""
