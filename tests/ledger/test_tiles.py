"""C2SP tlog-tiles layout: path encoding, tile sets per tree size, entry bundles."""

from __future__ import annotations

import pytest

from flowloom.errors import InputError
from flowloom.ledger.tiles import (
    MAX_ENTRY_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileCoord,
    decode_entry_bundle,
    encode_entry_bundle,
    encode_tile_index,
    entries_path,
    entry_bundles_for_size,
    parse_tile_path,
    tile_path,
    tiles_for_size,
)


def test_constants() -> None:
    assert TILE_HEIGHT == 8
    assert TILE_WIDTH == 256 == 2**TILE_HEIGHT


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "000"),
        (5, "005"),
        (67, "067"),
        (999, "999"),
        (1000, "x001/000"),
        (1234, "x001/234"),
        (999999, "x999/999"),
        (1000000, "x001/x000/000"),
        (1234067, "x001/x234/067"),  # the spec's example
        (2**63, "x009/x223/x372/x036/x854/x775/808"),
    ],
)
def test_encode_tile_index(n: int, encoded: str) -> None:
    assert encode_tile_index(n) == encoded
    assert parse_tile_path(f"tile/0/{encoded}") == TileCoord(0, n, None)


def test_tile_paths() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(0, 1234067, 8) == "tile/0/x001/x234/067.p/8"
    assert tile_path(1, 0, 1) == "tile/1/000.p/1"
    assert tile_path(2, 0, 255) == "tile/2/000.p/255"
    assert tile_path(63, 7) == "tile/63/007"
    assert tile_path(3, 7, 256) == "tile/3/007"  # a width of 256 is a full tile
    assert entries_path(0) == "tile/entries/000"
    assert entries_path(1234067, 112) == "tile/entries/x001/x234/067.p/112"


@pytest.mark.parametrize(
    ("level", "index", "width"),
    [(-1, 0, None), (64, 0, None), (0, -1, None), (0, 0, 0), (0, 0, 257), (0, 0, -3)],
)
def test_tile_path_rejects_bad_arguments(level: int, index: int, width: int | None) -> None:
    with pytest.raises(InputError):
        tile_path(level, index, width)


def test_entries_path_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        entries_path(-1)
    with pytest.raises(InputError):
        entries_path(0, 0)


@pytest.mark.parametrize(
    ("path", "coord"),
    [
        ("tile/0/000", TileCoord(0, 0, None)),
        ("tile/0/x001/x234/067", TileCoord(0, 1234067, None)),
        ("tile/0/x001/x234/067.p/8", TileCoord(0, 1234067, 8)),
        ("tile/1/000.p/1", TileCoord(1, 0, 1)),
        ("tile/63/999.p/255", TileCoord(63, 999, 255)),
        ("tile/entries/x001/000", TileCoord(None, 1000, None)),
        ("tile/entries/005.p/17", TileCoord(None, 5, 17)),
    ],
)
def test_parse_tile_path(path: str, coord: TileCoord) -> None:
    assert parse_tile_path(path) == coord
    if coord.level is None:
        assert entries_path(coord.index, coord.width) == path
    else:
        assert tile_path(coord.level, coord.index, coord.width) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "tiles/0/000",
        "tile/00/000",  # leading zero in level
        "tile/64/000",  # level out of range
        "tile/-1/000",
        "tile/x/000",
        "tile/0/0",  # index group not 3 digits
        "tile/0/0000",
        "tile/0/x000/001",  # leading zero group
        "tile/0/001/001",  # missing x
        "tile/0/x001/x001",  # last group has x
        "tile/0/x01/001",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/08",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.q/5",
        "tile/0/.p/5",
        "tile/0/000/",
        "tile/0/000.p/5/000",
        "tile/entries/",
        "tile/entries/0000",
        "tile/0/\u0661\u0662\u0663",  # non-ASCII digits
    ],
)
def test_parse_tile_path_rejects(path: str) -> None:
    with pytest.raises(InputError):
        parse_tile_path(path)


@pytest.mark.parametrize(
    ("size", "tiles"),
    [
        (0, []),
        (1, [(0, 0, 1)]),
        (255, [(0, 0, 255)]),
        (256, [(0, 0, None), (1, 0, 1)]),
        (257, [(0, 0, None), (0, 1, 1), (1, 0, 1)]),
        (
            65536,
            [*((0, i, None) for i in range(256)), (1, 0, None), (2, 0, 1)],
        ),
        (
            65537,
            [*((0, i, None) for i in range(256)), (0, 256, 1), (1, 0, None), (2, 0, 1)],
        ),
    ],
)
def test_tiles_for_size(size: int, tiles: list[tuple[int, int, int | None]]) -> None:
    assert tiles_for_size(size) == tiles


