"""Tile layout: where a tiled log's hashes and entries live, per C2SP tlog-tiles.

Paths and byte layouts only, no I/O (https://c2sp.org/tlog-tiles). A tile at level L
holds up to 256 consecutive hashes of tree nodes at height 8·L (level 0: leaf hashes);
the n-th tile at level L covers entries ``[n·256^(L+1), (n+1)·256^(L+1))``. Entry
bundles hold the matching level-0 entries as big-endian uint16 length-prefixed bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flowloom.errors import InputError

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileCoord",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "encode_tile_index",
    "entries_path",
    "entry_bundles_for_size",
    "parse_tile_path",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Tree levels spanned by one tile."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes (or entries) in a full tile (or entry bundle): 256."""

MAX_LEVEL = 63
"""Highest tile level a path may name."""

MAX_ENTRY_SIZE = 0xFFFF
"""Largest entry an entry bundle can hold (its length prefix is a uint16)."""

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class TileCoord:
    """A parsed tile path: ``level`` is None for an entry bundle; ``width`` None if full."""

    level: int | None
    index: int
    width: int | None


def _check_index(index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InputError(f"tile index must be a non-negative integer, not {index!r}")


def _width_suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width < TILE_WIDTH:
        raise InputError(f"partial tile width must be between 1 and 255, not {width!r}")
    return f".p/{width}"


def encode_tile_index(n: int) -> str:
    """The path form of tile index ``n``: 3-digit groups, all but the last ``x``-prefixed.

    For example 1234067 is ``x001/x234/067`` and 5 is ``005``.
    """
    _check_index(n)
    path = f"{n % 1000:03d}"
    n //= 1000
    while n > 0:
        path = f"x{n % 1000:03d}/{path}"
        n //= 1000
    return path


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """``tile/<level>/<index>[.p/<width>]``; ``width`` None (or 256) is a full tile."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
        raise InputError(f"tile level must be between 0 and {MAX_LEVEL}, not {level!r}")
    return f"tile/{level}/{encode_tile_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int | None = None) -> str:
    """``tile/entries/<index>[.p/<width>]``; ``width`` None (or 256) is a full bundle."""
    return f"tile/entries/{encode_tile_index(index)}{_width_suffix(width)}"


def parse_tile_path(path: str) -> TileCoord:
    """Parse a tile or entry bundle path (relative, starting ``tile/``).

    Only the canonical form is accepted: no leading zero groups, no ``.p/256``.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise InputError(f"not a tile path: {path!r}")
    level: int | None
    if parts[1] == "entries":
        level = None
    elif _LEVEL.fullmatch(parts[1]) and int(parts[1]) <= MAX_LEVEL:
        level = int(parts[1])
    else:
        raise InputError(f"bad tile level in {path!r}")
    groups = parts[2:]
    width: int | None = None
    if len(groups) >= 2 and groups[-2].endswith(".p"):
        if not _WIDTH.fullmatch(groups[-1]) or int(groups[-1]) >= TILE_WIDTH:
            raise InputError(f"bad partial tile width in {path!r}")
        width = int(groups[-1])
        groups = [*groups[:-2], groups[-2][: -len(".p")]]
    *upper, last = groups
    if not _GROUP.fullmatch(last) or not all(
        g.startswith("x") and _GROUP.fullmatch(g[1:]) for g in upper
    ):
        raise InputError(f"bad tile index in {path!r}")
    if upper and upper[0] == "x000":
        raise InputError(f"tile index in {path!r} has leading zero groups")
    index = int("".join(g.removeprefix("x") for g in groups))
    return TileCoord(level, index, width)


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Concatenate 1 to 256 entries, each preceded by its big-endian uint16 length."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise InputError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for number, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise InputError(
                f"entry {number} is {len(entry)} bytes; entry bundles hold at most {MAX_ENTRY_SIZE}"
            )
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into its entries; truncated or oversized bundles are refused."""
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(entries) == TILE_WIDTH:
            raise InputError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if offset + 2 > len(data):
            raise InputError("entry bundle is truncated inside a length prefix")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise InputError("entry bundle is truncated inside an entry")
        entries.append(bytes(data[offset : offset + length]))
        offset += length
    if not entries:
        raise InputError("entry bundle is empty")
    return entries


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InputError(f"tree size must be a non-negative integer, not {size!r}")


def tiles_for_size(size: int) -> list[tuple[int, int, int | None]]:
    """Every hash tile a tree of ``size`` leaves is published as, level by level.

    Each item is ``(level, index, width)`` with ``width`` None for a full tile, else the
    partial tile's width (1-255). An empty tree has no tiles.
    """
    _check_size(size)
    tiles: list[tuple[int, int, int | None]] = []
    level = 0
    hashes = size  # number of tree nodes at height 8·level
    while hashes > 0:
        full, partial = divmod(hashes, TILE_WIDTH)
        tiles.extend((level, index, None) for index in range(full))
        if partial:
            tiles.append((level, full, partial))
        hashes = full
        level += 1
    return tiles


def entry_bundles_for_size(size: int) -> list[tuple[int, int | None]]:
    """Every entry bundle of a tree of ``size`` leaves as ``(index, width)``."""
    _check_size(size)
    full, partial = divmod(size, TILE_WIDTH)
    bundles: list[tuple[int, int | None]] = [(index, None) for index in range(full)]
    if partial:
        bundles.append((full, partial))
    return bundles
