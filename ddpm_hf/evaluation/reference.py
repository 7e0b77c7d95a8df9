"""`reference_statistics`: a dataset's feature mean and covariance (FID's or FD_DINOv2's reference), on one process
or on every process of an `accelerate launch` (what `examples/fid_stats.py` runs).

The images are split over the processes in batches; each process keeps float64 sums of its features, merged at
the end, so memory does not grow with the dataset. `save_features` also writes the features themselves (OUTPUT
without .npz + `.features.npy`, float32 [N, D]), which precision and recall compare samples with.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object

from ..data import ImageDataset, decode_image, load_image_dataset
from ..errors import InputError, MissingFileError
from ..publish import publish
from .clip import CLIP, DEFAULT_CLIP
from .dinov2 import DEFAULT_DINOV2, DINOv2
from .distributed import JobProgress, Processes
from .frechet import FeatureSums, FIDStatistics
from .inception import InceptionV3

EXTRACTORS = ("inception", "dinov2", "clip")
# hf://datasets/OWNER/NAME/FILE.npz, optionally @REVISION after the repo name (HfFileSystem's spelling)
HUB_REFERENCE = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+\.npz)$")


def features_path(output: str | os.PathLike) -> Path:
    """Where `save_features` writes the features: the statistics' name without .npz, plus .features.npy."""
    output = Path(output)
    return output.with_name((output.name[:-4] if output.name.endswith(".npz") else output.name) + ".features.npy")


def reference_statistics(
    dataset: str | None = None,
    *,
    output: str | os.PathLike,
    data_dir: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    extractor: str = "inception",
    weights: str | None = None,
    dinov2_model: str = DEFAULT_DINOV2,
    clip_model: str = DEFAULT_CLIP,
    resolution: int | None = None,
    num_images: int | None = None,
    batch_size: int = 200,
    num_workers: int = 4,
    save_features: bool = False,
    device: str | torch.device | None = None,
    cache_dir: str | None = None,
) -> FIDStatistics | None:
    """The statistics of `dataset` (a Hub id, a local dataset or `sklearn-digits`; or a folder of images as
    `data_dir`) under `extractor`'s features, saved to `output` (.npz) and returned on the main process (None on
    the others). Images are converted to RGB and resized to `resolution` (default: the first image's shorter side)
    as training data are; `num_images` keeps the first N. Raises `EncoderWeightsError` before any work when DINOv2's
    or CLIP's weights are not there."""
    if extractor not in EXTRACTORS:
        raise InputError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}")
    procs = Processes(device)
    ds, column = load_image_dataset(dataset, data_dir, split, image_column, cache_dir)
    if num_images is not None:
        ds = ds.select(range(min(num_images, len(ds))))
    resolution = resolution or min(decode_image(ds[0][column], 0).size)
    if extractor == "inception":
        model = InceptionV3(weights, device=procs.device)
    elif extractor == "dinov2":
        model = DINOv2(dinov2_model, device=procs.device)
    else:
        model = CLIP(clip_model, device=procs.device)
    images = ImageDataset(ds, column, resolution=resolution, channels=3)
    dim = model.extract(images[0][None])[0].shape[1]

    # Batches of `batch_size` images, dealt to the processes in turn; the last process's last batch may be short.
    batches = [range(s, min(s + batch_size, len(images))) for s in range(0, len(images), batch_size)]
    mine = procs.mine(batches)
    output = Path(output)
    partial = output.with_name(f".{output.name}.partial")
    if procs.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        if save_features:  # every process writes its rows into this one file
            np.lib.format.open_memmap(partial / "features.npy", mode="w+", dtype=np.float32, shape=(len(images), dim))
    procs.barrier()
    rows = np.load(partial / "features.npy", mmap_mode="r+") if save_features else None

    progress = JobProgress(partial, procs, len(images), desc=f"{extractor} features")
    sums = FeatureSums(dim)
    subset = torch.utils.data.Subset(images, [i for batch in mine for i in batch])
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers)
    for batch, indices in zip(loader, mine, strict=True):
        features = model.extract(batch)[0].numpy()
        sums.add(features)
        if rows is not None:
            rows[indices.start : indices.stop] = features
        progress.advance(len(batch))
    if rows is not None:
        rows.flush()
        del rows
    progress.finish()
    every = gather_object([sums]) if procs.count > 1 else [sums]  # in process order
    procs.barrier()
    if not procs.is_main:
        return None

    total = FeatureSums(dim)
    for part in every:
        total.merge(part)
    saved = None
    if save_features:
        saved = features_path(output)
        publish(partial / "features.npy", saved)
    stats = FIDStatistics.from_sums(
        total,
        weights_id=model.weights_id,
        extractor=model.name,
        dataset=dataset or data_dir,
        split=split,
        features_file=saved.name if saved else None,
    )
    stats.save(output)
    shutil.rmtree(partial, ignore_errors=True)
    return stats


