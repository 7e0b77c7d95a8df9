"""Inception features of image sets (datasets, folders, generated batches), batched, with a progress bar."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from ..data import ImageDataset
from ..errors import InputError, MissingFileError
from ..reporting import progress_bar
from .frechet import FIDStatistics
from .inception import InceptionV3
from .store import MANIFEST, SHARD_NAME

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def image_files(path: str | Path) -> list[str]:
    """The image files a folder stands for, sorted by path: an evaluation store's samples (`evaluate.py`'s output
    folder, or its `samples/` store) and nothing else of it (not its `samples.png` grid, nor a half-written shard);
    otherwise every image under the folder, recursively."""
    folder = Path(path)
    if not folder.is_dir():
        raise MissingFileError(f"not a folder of images: {folder}")
    store = next((f for f in (folder, folder / "samples") if (f / MANIFEST).is_file()), None)
    if store is not None:
        shards = [p for p in store.iterdir() if SHARD_NAME.match(p.name) and p.is_dir()]
        files = sorted(str(p) for shard in shards for p in shard.glob("*.png"))
        where = f"the evaluation store {store}"
    else:
        files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        where = str(folder)
    if not files:
        raise MissingFileError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {where}")
    return files


def image_folder(path: str | Path, resolution: int | None = None, resize: bool = False) -> ImageDataset:
    """The images of a folder (see `image_files`) as uint8 RGB tensors of one square size.

    Images of different sizes are refused, naming two of them: resizing them to one size changes the FID without a
    word. With `resize=True` they are resized and center-cropped to `resolution` (default: the first image's shorter
    side) as training data are (`ddpm_hf.data.to_tensor`).
    """
    files = image_files(path)
    sizes: dict[tuple[int, int], str] = {}
    for file in files:
        with Image.open(file) as image:  # reads the header only
            sizes.setdefault(image.size, file)
    if len(sizes) > 1 and not resize:
        shown = "; ".join(f"{w}×{h}: {file}" for (w, h), file in list(sizes.items())[:3])
        raise InputError(
            f"{path} holds images of {len(sizes)} sizes ({shown}): FID of resized images is another number. Pass "
            "resize=True (--resize) to resize and center-crop them to one size"
        )
    if resolution is None:
        resolution = min(next(iter(sizes)))
    features = datasets.Features({"image": datasets.Image(decode=False)})
    ds = datasets.Dataset.from_dict({"image": [{"path": f, "bytes": None} for f in files]}, features=features)
    return ImageDataset(ds, "image", resolution=resolution, channels=3)


def compute_features(
    model: InceptionV3,
    batches: Iterable[torch.Tensor],
    *,
    probabilities: bool = False,
    total: int | None = None,
    desc: str = "Inception features",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features [N, D] (float32) and, if asked, class probabilities [N, K] of uint8 NCHW image batches.

    `total` is the number of images, for the progress bar.
    """
    features, probs = [], []
    with progress_bar(total=total, desc=desc, unit="img") as bar:
        for batch in batches:
            f, p = model.extract(batch, probabilities=probabilities)
            features.append(f.numpy())
            if p is not None:
                probs.append(p.numpy())
            bar.update(len(batch))
    if not features:
        raise InputError("no images to compute features of")
    return np.concatenate(features), (np.concatenate(probs) if probabilities else None)


def dataset_statistics(
    model: InceptionV3,
    images: torch.utils.data.Dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    **metadata: str | None,
) -> FIDStatistics:
    """FID statistics of a dataset of uint8 [C, H, W] tensors (an `ImageDataset`, an `image_folder`...).

    `metadata` (`dataset`, `split`) is recorded in the statistics.
    """
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    features, _ = compute_features(model, loader, total=len(images))
    return FIDStatistics.from_features(features, weights_id=model.weights_id, **metadata)


def is_statistics_file(path: str | Path) -> bool:
    """Whether `path` names an .npz statistics file (rather than a folder of images)."""
    return str(path).endswith(".npz") and Path(path).is_file()


def statistics_of(
    source: str | Path,
    model: InceptionV3,
    batch_size: int = 64,
    num_workers: int = 0,
    resize: bool = False,
) -> FIDStatistics:
    """Statistics of a folder of images (see `image_folder`), or read from an .npz statistics file."""
    if is_statistics_file(source):
        return FIDStatistics.load(source)
    return dataset_statistics(model, image_folder(source, resize=resize), batch_size, num_workers)
