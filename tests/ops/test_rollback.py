"""The rollback judgement and the anchor journal, without a database: an anchor the backup
does not reach, one it forks from, one it extends; a journal torn by a crash."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.compliance.anchors.journal import AnchorJournal
from flowloom.errors import InputError
from flowloom.ops.manifest import LogState
from flowloom.ops.rollback import conflicts

ORIGIN = "flowloom.local/proj"


def _record(size: int, root: bytes) -> AnchorRecord:
    signature = base64.b64encode(bytes(68)).decode()  # format only: never opened here
    note = f"{ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n\n\u2014 x {signature}\n"
    return AnchorRecord(
        type="witness",
        origin=ORIGIN,
        size=size,
        root=root,
        where="https://witness.test",
        anchored_at="2026-12-08T00:00:00Z",
        note=note,
    )


def _state(size: int, checkpoints: dict[int, bytes], root: bytes | None = None) -> LogState:
    return LogState("proj", size, ORIGIN, checkpoints, None, root)


def test_older_forked_and_extending_backups() -> None:
    anchored = _record(7, b"R" * 32)
    older = conflicts([("journal", anchored)], {"proj": _state(4, {4: b"a" * 32})}, None)
    assert [c.reason.split(":")[0] for c in older] == ["rollback"]
    assert "holds 4 entries" in older[0].reason and "size 7" in older[0].reason
    forked = conflicts([("journal", anchored)], {"proj": _state(9, {7: b"F" * 32})}, None)
    assert [c.reason.split(":")[0] for c in forked] == ["fork"]
    assert conflicts([("journal", anchored)], {"proj": _state(9, {7: b"R" * 32})}, None) == []
    # Not among the checkpoints: the root at the anchored size is computed from the data,
    # or the manifest's root when the backup ends there.
    assert conflicts([("j", anchored)], {"proj": _state(9, {})}, lambda log, n: b"R" * 32) == []
    assert conflicts([("j", anchored)], {"proj": _state(7, {}, b"R" * 32)}, None) == []
    unknown = conflicts([("j", anchored)], {"proj": _state(9, {})}, None)
    assert unknown[0].reason.startswith("cannot confirm")
    missing = conflicts([("j", anchored)], {}, None)
    assert (
        missing[0].reason.startswith("rollback")
        and "no checkpoint of that log" in missing[0].reason
    )


def test_the_same_checkpoint_from_several_sources_is_judged_once() -> None:
    anchored = _record(7, b"R" * 32)
    found = conflicts([("a", anchored), ("b", anchored)], {"proj": _state(4, {})}, None)
    assert len(found) == 1 and found[0].source == "a"


def test_the_journal_keeps_records_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    journal = AnchorJournal.of_home(tmp_path)
    assert journal.records() == []
    journal.append(_record(3, b"A" * 32))
    journal.append(_record(7, b"R" * 32))
    with journal.path.open("a") as out:
        out.write('{"type": "witn')  # the crash came mid-write
    assert [r.size for r in journal.records()] == [3, 7]
    lines = journal.path.read_text().splitlines()
    journal.path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(InputError, match="line 2 is not an anchor record"):
        journal.records()
