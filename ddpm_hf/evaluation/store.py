"""Per-image results written shard by shard with a manifest, so that a killed evaluation resumes where it stopped.

A store is a folder: `manifest.json` (what every image in it was made with: the model's weights hash, seed, step
count, precision...) and one sub-folder per finished shard, named `START-END` (images START..END-1, 8 digits each).
A shard is built under `<folder>.partial/` and renamed into place whole, so a shard folder that exists is complete:
a process killed mid-shard leaves only a `.partial` folder, which the next run clears. Files added to a finished
shard later (the features of a newly asked metric) are written under a temporary name and renamed the same way.

`SampleStore` holds generated images as PNG files (so the folder is also a folder of images for
`python -m ddpm_hf.evaluation.fid` and other tools) beside their features as `.npy` arrays; `ShardStore` holds
arrays only (the bound's per-image terms).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DDPMError, InputError, InputTypeError, MissingFileError
from ..identity import IdentityMismatchError, record_differences
from ..publish import publish, write_file
from ..reporting import get_logger

logger = get_logger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
SHARD_NAME = re.compile(r"^(\d{8})-(\d{8})$")


class StoreMismatchError(IdentityMismatchError):
    """A store holds results made differently (another model, seed, step count, precision...): never mixed in."""


class StoreDamagedError(DDPMError, RuntimeError):
    """A stored file that does not read back as it was written (truncated, hand-copied, edited): never used."""


@dataclass(frozen=True, order=True)
class Shard:
    """Images `start` .. `end` − 1 of a store."""

    start: int
    end: int

    @property
    def name(self) -> str:
        return f"{self.start:08d}-{self.end:08d}"

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def indices(self) -> range:
        return range(self.start, self.end)


def _normalised(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as it reads back from JSON (tuples become lists), so that comparisons are like for like."""
    return json.loads(json.dumps(identity))


