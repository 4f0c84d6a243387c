"""Export bundles: the log as static files that verify with nothing but a vkey.

Layout (C2SP tlog-tiles, plus what FlowLoom adds beside it):

    checkpoint              the signed checkpoint the bundle is cut at
    tile/<L>/<N>[.p/<W>]    hash tiles: level L holds tree nodes at height 8·L
    tile/entries/<N>[.p/<W>]  entry bundles: the canonical event envelopes
    bodies/<hex>            salt (32 bytes) followed by the plaintext body
    manifest.json           origin, size, vkey, withheld bodies, SHA-256 of every file

Erased bodies are absent; their tombstones in the log say who erased them and why.
Bodies of data subjects can be withheld (`withhold_subject_bodies`): a bundle that
travels where an erasure could not reach it later (a pushed git ref) must not carry
personal data. Withheld digests are listed in the manifest; their envelopes and the
tree still verify, their content is simply not in the bundle.
The bundle is written to a temporary directory and renamed into place, so a bundle
either exists whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowloom.errors import FlowLoomError, InputError
from flowloom.ledger import merkle
from flowloom.ledger.body import SALT_SIZE, digest_of
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Verifier
from flowloom.ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    entries_path,
    entry_bundles_for_size,
    tile_path,
    tiles_for_size,
)
from flowloom.ledger.verify import Problem, VerifyReport, audit, body_ref, kind_of

__all__ = ["BUNDLE_FORMAT", "bundle_bodies", "bundle_entries", "export_bundle", "verify_bundle"]

BUNDLE_FORMAT = "flowloom-bundle/v1"


def _write(root: Path, rel: str, data: bytes, files: dict[str, str]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    files[rel] = hashlib.sha256(data).hexdigest()


def export_bundle(
    ledger: Ledger, directory: Path, *, withhold_subject_bodies: bool = False
) -> dict[str, Any]:
    """Write the whole log as a bundle; returns the manifest."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"{directory} exists and is not an empty directory")
    ledger.require_signer()  # the export and its checkpoint need the log's key: fail first
    ledger.record(
        "export.generate",
        meta={"subject": "bundle", "refs": {"format": BUNDLE_FORMAT}},
    )
    checkpoint = ledger.checkpoint()
    size = checkpoint.size
    store, log = ledger.store, ledger.log
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    files: dict[str, str] = {}
    try:
        _write(staging, "checkpoint", checkpoint.note.encode(), files)
        for level, index, width in tiles_for_size(size):
            count = width or TILE_WIDTH
            start = index * TILE_WIDTH
            hashes = list(store.level(log, level * TILE_HEIGHT, start, start + count))
            if len(hashes) != count:
                raise FlowLoomError(
                    f"tree level {level * TILE_HEIGHT} is incomplete at {start + len(hashes)}",
                    hint="run 'flowloom log verify'",
                )
            _write(staging, tile_path(level, index, width), b"".join(hashes), files)
        envelopes = store.entries(log, 0, size)
        digests: list[str] = []
        for index, width in entry_bundles_for_size(size):
            count = width or TILE_WIDTH
            chunk = [next(envelopes).envelope for _ in range(count)]
            blob = b"".join(len(e).to_bytes(2, "big") + e for e in chunk)
            _write(staging, entries_path(index, width), blob, files)
            digests.extend(d for d in (body_ref(e) for e in chunk) if d)
        withheld: list[str] = []
        for digest in digests:
            stored = store.body(digest)
            if stored is None:
                continue
            if withhold_subject_bodies and stored.subject is not None:
                withheld.append(digest)
                continue
            plain = ledger.read_body(digest)
            if plain is None:
                continue
            _write(staging, f"bodies/{digest.removeprefix('sha256:')}", stored.salt + plain, files)
        manifest = {
            "format": BUNDLE_FORMAT,
            "origin": ledger.origin,
            "size": size,
            "vkey": ledger.verifier.vkey,
            "withheld_bodies": withheld,
            "files": dict(sorted(files.items())),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if directory.exists():
            directory.rmdir()
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _decode_tolerant(data: bytes, expected: int) -> tuple[list[bytes], bool]:
    """Entries of a bundle, and whether it decoded cleanly into `expected` entries."""
    out: list[bytes] = []
    at = 0
    while at + 2 <= len(data) and len(out) < expected:
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            break
        out.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return out, len(out) == expected and at == len(data)


def verify_bundle(directory: Path, verifier: Verifier) -> VerifyReport:
    """Verify a bundle offline: checkpoint signature, every entry, tile and body."""
    report = VerifyReport()
    problems = report.problems
    try:
        note = (directory / "checkpoint").read_bytes().decode("utf-8")
        checkpoint = open_checkpoint(note, verifier)
    except (OSError, UnicodeDecodeError, FlowLoomError) as exc:
        text = exc.diagnostics() if isinstance(exc, FlowLoomError) else str(exc)
        problems.append(Problem(None, "checkpoint", f"the bundle's checkpoint: {text}"))
        return report
    report.checkpoint = checkpoint
    report.checkpoints_checked = 1
    _check_manifest(directory, problems)
    size = checkpoint.size

    def entries() -> Iterator[tuple[int, bytes, str]]:
        for index, width in entry_bundles_for_size(size):
            count = width or TILE_WIDTH
            rel = entries_path(index, width)
            try:
                data = (directory / rel).read_bytes()
            except OSError:
                problems.append(Problem(index * TILE_WIDTH, "missing", f"{rel} is missing"))
                continue
            chunk, clean = _decode_tolerant(data, count)
            if not clean:
                problems.append(
                    Problem(index * TILE_WIDTH + len(chunk), "modified", f"{rel} is damaged")
                )
            for offset, envelope in enumerate(chunk):
                yield index * TILE_WIDTH + offset, envelope, kind_of(envelope)

    levels = _read_tiles(directory, size, problems)
    bodies = _read_bodies(directory)
    report.bodies_checked = len(bodies)
    withheld = _withheld(directory)
    found, count, _roots = audit(
        entries(),
        checkpoints=[checkpoint],
        stored_leaves=lambda start: levels.get(0, [])[start:],
        bodies=bodies,
        total=size,
    )
    problems.extend(p for p in found if not (p.what == "body missing" and _names(p, withheld)))
    report.size = count
    problems.sort(key=lambda p: (p.index if p.index is not None else -1, p.what))
    return report


def bundle_entries(directory: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """The first `size` entries of a bundle (index, envelope); verify the bundle first."""
    for index, width in entry_bundles_for_size(size):
        count = width or TILE_WIDTH
        data = (directory / entries_path(index, width)).read_bytes()
        chunk, _clean = _decode_tolerant(data, count)
        for offset, envelope in enumerate(chunk):
            yield index * TILE_WIDTH + offset, envelope


def bundle_bodies(directory: Path) -> dict[str, tuple[bytes, bytes]]:
    """The bundle's bodies: digest → (salt, plaintext)."""
    found: dict[str, tuple[bytes, bytes]] = {}
    folder = directory / "bodies"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            data = path.read_bytes()
            found[f"sha256:{path.name}"] = (data[:SALT_SIZE], data[SALT_SIZE:])
    return found


def _withheld(directory: Path) -> set[str]:
    try:
        manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
        return {d for d in manifest.get("withheld_bodies", []) if isinstance(d, str)}
    except (OSError, ValueError, AttributeError):
        return set()


def _names(problem: Problem, digests: set[str]) -> bool:
    return any(d in problem.detail for d in digests)


def _check_manifest(directory: Path, problems: list[Problem]) -> None:
    try:
        manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        problems.append(Problem(None, "manifest", "manifest.json is missing or unreadable"))
        return
    for rel, expected in sorted(files.items()):
        path = directory / rel
        if not path.is_file():
            problems.append(Problem(None, "manifest", f"{rel} is listed but missing"))
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            problems.append(Problem(None, "manifest", f"{rel} does not match its SHA-256"))


def _read_tiles(directory: Path, size: int, problems: list[Problem]) -> dict[int, list[bytes]]:
    """Tile hashes per tree level; higher tiles are checked against the level below."""
    levels: dict[int, list[bytes]] = {}
    for level, index, width in tiles_for_size(size):
        count = width or TILE_WIDTH
        rel = tile_path(level, index, width)
        try:
            data = (directory / rel).read_bytes()
        except OSError:
            data = b""
        if len(data) != count * merkle.HASH_SIZE:
            problems.append(Problem(None, "tile", f"{rel} is missing or has the wrong length"))
            data = data[: count * merkle.HASH_SIZE].ljust(count * merkle.HASH_SIZE, b"\0")
        hashes = [data[i : i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE)]
        levels.setdefault(level, []).extend(hashes)
    for level in sorted(levels):
        if level == 0:
            continue
        below = levels.get(level - 1, [])
        for i, stored in enumerate(levels[level]):
            group = below[i * TILE_WIDTH : (i + 1) * TILE_WIDTH]
            if len(group) == TILE_WIDTH and merkle.root_of(group) != stored:
                first = i << (TILE_HEIGHT * level)
                problems.append(
                    Problem(
                        first,
                        "tile",
                        f"tile level {level} hash {i} (entries {first}..) does not match the "
                        "tiles below it",
                    )
                )
    return levels


def _read_bodies(directory: Path) -> dict[str, bool]:
    status: dict[str, bool] = {}
    folder = directory / "bodies"
    if not folder.is_dir():
        return status
    for path in folder.iterdir():
        digest = f"sha256:{path.name}"
        data = path.read_bytes()
        salt, plain = data[:SALT_SIZE], data[SALT_SIZE:]
        status[digest] = len(data) >= SALT_SIZE and digest_of(salt, plain) == digest
    return status
