"""Reading one tlog-tiles tile (or entry bundle) of a stored log, on request.

The export bundle writes every tile at once; a tile server needs one at a time, for
any tree size the log has reached. A hash tile at level L, index N, width W holds the
stored tree nodes at height 8·L, indices ``[N·256, N·256+W)``; those exist once the log
has ``(N·256+W)·256^L`` entries, and never change afterwards (the tree is append-only),
which is why full tiles may be cached for ever. Bytes are the same as the bundle's.
"""

from __future__ import annotations

from flowloom.errors import NotFoundError, StoreCorruptError
from flowloom.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileCoord, encode_entry_bundle
from flowloom.store.interface import Store

__all__ = ["read_tile", "tile_available"]


def tile_available(coord: TileCoord, size: int) -> bool:
    """Whether a log of ``size`` entries has every hash (or entry) the tile holds."""
    height = 0 if coord.level is None else coord.level * TILE_HEIGHT
    end = coord.index * TILE_WIDTH + (coord.width or TILE_WIDTH)
    return end <= size >> height


def read_tile(store: Store, log: str, coord: TileCoord, size: int) -> bytes:
    """The bytes of the tile at ``coord`` from a log of ``size`` durable entries.

    Raises `NotFoundError` for a tile the log has not grown into yet.
    """
    if not tile_available(coord, size):
        raise NotFoundError(
            "the log has not grown into this tile yet",
            hint="fetch the checkpoint and ask only for tiles its size covers",
        )
    count = coord.width or TILE_WIDTH
    start = coord.index * TILE_WIDTH
    if coord.level is None:
        envelopes = [e.envelope for e in store.entries(log, start, start + count)]
        if len(envelopes) != count:
            raise StoreCorruptError(f"entries {start}..{start + count} are not all stored")
        return encode_entry_bundle(envelopes)
    hashes = list(store.level(log, coord.level * TILE_HEIGHT, start, start + count))
    if len(hashes) != count:
        raise StoreCorruptError(
            f"tree level {coord.level * TILE_HEIGHT} is incomplete at {start + len(hashes)}",
            hint="run 'flowloom log verify'",
        )
    return b"".join(hashes)