def npy_problem(path: Path, rows: int) -> str | None:
    """Why an .npy file is not a whole array of `rows` rows (a bad header, fewer bytes than its header says, another
    row count, an object dtype), read from its header and size alone; None if it is whole."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except (OSError, ValueError, SyntaxError) as e:  # a mangled header fails to parse as a dict literal
        return f"is not a readable .npy file ({e})"
    if dtype.hasobject or not shape:
        return f"holds a {dtype} array of shape {shape}, not rows of numbers"
    expected = data_start + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size != expected:
        size = path.stat().st_size
        return f"is {size} bytes, its header (shape {shape}, {dtype}) needs {expected}: truncated or altered"
    if shape[0] != rows:
        return f"holds {shape[0]} rows for the {rows} images of its shard"
    return None


def _npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy bytes (deterministic: the same array always gives the same bytes)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class ShardStore:
    """Arrays of per-image results in shards of `shard_size` images, refusing to mix runs of another `identity`.

    `identity` is any JSON-able dict; a store whose manifest records another one is refused (`StoreMismatchError`)
    by `check`, which every process calls before anything is written. The shard size is the manifest's: an
    explicit `shard_size` must agree with it, and `default_shard_size` is only for a new store.
    """

    def __init__(
        self,
        root: str | Path,
        identity: dict[str, Any],
        shard_size: int | None = None,
        default_shard_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.partial = self.root.with_name(self.root.name + ".partial")
        self.identity = _normalised(identity)
        self.shard_size = shard_size
        self.default_shard_size = default_shard_size

    # --- the manifest ------------------------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreDamagedError(
                f"{path} is not readable JSON ({e}): without it nothing says how {self.root}'s results were made. "
                "Restore the file, or delete the folder to start again"
            ) from e

    def check(self) -> None:
        """Refuse a store made with another identity or shard size; adopt the manifest's shard size."""
        manifest = self.read_manifest()
        if manifest is None:
            strays = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
            if strays:
                raise StoreMismatchError(
                    f"{self.root} already holds files ({', '.join(sorted(strays)[:3])}...) but no {MANIFEST}: "
                    "refusing to add results of unknown provenance to it; choose another folder"
                )
            self.shard_size = self.shard_size or self.default_shard_size
            if self.shard_size is None:
                raise InputError(f"{self.root} is a new store: a shard size is needed")
            return
        recorded = manifest.get("identity", {})
        differences = [
            f"{key}: {there!r} there, {now!r} now"
            for key, (there, now) in record_differences(recorded, self.identity).items()
        ]
        if manifest.get("format") != FORMAT:
            differences.insert(0, f"format: {manifest.get('format')!r} there, {FORMAT} now")
        if self.shard_size is not None and self.shard_size != manifest.get("shard_size"):
            differences.append(f"shard_size: {manifest.get('shard_size')!r} there, {self.shard_size!r} now")
        if differences:
            raise StoreMismatchError(
                f"{self.root} holds results made differently ({'; '.join(differences)}): refusing to mix them in. "
                "Rerun with the settings it was made with, or use another output folder."
            )
        self.shard_size = int(manifest["shard_size"])

    def create(self) -> None:
        """Write the manifest if there is none and clear shards that a killed run left half-written (main process)."""
        self.check()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.read_manifest() is None:
            manifest = {"format": FORMAT, "identity": self.identity, "shard_size": self.shard_size}
            write_file(self.root / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        shutil.rmtree(self.partial, ignore_errors=True)
        self.set_aside_damaged()

    # --- checking what is stored -------------------------------------------------------------------------------

    def damage(self, shard: Shard) -> str | None:
        """Why a finished shard cannot be used as written (a truncated or hand-copied file in it), or None."""
        for path in sorted((self.root / shard.name).glob("*.npy")):
            if problem := npy_problem(path, len(shard)):
                return f"{path} {problem}"
        return None

    def set_aside_damaged(self) -> list[Path]:
        """Move damaged shards (see `damage`) into `<folder>.damaged/`, saying which and why, so that they are made
        again, as `latest` passes over a damaged checkpoint (main process, before the missing shards are listed)."""
        moved = []
        for shard in self.finished():
            problem = self.damage(shard)
            if problem is None:
                continue
            aside = self.root.with_name(self.root.name + ".damaged") / f"{shard.name}.{time.strftime('%Y%m%d-%H%M%S')}"
            aside.parent.mkdir(exist_ok=True)
            os.replace(self.root / shard.name, aside)
            moved.append(aside)
            logger.warning(f"warning: {problem}; shard {shard.name} moved to {aside} and made again")
        return moved

    # --- which shards exist, which are missing -----------------------------------------------------------------

    def finished(self) -> list[Shard]:
        """The finished shards, in order (only whole shards exist under their final names)."""
        if not self.root.is_dir():
            return []
        shards = []
        for path in self.root.iterdir():
            match = SHARD_NAME.match(path.name)
            if match and path.is_dir():
                shards.append(Shard(int(match.group(1)), int(match.group(2))))
        return sorted(shards)

    def missing(self, count: int) -> list[Shard]:
        """Shards to make so that images 0 .. count − 1 all exist: the gaps, cut at multiples of the shard size."""
        if self.shard_size is None:
            raise InputError("call check() first: the shard size comes from the manifest")
        covered = np.zeros(count, dtype=bool)
        for shard in self.finished():
            covered[shard.start : min(shard.end, count)] = True
        shards, start = [], None
        for index in range(count + 1):
            boundary = index % self.shard_size == 0
            if start is not None and (index == count or covered[index] or boundary):
                shards.append(Shard(start, index))
                start = None
            if index < count and not covered[index] and start is None:
                start = index
        return shards

    def covering(self, count: int) -> list[Shard]:
        """The finished shards that hold images 0 .. count − 1, in order; an error if any image is missing."""
        shards, next_index = [], 0
        for shard in self.finished():
            if shard.start >= count:
                break
            if shard.start != next_index:
                break
            shards.append(shard)
            next_index = shard.end
        if next_index < count:
            raise MissingFileError(f"{self.root} lacks images from {next_index} on (of {count})")
        return shards

    # --- writing -----------------------------------------------------------------------------------------------

    def _write_shard(self, shard: Shard, files: dict[str, bytes]) -> None:
        """Build a shard under the .partial folder, then rename it into the store whole."""
        tmp = self.partial / f"{shard.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except FileNotFoundError:  # another process removed the emptied .partial folder in between
            tmp.mkdir(parents=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        publish(tmp, self.root / shard.name, replace=False)  # a shard another process finished first is as good
        with contextlib.suppress(OSError):  # only once empty: a finished store leaves no .partial folder behind
            self.partial.rmdir()

    def write(self, shard: Shard, arrays: dict[str, np.ndarray]) -> None:
        """A finished shard holding `arrays` (each [len(shard), ...]) as NAME.npy files."""
        for name, array in arrays.items():
            if len(array) != len(shard):
                raise InputError(f"{name} has {len(array)} rows for the {len(shard)} images of shard {shard.name}")
        self._write_shard(shard, {f"{name}.npy": _npy_bytes(array) for name, array in arrays.items()})

    def add(self, shard: Shard, arrays: dict[str, np.ndarray]) -> None:
        """Add arrays to a finished shard, each file renamed into place whole."""
        for name, array in arrays.items():
            if len(array) != len(shard):
                raise InputError(f"{name} has {len(array)} rows for the {len(shard)} images of shard {shard.name}")
            write_file(self.root / shard.name / f"{name}.npy", _npy_bytes(array))

    # --- reading -----------------------------------------------------------------------------------------------

    def has(self, shard: Shard, name: str) -> bool:
        return (self.root / shard.name / f"{name}.npy").is_file()

    def read(self, shard: Shard, name: str) -> np.ndarray:
        """The array NAME of a shard, memory-mapped (read-only): only the rows used are read from disk."""
        path = self.root / shard.name / f"{name}.npy"
        if problem := npy_problem(path, len(shard)):
            raise StoreDamagedError(
                f"{path} {problem}: rerun the same command, which moves damaged shards aside and makes them again"
            )
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def blocks(self, name: str, count: int) -> Iterator[np.ndarray]:
        """The rows of array NAME for images 0 .. count − 1, shard by shard, in order."""
        for shard in self.covering(count):
            yield self.read(shard, name)[: count - shard.start]

    def array(self, name: str, count: int) -> ShardedArray:
        """Array NAME of images 0 .. count − 1 as one sliceable [count, ...] array read from the shards on demand."""
        return ShardedArray(self, name, self.covering(count), count)


class ShardedArray:
    """Rows 0 .. count − 1 of one array spread over shards; slicing reads only the shards it touches."""

    def __init__(self, store: ShardStore, name: str, shards: list[Shard], count: int) -> None:
        self.store, self.name, self.shards, self.count = store, name, shards, count
        self.starts = [shard.start for shard in shards]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise InputTypeError("a ShardedArray is read by contiguous row slices")
        start, stop, _ = rows.indices(self.count)
        parts = []
        first = max(0, int(np.searchsorted(self.starts, start, side="right")) - 1)
        for shard in self.shards[first:]:
            if shard.start >= stop:
                break
            lo, hi = max(start, shard.start), min(stop, shard.end)
            if lo < hi:
                parts.append(np.asarray(self.store.read(shard, self.name)[lo - shard.start : hi - shard.start]))
        if not parts:
            return np.asarray(self.store.read(self.shards[0], self.name)[:0])
        return np.concatenate(parts)


def encode_png(image: torch.Tensor | np.ndarray) -> bytes:
    """A uint8 [C, H, W] image (C = 1 or 3) as PNG bytes: grayscale or RGB, lossless."""
    array = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3):
        raise InputError(f"expected a uint8 [1 or 3, H, W] image, got {array.dtype} of shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array.transpose(1, 2, 0).squeeze(-1) if array.shape[0] == 1 else array.transpose(1, 2, 0)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def decode_png(path: str | Path) -> np.ndarray:
    """A PNG written by `encode_png` back as uint8 [C, H, W]."""
    with Image.open(path) as image:
        array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class SampleStore(ShardStore):
    """Generated images as PNG files `INDEX.png` (8 digits) in their shard's folder, with arrays beside them."""

    def write_samples(self, shard: Shard, images: torch.Tensor, arrays: dict[str, np.ndarray]) -> None:
        """A finished shard of uint8 [len(shard), C, H, W] images and their arrays (features), renamed in whole."""
        if len(images) != len(shard):
            raise InputError(f"{len(images)} images for the {len(shard)} of shard {shard.name}")
        for name, array in arrays.items():
            if len(array) != len(shard):
                raise InputError(f"{name} has {len(array)} rows for the {len(shard)} images of shard {shard.name}")
        files = {f"{index:08d}.png": encode_png(image) for index, image in zip(shard.indices, images, strict=True)}
        files.update({f"{name}.npy": _npy_bytes(array) for name, array in arrays.items()})
        self._write_shard(shard, files)

    def damage(self, shard: Shard) -> str | None:
        """As `ShardStore.damage`, and every image of the shard present and whole (its PNG end marker written)."""
        folder = self.root / shard.name
        for index in shard.indices:
            png = folder / f"{index:08d}.png"
            if not png.is_file():
                return f"{png} is missing"
            with open(png, "rb") as f:
                f.seek(max(0, png.stat().st_size - 12))
                if b"IEND" not in f.read():
                    return f"{png} is truncated (it has no PNG end marker)"
        return super().damage(shard)

    def images(self, shard: Shard) -> torch.Tensor:
        """The shard's images as uint8 [len(shard), C, H, W]."""
        folder = self.root / shard.name
        return torch.from_numpy(np.stack([decode_png(folder / f"{index:08d}.png") for index in shard.indices]))

    def image_batches(self, count: int) -> Iterator[torch.Tensor]:
        """Images 0 .. count − 1, one uint8 batch per shard, in order."""
        for shard in self.covering(count):
            yield self.images(shard)[: count - shard.start]
