"""The backup manifest: what a backup holds, so a restore can judge it before using it.

A backup is a directory with the database copy and ``manifest.json``. The manifest
names the copy and its SHA-256, the FlowLoom version and time, and for every log its
size, origin and the (size, root) of every signed checkpoint (the latest with its
note). The log states are read inside the same consistent view the copy was taken
from, so they describe exactly the copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flowloom.errors import FlowLoomError, InputError
from flowloom.ledger import merkle
from flowloom.ledger.checkpoint import Checkpoint
from flowloom.ledger.note import parse_note

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "LogState",
    "Manifest",
    "file_sha256",
    "read_log_states",
]

FORMAT: Final = "flowloom-backup/1"
MANIFEST_NAME: Final = "manifest.json"
KEYS_NOTE: Final = (
    "not included: signing keys and the master key are backed up separately "
    "(docs/operations.md, 'Keys')"
)


@dataclass(frozen=True)
class LogState:
    """One log as the backup holds it."""

    log: str
    size: int
    origin: str | None
    checkpoints: Mapping[int, bytes]
    """Root of every signed checkpoint, by tree size."""
    latest_note: str | None
    root: bytes | None = None
    """The tree root at ``size`` (signed or not yet)."""

    def to_json(self) -> dict[str, Any]:
        latest = max(self.checkpoints) if self.checkpoints else None
        return {
            "size": self.size,
            "root": None if self.root is None else base64.b64encode(self.root).decode("ascii"),
            "origin": self.origin,
            "latest_checkpoint": None
            if latest is None
            else {
                "size": latest,
                "root": base64.b64encode(self.checkpoints[latest]).decode("ascii"),
                "note": self.latest_note,
            },
            "checkpoints": [
                [size, base64.b64encode(root).decode("ascii")]
                for size, root in sorted(self.checkpoints.items())
            ],
        }

    @classmethod
    def from_json(cls, log: str, data: Mapping[str, Any]) -> LogState:
        latest = data.get("latest_checkpoint") or {}
        return cls(
            log=log,
            size=int(data["size"]),
            origin=None if data.get("origin") is None else str(data["origin"]),
            checkpoints={
                int(size): base64.b64decode(str(root), validate=True)
                for size, root in data.get("checkpoints", [])
            },
            latest_note=None if latest.get("note") is None else str(latest["note"]),
            root=None
            if data.get("root") is None
            else base64.b64decode(str(data["root"]), validate=True),
        )


@dataclass(frozen=True)
class Manifest:
    """What one backup holds."""

    engine: str  # "sqlite" or "postgresql"
    data_file: str
    data_sha256: str
    data_bytes: int
    created_at: str
    version: str
    logs: Mapping[str, LogState]
    schema: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "flowloom_version": self.version,
            "created_at": self.created_at,
            "engine": self.engine,
            "schema": self.schema,
            "data": {"file": self.data_file, "sha256": self.data_sha256, "bytes": self.data_bytes},
            "keys": KEYS_NOTE,
            "logs": {name: state.to_json() for name, state in sorted(self.logs.items())},
        }

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).write_text(
            json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n", "utf-8"
        )

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of the backup in ``folder``; InputError when it is not one."""
        path = folder / MANIFEST_NAME
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            engine = str(data["engine"])
            if engine not in ("sqlite", "postgresql"):
                raise ValueError(f"unknown engine {engine!r}")
            return cls(
                engine=engine,
                data_file=Path(str(data["data"]["file"])).name,
                data_sha256=str(data["data"]["sha256"]),
                data_bytes=int(data["data"]["bytes"]),
                created_at=str(data["created_at"]),
                version=str(data["flowloom_version"]),
                schema=None if data.get("schema") is None else str(data["schema"]),
                logs={
                    str(name): LogState.from_json(str(name), state)
                    for name, state in data["logs"].items()
                },
            )
        except FileNotFoundError:
            raise InputError(
                f"{folder} is not a FlowLoom backup (no {MANIFEST_NAME})",
                hint="name the directory 'flowloom admin backup' wrote",
            ) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path} is not a valid backup manifest: {exc}") from exc

    def check_data(self, folder: Path, progress: Callable[[str], None]) -> Path:
        """The data file, once its SHA-256 is the one recorded (InputError if not)."""
        path = folder / self.data_file
        progress(f"checking {path.name} ({self.data_bytes} bytes)")
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise InputError(f"cannot read the backup's data file {path}: {exc}") from exc
        if digest != self.data_sha256:
            raise InputError(
                f"{path} does not match its manifest (SHA-256 {digest[:16]}…, "
                f"recorded {self.data_sha256[:16]}…): the backup is damaged or was altered",
                hint="restore from another copy of the backup",
            )
        return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _origin(note: str) -> str | None:
    try:
        return Checkpoint.parse(parse_note(note)[0]).origin
    except FlowLoomError:
        return None


def read_log_states(cursor: Any, mark: str) -> dict[str, LogState]:
    """Every log's state, read with a DB-API cursor inside the backup's own view
    (``mark``: the driver's parameter marker, "?" or "%s")."""
    cursor.execute("SELECT log, COALESCE(MAX(idx) + 1, 0) FROM entries GROUP BY log")
    sizes = {str(log): int(size) for log, size in cursor.fetchall()}
    cursor.execute("SELECT log, size, root, note FROM checkpoints ORDER BY log, size")
    roots: dict[str, dict[int, bytes]] = {}
    notes: dict[str, str] = {}
    for log, size, root, note in cursor.fetchall():
        roots.setdefault(str(log), {})[int(size)] = bytes(root)
        notes[str(log)] = str(note)  # ordered by size: the last is the latest
    return {
        log: LogState(
            log=log,
            size=size,
            origin=_origin(notes[log]) if log in notes else None,
            checkpoints=roots.get(log, {}),
            latest_note=notes.get(log),
            root=merkle.root_at(size, _node_lookup(cursor, mark, log)),
        )
        for log, size in sizes.items()
    }


def _node_lookup(cursor: Any, mark: str, log: str) -> merkle.NodeLookup:
    sql = f"SELECT hash FROM nodes WHERE log = {mark} AND level = {mark} AND idx = {mark}"

    def lookup(ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        found: dict[merkle.NodeId, bytes] = {}
        for level, idx in ids:  # at most 64 perfect subtrees per root
            cursor.execute(sql, (log, level, idx))
            row = cursor.fetchone()
            if row is not None:
                found[(level, idx)] = bytes(row[0])
        return found

    return lookup
