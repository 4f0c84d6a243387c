"""Atomic output files: a report is either written whole or not at all.

Every renderer writes into a temporary file beside the destination and renames it into
place only after the last byte is flushed and synced, so a crash, a full disk or a
rendering error never leaves half a report where an auditor might pick it up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from flowloom.errors import InputError

__all__ = ["atomic_path", "atomic_text", "write_atomic"]


def _prepare(out: Path) -> Path:
    if out.is_dir():
        raise InputError(f"{out} is a directory; give a file name for the report")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def atomic_path(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside `out`; it replaces `out` when the block succeeds."""
    _prepare(out)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_text(out: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text handle whose content lands at `out` only when the block succeeds.

    Rows are written as they come, so a large population streams to disk instead of
    being held in memory.
    """
    with atomic_path(out) as temp, temp.open("w", encoding="utf-8", newline=newline) as handle:
        yield handle


def write_atomic(out: Path, data: bytes) -> Path:
    """Write `data` to `out` atomically; returns `out`."""
    with atomic_path(out) as temp:
        temp.write_bytes(data)
    return out