def test_tiles_for_size_spec_example_70000() -> None:
    # "273 full level 0 tiles, one partial level 0 tile of width 112, one full level 1
    # tile, one partial level 1 tile of width 17, and one partial level 2 tile of width 1"
    tiles = tiles_for_size(70000)
    assert [t for t in tiles if t[0] == 0 and t[2] is None] == [(0, i, None) for i in range(273)]
    assert [t for t in tiles if t[2] is not None] == [(0, 273, 112), (1, 1, 17), (2, 0, 1)]
    assert [t for t in tiles if t[0] > 0 and t[2] is None] == [(1, 0, None)]
    assert len(tiles) == 273 + 4


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 65535, 65536, 65537, 70000])
def test_tiles_cover_exactly_the_tree(size: int) -> None:
    # At each level, the tile hashes cover the nodes at height 8·L that the tree has.
    for level in range(4):
        nodes = size // TILE_WIDTH**level
        widths = [256 if w is None else w for lvl, _, w in tiles_for_size(size) if lvl == level]
        assert sum(widths) == nodes


def test_tiles_for_size_rejects_negative() -> None:
    with pytest.raises(InputError):
        tiles_for_size(-1)
    with pytest.raises(InputError):
        entry_bundles_for_size(-1)


@pytest.mark.parametrize(
    ("size", "bundles"),
    [
        (0, []),
        (1, [(0, 1)]),
        (255, [(0, 255)]),
        (256, [(0, None)]),
        (257, [(0, None), (1, 1)]),
        (65536, [(i, None) for i in range(256)]),
        (65537, [*((i, None) for i in range(256)), (256, 1)]),
    ],
)
def test_entry_bundles_for_size(size: int, bundles: list[tuple[int, int | None]]) -> None:
    assert entry_bundles_for_size(size) == bundles
    assert bundles == [(i, w) for lvl, i, w in tiles_for_size(size) if lvl == 0]


def test_entry_bundle_round_trip() -> None:
    entries = [b"", b"a", b"hello world", bytes(range(256)), b"\x00" * MAX_ENTRY_SIZE]
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\x00\x00"
    assert data[2:5] == b"\x00\x01a"
    assert len(data) == 2 * len(entries) + sum(len(e) for e in entries)
    assert decode_entry_bundle(data) == entries


def test_full_entry_bundle_round_trip() -> None:
    entries = [i.to_bytes(2, "big") for i in range(TILE_WIDTH)]
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries


def test_entry_bundle_known_bytes() -> None:
    assert encode_entry_bundle([b"ab", b"c"]) == b"\x00\x02ab\x00\x01c"
    assert decode_entry_bundle(b"\x01\x00" + b"z" * 256) == [b"z" * 256]


def test_oversized_entry_rejected() -> None:
    with pytest.raises(InputError):
        encode_entry_bundle([b"\x00" * (MAX_ENTRY_SIZE + 1)])


def test_entry_bundle_count_limits() -> None:
    with pytest.raises(InputError):
        encode_entry_bundle([])
    with pytest.raises(InputError):
        encode_entry_bundle([b"x"] * (TILE_WIDTH + 1))
    with pytest.raises(InputError):
        decode_entry_bundle(b"")
    with pytest.raises(InputError):
        decode_entry_bundle(b"\x00\x00" * (TILE_WIDTH + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # half a length prefix
        b"\x00\x01",  # length with no data
        b"\x00\x02a",  # short data
        b"\x00\x01a\x00",  # second prefix truncated
        b"\x00\x01a\x00\x05abcd",  # second entry truncated
        b"\xff\xff" + b"\x00" * 100,
    ],
)
def test_truncated_entry_bundle_rejected(data: bytes) -> None:
    with pytest.raises(InputError, match="truncated"):
        decode_entry_bundle(data)


def test_every_truncation_of_a_bundle_rejected() -> None:
    data = encode_entry_bundle([b"first", b"", b"third entry"])
    for cut in range(1, len(data)):
        prefix = data[:cut]
        try:
            decoded = decode_entry_bundle(prefix)
        except InputError:
            continue
        # a cut that falls exactly on an entry boundary is a shorter, valid bundle
        assert encode_entry_bundle(decoded) == prefix
        assert len(decoded) < 3
