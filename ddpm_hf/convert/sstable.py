"""Reading the sorted string table (LevelDB's table format) that holds a TensorFlow checkpoint's index.

Layout, from the end of the file: a 48-byte footer (the block handles of the meta-index and the index, padded,
then a magic number); the index block maps the last key of each data block to that block's handle; each block holds
prefix-compressed entries, then its restart offsets, and is followed by a 5-byte trailer (compression type, masked
CRC-32C of the block and that type byte).
"""

from __future__ import annotations

from ..errors import DDPMError
from .crc32c import crc32c, unmask
from .wire import WireFormatError, read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION = 0


class TableError(DDPMError, ValueError):
    """A file that is not a well-formed, uncompressed table."""


def _handle(data: bytes, pos: int) -> tuple[int, int, int]:
    """A block handle (offset and size, two varints) at `pos`, and the position after it."""
    offset, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    return offset, size, pos


def _block(data: bytes, offset: int, size: int, verify: bool) -> bytes:
    """The contents of the block at `offset`, checked against its trailer."""
    if offset + size + TRAILER_SIZE > len(data):
        raise TableError(f"a block at offset {offset} (size {size}) runs past the end of the file")
    contents = data[offset : offset + size]
    compression = data[offset + size]
    if compression != NO_COMPRESSION:
        raise TableError(f"block compression type {compression} is not supported (checkpoint indexes are uncompressed)")
    if verify:
        stored = unmask(int.from_bytes(data[offset + size + 1 : offset + size + TRAILER_SIZE], "little"))
        if crc32c(data[offset : offset + size + 1]) != stored:
            raise TableError(f"the block at offset {offset} fails its CRC-32C check: the file is corrupted")
    return contents


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a block. Each key shares a prefix with the previous one: an entry is three
    varints (shared length, unshared length, value length), the unshared key bytes, then the value."""
    if len(block) < 4:
        raise TableError("a block too short for its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise TableError("a block's restart array is longer than the block")
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        size, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + size > end:
            raise TableError("a block entry runs past its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + size]))
        pos += size
    return entries


def read_table(data: bytes, verify: bool = True) -> dict[bytes, bytes]:
    """Every (key, value) of a table file's contents; `verify` checks each block's CRC-32C."""
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise TableError("no table magic number at the end of the file")
    footer = data[-FOOTER_SIZE:]
    try:
        _, _, pos = _handle(footer, 0)  # the meta-index, empty in checkpoints
        index_offset, index_size, _ = _handle(footer, pos)
        table = {}
        for _, handle in _entries(_block(data, index_offset, index_size, verify)):
            offset, size, _ = _handle(handle, 0)
            table.update(_entries(_block(data, offset, size, verify)))
    except WireFormatError as e:
        raise TableError(str(e)) from None
    return table
