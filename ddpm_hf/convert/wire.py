"""The little of the protobuf wire format a TensorFlow checkpoint index needs: varints and a message's fields."""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import DDPMError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireFormatError(DDPMError, ValueError):
    """Bytes that do not parse as the protobuf wire format (or as a table's varints)."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The base-128 varint at `pos` (7 bits a byte, least significant group first) and the position after it."""
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise WireFormatError("a varint runs past the end of its data")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("a varint longer than 64 bits")


def signed64(value: int) -> int:
    """A varint read as protobuf's int64 (two's complement: negative values take ten bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(message: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a serialised message, in order: integers for varint and
    fixed-width fields, bytes for length-delimited ones (strings, sub-messages, packed repeated fields)."""
    pos = 0
    while pos < len(message):
        key, pos = read_varint(message, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = read_varint(message, pos)
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            value, pos = int.from_bytes(message[pos : pos + width], "little"), pos + width
        elif wire_type == LENGTH_DELIMITED:
            size, pos = read_varint(message, pos)
            value, pos = bytes(message[pos : pos + size]), pos + size
        else:  # groups (3, 4) are deprecated and absent from the messages read here
            raise WireFormatError(f"unsupported wire type {wire_type} (field {number})")
        if pos > len(message):
            raise WireFormatError(f"field {number} runs past the end of its message")
        yield number, wire_type, value
