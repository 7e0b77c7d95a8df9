"""Reading TensorFlow checkpoints (the tensor bundle format of `tf.train.Saver`) without TensorFlow.

A checkpoint `PREFIX` (e.g. `model.ckpt-790000`) is `PREFIX.index`, a table (`sstable`) whose empty key holds a
`BundleHeaderProto` and whose other keys are variable names, each holding a `BundleEntryProto` (dtype, shape, and
where its bytes lie in which `PREFIX.data-SSSSS-of-NNNNN` shard, with their masked CRC-32C), and the data shards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DDPMError
from .crc32c import crc32c, unmask
from .sstable import TableError, read_table
from .wire import LENGTH_DELIMITED, WireFormatError, fields, signed64

# tensorflow/core/framework/types.proto: the numeric dtypes numpy holds as they are
DTYPES = {
    1: "f4",
    2: "f8",
    3: "i4",
    4: "u1",
    5: "i2",
    6: "i1",
    9: "i8",
    10: "?",
    17: "u2",
    19: "f2",
    22: "u4",
    23: "u8",
}
DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")


class CheckpointFormatError(DDPMError, ValueError):
    """A TensorFlow checkpoint that cannot be read: missing files, a malformed index, corrupted data."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lies: a `BundleEntryProto`."""

    dtype: int  # the TF DataType enum
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # unmasked; None when not recorded
    sliced: bool  # a partitioned variable (stored as slices), which this reader does not assemble


def _shape(message: bytes) -> tuple[int, ...]:
    """The dims of a `TensorShapeProto` (field 2, each a `Dim` whose field 1 is its size)."""
    dims = []
    for number, _, dim in fields(message):
        if number == 2:
            dims.append(next((signed64(v) for n, _, v in fields(dim) if n == 1), 0))
        elif number == 3 and dim:
            raise CheckpointFormatError("a tensor of unknown rank")
    return tuple(dims)


def _entry(message: bytes) -> TensorEntry:
    values = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0, "crc32c": None, "sliced": False}
    for number, wire_type, value in fields(message):
        if number == 1:
            values["dtype"] = value
        elif number == 2 and wire_type == LENGTH_DELIMITED:
            values["shape"] = _shape(value)
        elif number in (3, 4, 5):
            values[("shard", "offset", "size")[number - 3]] = signed64(value)
        elif number == 6:
            values["crc32c"] = unmask(value)
        elif number == 7:
            values["sliced"] = True
    return TensorEntry(**values)


def checkpoint_prefix(path: str | os.PathLike) -> Path | None:
    """The checkpoint prefix that `path` names: the prefix itself, its `.index` or a data shard, or a folder with a
    `checkpoint` state file (its `model_checkpoint_path`) or a single `.index`. None if `path` is no TF checkpoint."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(), flags=re.MULTILINE)
            if not match:
                raise CheckpointFormatError(f"{state} names no model_checkpoint_path")
            named = path / match.group(1)  # an absolute path stays itself under `/`
            if named.with_name(named.name + ".index").is_file():
                return named
            # Saved elsewhere (the authors' name paths in their training bucket, gs://...): the file beside it.
            return path / PurePosixPath(match.group(1)).name
        indexes = sorted(path.glob("*.index"))
        if len(indexes) > 1:
            names = ", ".join(p.name[: -len(".index")] for p in indexes)
            raise CheckpointFormatError(f"{path} holds several checkpoints ({names}): name one of them")
        return indexes[0].with_suffix("") if indexes else None
    if path.name.endswith(".index"):
        return path.with_suffix("")
    if DATA_SHARD.search(path.name):
        return path.with_name(DATA_SHARD.sub("", path.name))
    return path if path.with_name(path.name + ".index").is_file() else None


class TFCheckpoint:
    """The variables of a TensorFlow checkpoint: `entries` (name → `TensorEntry`) and `read(name)`.

    `verify` checks the index's block checksums and each tensor's CRC-32C as it is read.
    """

    def __init__(self, prefix: str | os.PathLike, verify: bool = True) -> None:
        self.prefix, self.verify = Path(prefix), verify
        self.index_file = self.prefix.with_name(self.prefix.name + ".index")
        if not self.index_file.is_file():
            raise CheckpointFormatError(f"no checkpoint index {self.index_file}")
        try:
            table = read_table(self.index_file.read_bytes(), verify)
            header = dict((n, v) for n, _, v in fields(table.pop(b"", b"")))
            self.entries = {key.decode(): _entry(value) for key, value in table.items()}
        except (TableError, WireFormatError, UnicodeDecodeError) as e:
            raise CheckpointFormatError(f"{self.index_file} is not a checkpoint index: {e}") from None
        self.num_shards = header.get(1, 1)
        self.byteorder = ">" if header.get(2, 0) == 1 else "<"  # BundleHeaderProto.Endianness: LITTLE 0, BIG 1
        missing = [str(f) for f in self.data_files if not f.is_file()]
        if missing:
            raise CheckpointFormatError(f"the checkpoint's data file is missing: {', '.join(missing)}")

    @property
    def data_files(self) -> list[Path]:
        n = self.num_shards
        return [self.prefix.with_name(f"{self.prefix.name}.data-{i:05d}-of-{n:05d}") for i in range(n)]

    def read(self, name: str) -> np.ndarray:
        """The variable `name` as a numpy array."""
        entry = self.entries[name]
        if entry.sliced:
            raise CheckpointFormatError(f"{name} is a partitioned variable (stored as slices), which is not supported")
        if entry.dtype not in DTYPES:
            raise CheckpointFormatError(f"{name} has TF dtype {entry.dtype}, not a numeric type this reader holds")
        data = bytearray(entry.size)
        with open(self.data_files[entry.shard], "rb") as f:
            f.seek(entry.offset)
            if f.readinto(data) != entry.size:
                raise CheckpointFormatError(f"{self.data_files[entry.shard]} ends inside {name}: the file is truncated")
        if self.verify and entry.crc32c is not None and crc32c(data) != entry.crc32c:
            raise CheckpointFormatError(f"{name} fails its CRC-32C check: {self.data_files[entry.shard]} is corrupted")
        dtype = np.dtype(self.byteorder + DTYPES[entry.dtype])
        if dtype.itemsize * int(np.prod(entry.shape)) != entry.size:
            raise CheckpointFormatError(
                f"{name}: {entry.size} bytes do not hold a {dtype} tensor of shape {entry.shape}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))
