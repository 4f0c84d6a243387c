"""Edits that bypassed capture: the work tree when the prompt came and when the turn ended.

Hooks see the tools an agent announces. A file changed any other way during a turn — a
shell command (`sed -i`, `cat > f`), Codex's `apply_patch` run through its shell tool
(Codex 0.171 sends PreToolUse for it and no PostToolUse), a script the agent started —
leaves no artifact.write. So:

- at the prompt (UserPromptSubmit) the hook notes the state of every file git reports
  as changed or untracked (`git status`, ignored files excluded): path → digest;
- each captured write notes the digest it recorded;
- at Stop, a file whose state differs from both is an edit that bypassed capture. The
  hook records it as an artifact.write marked `"detected": "stop"` (the diff against
  the content at the prompt: HEAD's, for a file that was clean then; unknown, for one
  that already had uncommitted changes), so it is auto-committed and linked like any
  other write, and one `capture.bypass` event lists the paths and digests, so the gap
  in what the hooks saw stays visible.

An edit you make in your editor while the agent works is indistinguishable from one the
agent made outside its tools, and is recorded (and committed) as the turn's too; the
`detected: stop` mark says so. Claude Code's `.claude/settings.local.json` (the
permissions a person granted, personal by design) is never reported. Standard library
only (hooks stay light); at most `MAX_FILES` changed files are followed (beyond that
nothing is reported).
"""

from __future__ import annotations

import os
import subprocess

from flowloom.capture.agents.common import Place, digest

__all__ = ["MAX_FILES", "bypassed", "head_content", "snapshot", "state_of"]

MAX_FILES = 5000
"""More changed files than this at once: the work tree is not followed for the turn."""

_ABSENT = "absent"
_PERSONAL = frozenset({".claude/settings.local.json"})
"""Files an agent writes for itself, never meant for the repository (Claude Code's
permission choices)."""
_TIMEOUT_S = 30


def _git(place: Place, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    if place.top is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # a read must not take the index lock from the agent
    try:
        return subprocess.run(
            ["git", *args],
            cwd=place.top,
            env=env,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _state(path: str) -> str:
    """`sha256:…` of the file's content, or `absent`."""
    import hashlib

    try:
        with open(path, "rb") as fh:
            hasher = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(block)
    except FileNotFoundError:
        return _ABSENT
    except (IsADirectoryError, NotADirectoryError):
        return _ABSENT
    except OSError:
        return "unreadable"
    return "sha256:" + hasher.hexdigest()


def snapshot(place: Place) -> dict[str, str] | None:
    """Every changed or untracked file of the work tree → its state; None when unknown."""
    done = _git(place, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    if done is None or done.returncode != 0 or place.top is None:
        return None
    states: dict[str, str] = {}
    for record in done.stdout.split(b"\0"):
        if len(record) < 4:
            continue
        rel = os.fsdecode(record[3:])
        if rel in _PERSONAL:
            continue
        if len(states) >= MAX_FILES:
            return None
        states[rel] = _state(os.path.join(place.top, rel))
    return states


def bypassed(
    place: Place, before: dict[str, str], written: dict[str, str]
) -> list[tuple[str, str]] | None:
    """(path, state now) of each file changed since `before` other than as `written`."""
    now = snapshot(place)
    if now is None:
        return None
    found = []
    for rel, state in sorted(now.items()):
        if before.get(rel) == state or written.get(rel) == state:
            continue
        found.append((rel, state))
    return found


def head_content(place: Place, rel: str) -> bytes | None:
    """The file as HEAD has it; None when HEAD has no such file."""
    done = _git(place, "cat-file", "blob", f"HEAD:{rel}")
    if done is None or done.returncode != 0:
        return None
    return done.stdout


def state_of(content: bytes | None) -> str:
    return _ABSENT if content is None else digest(content)
