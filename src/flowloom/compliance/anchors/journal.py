"""The anchor journal: every anchor this installation made, kept outside the database.

Anchor records are also `checkpoint.anchor` events in the log, but a database restored
from an old backup loses the events made after that backup, and with them the
knowledge that a larger tree was anchored. The journal is an append-only JSON Lines
file beside the keys (``$FLOWLOOM_HOME/anchors.jsonl``), never inside a data backup,
so `flowloom admin restore` can still tell that a backup rolls the log back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.errors import FlowLoomError, InputError

__all__ = ["AnchorJournal"]


class AnchorJournal:
    """Anchor records appended to one file, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of_home(cls, home: Path) -> AnchorJournal:
        """The journal of the installation whose home (keys) is ``home``."""
        return cls(home / "anchors.jsonl")

    def append(self, record: AnchorRecord) -> None:
        """Add ``record``, flushed to disk before returning (a crash loses no anchor)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_refs(), sort_keys=True, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())

    def records(self) -> list[AnchorRecord]:
        """Every record in the journal; a torn last line (a crash mid-write) is skipped."""
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the anchor journal {self.path}: {exc}") from exc
        found: list[AnchorRecord] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                found.append(AnchorRecord.from_refs(json.loads(line)))
            except (ValueError, FlowLoomError) as exc:
                if number == len(lines):
                    continue  # torn by a crash while appending: the anchor was not recorded
                raise InputError(
                    f"{self.path} line {number} is not an anchor record: {exc}",
                    hint="the journal is append-only; restore it from its own copy",
                ) from exc
        return found
