"""The pending link: which session and decision the next commit belongs to.

Agent hooks write it when a decision is recorded; git's prepare-commit-msg hook reads it
to add trailers; post-commit clears what it consumed. It lives beside the ledger in the
git common dir (`.git/flowloom/state.json`), so all worktrees of a clone share it, and
is replaced atomically (write to a temporary file, then rename), so a killed hook never
leaves half a file. Standard library only: it runs inside hooks.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from flowloom.events.durable import private_dirs

__all__ = ["PendingLink", "clear_pending", "read_pending", "state_path", "write_pending"]


@dataclass(frozen=True)
class PendingLink:
    """What the next commit should be linked to."""

    decision: str | None = None
    session: str | None = None
    entry: int | None = None  # ledger index of the event the commit carries
    agent: str | None = None


def state_path(git_common_dir: Path) -> Path:
    return git_common_dir / "flowloom" / "state.json"


def read_pending(git_common_dir: Path) -> PendingLink | None:
    """The pending link, or None when there is none or the file is unreadable."""
    try:
        data = json.loads(state_path(git_common_dir).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    entry = data.get("entry")
    return PendingLink(
        decision=data.get("decision") if isinstance(data.get("decision"), str) else None,
        session=data.get("session") if isinstance(data.get("session"), str) else None,
        entry=entry if isinstance(entry, int) else None,
        agent=data.get("agent") if isinstance(data.get("agent"), str) else None,
    )


def write_pending(git_common_dir: Path, link: PendingLink) -> None:
    path = state_path(git_common_dir)
    private_dirs(str(path.parent))
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(link), fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clear_pending(git_common_dir: Path) -> None:
    state_path(git_common_dir).unlink(missing_ok=True)
