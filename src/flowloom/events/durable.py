"""Durable files: private directories, and renames that survive a crash.

Capture state holds prompts, diffs and replies, and what a hook said it recorded must
still be there after a power cut. These are the few file-system steps every writer of
that state shares. Standard library only: hooks import it.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["fsync_dir", "private_dirs"]


def private_dirs(path: str) -> None:
    """Make `path` and any missing parent a directory only its owner can open (0700).

    Capture state holds prompts, diffs and replies: `.git/flowloom` and what is in it
    are created private, whichever piece of FlowLoom creates them first.
    """
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        private_dirs(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


def fsync_dir(directory: str) -> None:
    """Sync a directory, so a name just created or renamed in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: str, line: str, *, max_bytes: int, keep_lines: int) -> None:
    """Append `line` to the journal at `path` and fsync it; past `max_bytes`, keep only
    the last `keep_lines` lines (replaced atomically), so a journal never grows unbounded."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size <= max_bytes:
        return
    with open(path, encoding="utf-8") as fh:
        kept = fh.read().splitlines()[-keep_lines:]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("".join(k + "\n" for k in kept))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
