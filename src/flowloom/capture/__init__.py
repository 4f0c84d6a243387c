"""Capture: agent hooks, git hooks and redaction feed events into the ledger."""