def push_reference(
    path: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload reference statistics (and the features file they name, if any) to a Hub dataset repo, with a card
    stating what they are (extractor and its weights' id, dataset, split, image count), so that others compare
    FIDs against the very same reference. Returns the `hf://datasets/...` address `evaluate(reference=...)` loads."""
    from ..hub import upload_folder

    path = Path(path)
    stats = FIDStatistics.load(path)
    files = [path.name] + ([stats.features_file] if stats.features_file else [])
    with tempfile.TemporaryDirectory() as tmp:
        for name in files:
            shutil.copy(path.parent / name, Path(tmp) / name)
        (Path(tmp) / "README.md").write_text(reference_card(stats, path.name))
        commit = upload_folder(
            tmp,
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message or f"Upload reference statistics {path.name}",
            files=[*files, "README.md"],
            source=str(path),
            repo_type="dataset",
        )
    return f"hf://datasets/{commit.repo_url.repo_id}/{path.name}"


def reference_card(stats: FIDStatistics, filename: str) -> str:
    """The dataset card of pushed reference statistics: what they were computed from, and how to use them."""
    features = f"; `{stats.features_file}` holds the features themselves (precision/recall, KID)"
    return (
        "---\ntags:\n- ddpm_hf\n- fid-reference-statistics\n---\n"
        f"# Reference statistics: {stats.dataset or 'a dataset'} ({stats.split or 'split not recorded'})\n\n"
        f"`{filename}` holds the feature mean and covariance of {stats.num_images:,} images under "
        f"{stats.extractor_name} (weights id `{stats.weights_id}`), computed by "
        "`ddpm_hf.evaluation.reference_statistics` (`examples/fid_stats.py`)"
        f"{features if stats.features_file else ''}.\n\n"
        "```python\nfrom ddpm_hf.evaluation import evaluate\n\n"
        f'evaluate(pipe, metrics=["fid"], reference="hf://datasets/REPO_ID/{filename}")\n```\n\n'
        "Metrics are only comparable against the same statistics from the same feature weights: evaluation refuses "
        "statistics of other weights.\n"
    )


def resolve_reference(reference: str | os.PathLike) -> str:
    """A local path for reference statistics: a file as it is, or `hf://datasets/OWNER/NAME[@REVISION]/FILE.npz`
    downloaded (with the features file it names) into the Hub cache."""
    match = HUB_REFERENCE.match(str(reference))
    if match is None:
        return str(reference)
    from huggingface_hub import hf_hub_download

    repo, revision, filename = match["repo"], match["revision"], match["file"]
    try:
        local = hf_hub_download(repo, filename, repo_type="dataset", revision=revision)
        stats = FIDStatistics.load(local)
        if stats.features_file:
            folder = str(Path(filename).parent) if "/" in filename else None
            name = f"{folder}/{stats.features_file}" if folder else stats.features_file
            hf_hub_download(repo, name, repo_type="dataset", revision=revision)
    except Exception as e:  # not found, offline, refused...
        raise MissingFileError(f"reference statistics {reference} could not be downloaded: {e}") from e
    return local
