"""CRC-32C (Castagnoli), as TensorFlow checksums its checkpoints' tensors and table blocks, in numpy.

A byte-at-a-time loop in Python would take minutes over a 114M-parameter checkpoint. The CRC is linear over GF(2),
so the data is cut into many equal chunks whose CRC registers advance together, one numpy gather per byte position,
and the chunks' registers are then folded pairwise: register(A‖B) = shift(register(A), len(B)) ⊕ register(B), where
shift(r, n) (feeding n zero bytes) is a 32×32 bit matrix applied to r.
"""

from __future__ import annotations

import functools

import numpy as np

POLYNOMIAL = 0x82F63B78  # Castagnoli's polynomial, bit-reversed
MASK_DELTA = 0xA282EAD8  # TensorFlow's (LevelDB's) masking of stored CRCs
CHUNKS = 1 << 14  # chunks advanced together; their count must be a power of two for the pairwise folding


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


TABLE = _table()


def _advance(registers: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """Feed each row of `chunks` (uint8 [n, length]) into the matching register (uint32 [n])."""
    for column in chunks.T:  # one byte position of every chunk at a time
        registers = TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
    return registers


@functools.cache
def _zeros_matrix(length: int, doublings: int = 0) -> np.ndarray:
    """The 32 columns (images of the 32 unit registers) of the map that feeds `length` · 2^`doublings` zero bytes;
    cached, since a checkpoint's tensors share a few sizes."""
    if doublings:
        half = _zeros_matrix(length, doublings - 1)
        return _apply(half, half)  # twice the zeros: the map composed with itself
    return _advance(np.uint32(1) << np.arange(32, dtype=np.uint32), np.zeros((32, length), dtype=np.uint8))


_BITS = (np.arange(256, dtype=np.uint32)[:, None] >> np.arange(8, dtype=np.uint32)) & 1  # [byte value, bit]


def _apply(columns: np.ndarray, registers: np.ndarray) -> np.ndarray:
    """The linear map with these columns applied to every register, a byte of the register at a time: for each of
    the four bytes, a 256-entry table of the XOR of the columns its set bits select."""
    out = np.zeros_like(registers)
    for k in range(4):
        table = np.bitwise_xor.reduce(np.where(_BITS, columns[8 * k : 8 * k + 8], np.uint32(0)), axis=1)
        out ^= table[(registers >> np.uint32(8 * k)) & 0xFF]
    return out


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """The CRC-32C of `data` (e.g. 0xE3069283 for b"123456789")."""
    array = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    # Chunks of at least 64 bytes (a short tensor is a few chunks), at most CHUNKS of them; a power of two.
    chunks = 1 << max(0, min(CHUNKS.bit_length() - 1, (len(array) // 64).bit_length() - 1))
    length = len(array) // chunks
    register = np.uint32(0xFFFFFFFF)
    if length:
        # Byte position by byte position over all chunks: a contiguous row per position.
        columns = np.ascontiguousarray(array[: chunks * length].reshape(chunks, length).T)
        registers = _advance(np.zeros(chunks, dtype=np.uint32), columns.T)
        doublings = 0
        while len(registers) > 1:  # fold neighbours: the left one is shifted past the right one's bytes
            registers = _apply(_zeros_matrix(length, doublings), registers[0::2]) ^ registers[1::2]
            doublings += 1
        # The initial all-ones register, shifted past every chunk, then the chunks' (zero-started) registers.
        register = _apply(_zeros_matrix(length, doublings), np.array([register]))[0] ^ registers[0]
    register = _advance(np.array([register]), array[chunks * length :][None, :])[0]
    return int(register ^ np.uint32(0xFFFFFFFF))


def unmask(masked: int) -> int:
    """The CRC that TensorFlow stored masked (rotated right by 15 bits, plus a constant)."""
    rotated = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
