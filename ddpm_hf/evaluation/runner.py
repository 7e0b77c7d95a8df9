"""`evaluate`: sample a pipeline into a resumable store and measure it, in one process or in each process of an
`accelerate launch` (what `examples/evaluate.py` runs).

Image i is drawn with its own generator seeded `seed + i`, so the samples depend neither on the batch size nor on
the number of processes. They are written shard by shard to OUTPUT_DIR/samples/ (PNGs with their features beside
them, under a manifest of the weights hash, seed, steps and precision): the same call after a crash makes only the
missing shards, and a changed model, seed, step count or precision is refused. The bound (`"nll"`) is kept the same
way in OUTPUT_DIR/nll/. The report is written to OUTPUT_DIR/metrics.json, with a grid of the first samples beside.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from ..data import ImageDataset, ImageMismatchError, load_image_dataset, network_images
from ..fastpath import resolve_precision
from ..grid import image_grid
from ..pipeline import DDPMPaperPipeline, NonFiniteSampleError
from ..pixels import uint8_to_pil
from ..publish import write_file
from .clip import CLIP, DEFAULT_CLIP, cmmd
from .dinov2 import DEFAULT_DINOV2, DINOv2, EncoderWeightsError
from .distributed import JobProgress, Processes
from .frechet import FIDStatistics, frechet_distance
from .inception import InceptionV3, files_sha256
from .inception_score import inception_score_of_blocks
from .jobs import (
    BoundSettings,
    FeatureSpec,
    SamplingSettings,
    Timings,
    add_missing_features,
    bound_shards,
    bound_summary,
    make_sample_shards,
    shard_statistics,
    shards_lacking,
)
from .kid import SUBSET_SIZE as KID_SUBSET_SIZE
from .kid import SUBSETS as KID_SUBSETS
from .kid import kernel_inception_distance
from .precision_recall import NEIGHBOURHOOD, precision_recall
from .reference import resolve_reference
from .store import SampleStore, ShardStore

METRICS = ("fid", "is", "nll", "precision_recall", "fd_dinov2", "kid", "cmmd")
SAMPLE_METRICS = {"fid", "is", "precision_recall", "fd_dinov2", "kid", "cmmd"}
INCEPTION_METRICS = {"fid", "is", "precision_recall", "kid"}
REFERENCE_FEATURE_METRICS = {"precision_recall", "kid"}  # compare with the reference's features, not statistics
REPORT_FILE = "metrics.json"
GRID_FILE = "samples.png"


class EvaluationError(ValueError):
    """An evaluation that cannot run as asked (a missing reference, weights without a classifier head, metrics that
    came out non-finite...); raised before any sampling where it can be known then."""


@dataclass(frozen=True)
class EvaluationSettings:
    """What `evaluate` measures and how; checked when made. `nll_dataset` is a Hub id, a local dataset or
    `sklearn-digits`; `nll_batch_size` defaults to `batch_size`."""

    metrics: tuple[str, ...] = ("fid",)
    num_samples: int = 50_000
    batch_size: int = 256  # per process
    num_inference_steps: int = 1000
    seed: int = 0
    precision: str = "auto"
    shard_size: int | None = None
    grid_size: int = 64
    reference: str | None = None
    inception_weights: str | None = None
    is_splits: int = 10
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    reference_dinov2: str | None = None
    dinov2_model: str = DEFAULT_DINOV2
    reference_clip: str | None = None
    clip_model: str = DEFAULT_CLIP
    nll_dataset: str | None = None
    nll_split: str = "test"
    nll_num_images: int | None = None
    nll_batch_size: int | None = None
    convert_images: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.nll_batch_size is None:
            object.__setattr__(self, "nll_batch_size", self.batch_size)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise EvaluationError(f"metrics must be some of {', '.join(METRICS)}, got {list(self.metrics)}")
        positive = ("num_samples", "batch_size", "num_inference_steps", "is_splits", "nll_batch_size", "kid_subsets")
        for name in (*positive, "kid_subset_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise EvaluationError(f"{name} must be a positive whole number, got {getattr(self, name)!r}")
        if not isinstance(self.grid_size, int) or self.grid_size < 0:
            raise EvaluationError(f"grid_size must be a whole number ≥ 0, got {self.grid_size!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise EvaluationError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        asked = set(self.metrics)
        against_reference = sorted(({"fid"} | REFERENCE_FEATURE_METRICS) & asked)
        if against_reference and not self.reference:
            raise EvaluationError(
                f"{' and '.join(against_reference)} need reference statistics (make them with fid_stats.py)"
            )
        if "fd_dinov2" in asked and not self.reference_dinov2:
            raise EvaluationError("fd_dinov2 needs DINOv2 reference statistics (fid_stats.py --extractor dinov2)")
        if "cmmd" in asked and not self.reference_clip:
            raise EvaluationError(
                "cmmd needs the reference's CLIP embeddings (fid_stats.py --extractor clip --save_features)"
            )
        if "nll" in asked and not self.nll_dataset:
            raise EvaluationError("nll needs a dataset to bound (the paper reports the CIFAR-10 test set)")
        if "is" in asked and self.num_samples < self.is_splits:
            raise EvaluationError(f"the Inception Score needs num_samples ≥ is_splits ({self.is_splits})")
        if "precision_recall" in asked and self.num_samples <= NEIGHBOURHOOD:
            raise EvaluationError(f"precision_recall needs more than {NEIGHBOURHOOD} samples (its k-NN balls)")
        if "kid" in asked and (self.num_samples < 2 or self.kid_subset_size < 2):
            raise EvaluationError(
                "kid needs at least 2 samples and a kid_subset_size of at least 2 (its unbiased MMD²)"
            )

    @property
    def samples_to_make(self) -> int:
        """Samples the metrics need, or only the grid's when none is measured on samples."""
        return self.num_samples if SAMPLE_METRICS & set(self.metrics) else min(self.num_samples, self.grid_size)


@dataclass
class EvaluationReport:
    """What an evaluation measured: `metrics` (name → value), `measurements` (each metric's image count, feature
    extractor and reference), and the rest of the run's record (`to_dict()`, as metrics.json holds it)."""

    record: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float | None]:
        return self.record["metrics"]

    @property
    def measurements(self) -> dict[str, dict]:
        return self.record["measurements"]

    @property
    def model_weights_sha256(self) -> str:
        return self.record["model_weights_sha256"]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)

    def save(self, path: str | os.PathLike) -> None:
        write_file(path, (json.dumps(self.record, indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        """A metrics.json written by `evaluate` (or `examples/evaluate.py`), refused if it is not one."""
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvaluationError(f"{path} is not a readable metrics JSON ({e})") from e
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            raise EvaluationError(f"{path} is not an evaluation report: it has no 'metrics'")
        return cls(record)


def pipeline_weights_sha256(pipe: DDPMPaperPipeline) -> str:
    """sha256 of the U-Net's weights as `save_pretrained` writes them (one safetensors file): the same hash as the
    saved folder's, so that a metric is bound to the weights it measured."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in pipe.unet.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(state, metadata={"format": "pt"})).hexdigest()


def folder_weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over a pipeline folder's U-Net safetensors files: which weights were measured."""
    return files_sha256(sorted(Path(folder, "unet").glob("*.safetensors")))


def resolve_model(model: str, revision: str | None = None) -> tuple[str, str | None]:
    """The local folder of a pipeline and, for a Hub repo, the commit it was downloaded at."""
    if os.path.isdir(model):
        return model, None
    folder = DDPMPaperPipeline.download(model, revision=revision)
    return folder, Path(folder).name if Path(folder).parent.name == "snapshots" else revision


def check_reference(path: str, extractor: Any, what: str) -> FIDStatistics:
    """Statistics from fid_stats.py, refused (before any sampling) unless made by this very extractor."""
    reference = FIDStatistics.load(path)
    try:
        reference.check_made_by(extractor, path)
    except ValueError as e:
        raise EvaluationError(f"{what}: {e}") from None
    return reference


def reference_record(path: str, reference: FIDStatistics) -> dict:
    return {
        "path": str(path),
        "dataset": reference.dataset,
        "split": reference.split,
        "num_images": reference.num_images,
    }


class Measures:
    """The feature networks and reference statistics the metrics need, all loaded and checked before sampling."""

    def __init__(self, settings: EvaluationSettings, device: torch.device) -> None:
        metrics = set(settings.metrics)
        self.inception = self.dinov2 = self.reference = self.reference_dinov2 = self.reference_features = None
        self.clip = self.reference_clip = self.reference_clip_features = None
        if metrics & INCEPTION_METRICS:
            self.inception = InceptionV3(settings.inception_weights, device=device)
            if "is" in metrics and not self.inception.has_classifier:
                raise EvaluationError(
                    f"the Inception Score: {self.inception.weights_path} has no classifier head; pass Inception "
                    "weights with one (inception_weights, --inception_weights)"
                )
        if "fd_dinov2" in metrics:
            try:
                self.dinov2 = DINOv2(settings.dinov2_model, device=device)
            except EncoderWeightsError as error:
                raise EvaluationError(f"fd_dinov2: {error}") from error
        if "cmmd" in metrics:
            try:
                self.clip = CLIP(settings.clip_model, device=device)
            except EncoderWeightsError as error:
                raise EvaluationError(f"cmmd: {error}") from error
        if ({"fid"} | REFERENCE_FEATURE_METRICS) & metrics:
            path = resolve_reference(settings.reference)  # a file, or hf://datasets/... fetched into the Hub cache
            self.reference = check_reference(path, self.inception, "fid/precision_recall/kid")
            if REFERENCE_FEATURE_METRICS & metrics:
                self.reference_features = self.load_reference_features(path, self.reference, "precision_recall/kid")
        if self.dinov2 is not None:
            path = resolve_reference(settings.reference_dinov2)
            self.reference_dinov2 = check_reference(path, self.dinov2, "fd_dinov2")
        if self.clip is not None:
            path = resolve_reference(settings.reference_clip)
            self.reference_clip = check_reference(path, self.clip, "cmmd")
            self.reference_clip_features = self.load_reference_features(path, self.reference_clip, "cmmd")
        self.specs = []
        if self.inception is not None:
            self.specs.append(FeatureSpec(self.inception, probabilities="is" in metrics))
        if self.dinov2 is not None:
            self.specs.append(FeatureSpec(self.dinov2))
        if self.clip is not None:
            self.specs.append(FeatureSpec(self.clip))

    @staticmethod
    def load_reference_features(path: str, reference: FIDStatistics, what: str) -> np.ndarray:
        """The reference's features themselves (memory-mapped), which `what` compares the samples' with."""
        if not reference.features_file:
            raise EvaluationError(
                f"{what} needs the reference's features, and {path} has none: make it with "
                "examples/fid_stats.py --save_features"
            )
        features_path = Path(path).parent / reference.features_file
        if not features_path.is_file():
            raise EvaluationError(f"{features_path}, the features of {path}, is missing")
        features = np.load(features_path, mmap_mode="r", allow_pickle=False)
        if features.shape != (reference.num_images, len(reference.mu)):
            raise EvaluationError(f"{features_path} has shape {features.shape}, not that of {path}'s features")
        return features

    def spec(self, extractor: Any) -> FeatureSpec:
        return next(s for s in self.specs if s.extractor is extractor)

    def extractors(self) -> dict[str, dict]:
        """What the report records of the feature networks."""
        out = {}
        if self.inception is not None:
            out["inception"] = {"path": str(self.inception.weights_path), "id": self.inception.weights_id}
        if self.dinov2 is not None:
            out["dinov2"] = {"model": self.dinov2.model, "id": self.dinov2.weights_id}
        if self.clip is not None:
            out["clip"] = {"model": self.clip.model, "id": self.clip.weights_id}
        return out


def compute_metrics(
    settings: EvaluationSettings, measures: Measures, samples: SampleStore, nll: ShardStore | None, num_nll: int
) -> dict:
    """Every asked metric from the shards (main process), each with its image count and feature extractor."""
    metrics, details, n, asked = {}, {}, settings.num_samples, set(settings.metrics)
    if "fid" in asked:
        stats = shard_statistics(samples, measures.spec(measures.inception), n)
        metrics["fid"] = frechet_distance(stats, measures.reference)
        reference = reference_record(settings.reference, measures.reference)
        details["fid"] = {"num_samples": n, "features": "inception", "reference": reference}
    if "is" in asked:
        blocks = samples.blocks(measures.spec(measures.inception).probabilities_name, n)
        metrics["inception_score"], metrics["inception_score_std"] = inception_score_of_blocks(
            blocks, n, settings.is_splits
        )
        details["inception_score"] = {"num_samples": n, "features": "inception", "splits": settings.is_splits}
    if "precision_recall" in asked:
        features = samples.array(measures.spec(measures.inception).features_name, n)
        pr = precision_recall(measures.reference_features, features, device=measures.inception.device)
        metrics["precision"], metrics["recall"] = pr.precision, pr.recall
        record = {"num_samples": n, "features": "inception", "k": pr.k}
        record["reference"] = reference_record(settings.reference, measures.reference)
        details["precision"] = details["recall"] = record
    if "kid" in asked:
        features = samples.array(measures.spec(measures.inception).features_name, n)[0:n]
        metrics["kid"], metrics["kid_std"] = kernel_inception_distance(
            features, measures.reference_features, settings.kid_subsets, settings.kid_subset_size, settings.seed
        )
        details["kid"] = {
            "num_samples": n,
            "features": "inception",
            "subsets": settings.kid_subsets,
            "subset_size": min(settings.kid_subset_size, n, len(measures.reference_features)),
            "reference": reference_record(settings.reference, measures.reference),
        }
    if "fd_dinov2" in asked:
        stats = shard_statistics(samples, measures.spec(measures.dinov2), n)
        metrics["fd_dinov2"] = frechet_distance(stats, measures.reference_dinov2)
        reference = reference_record(settings.reference_dinov2, measures.reference_dinov2)
        details["fd_dinov2"] = {"num_samples": n, "features": "dinov2", "reference": reference}
    if "cmmd" in asked:
        embeddings = samples.array(measures.spec(measures.clip).features_name, n)[0:n]
        metrics["cmmd"] = cmmd(embeddings, measures.reference_clip_features)
        reference = reference_record(settings.reference_clip, measures.reference_clip)
        details["cmmd"] = {"num_samples": n, "features": "clip", "reference": reference}
    if nll is not None:
        summary = bound_summary(nll, num_nll)
        metrics["nll_bits_per_dim"], metrics["nll_bits_per_dim_stderr"] = summary["bpd"], summary["bpd_stderr"]
        details["nll_bits_per_dim"] = {
            "num_images": summary["num_images"],
            "data": {"dataset": settings.nll_dataset, "split": settings.nll_split},
        }
    non_finite = [name for name, value in metrics.items() if value is not None and not math.isfinite(value)]
    if non_finite:
        raise EvaluationError(f"{', '.join(non_finite)} came out NaN or infinite: not reported as results")
    return {"metrics": metrics, "measurements": details}


def load_model(
    model: DDPMPaperPipeline | str | os.PathLike, revision: str | None, device: torch.device
) -> tuple[DDPMPaperPipeline, str, str, str | None]:
    """The pipeline to measure (progress bars off: the job has one), its name, weights hash and Hub commit."""
    if isinstance(model, DDPMPaperPipeline):
        name, commit = getattr(model, "name_or_path", None) or "(a pipeline object)", None
        sha = pipeline_weights_sha256(model)
        pipe = model.to(device)
    else:
        name = str(model)
        folder, commit = resolve_model(name, revision)
        import diffusers

        diffusers.utils.logging.disable_progress_bar()
        pipe = DDPMPaperPipeline.from_pretrained(folder).to(device)
        sha = folder_weights_sha256(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe, name, sha, commit


def evaluate(
    model: DDPMPaperPipeline | str | os.PathLike,
    *,
    metrics: Sequence[str] = ("fid",),
    output_dir: str | os.PathLike = "outputs/evaluate",
    revision: str | None = None,
    device: str | torch.device | None = None,
    settings: EvaluationSettings | None = None,
    **kwargs: Any,
) -> EvaluationReport | None:
    """Sample `model` (a `DDPMPaperPipeline`, a pipeline folder or a Hub repo id) and measure `metrics` (some of
    `METRICS`), as the paper does for FID/IS/NLL; the other keywords are `EvaluationSettings`' (`num_samples`,
    `reference`, `batch_size`, `num_inference_steps`, `seed`, `nll_dataset`...), or pass `settings` whole.

    Run it in one process, or in every process of an `accelerate launch` (GPUs, or CPU processes with
    ACCELERATE_USE_CPU): the images are split over the processes by shard and the report is the same. Returns the
    `EvaluationReport` on the main process (also written to OUTPUT_DIR/metrics.json) and None on the others.
    Refusals (`EvaluationError`, `StoreMismatchError`) come before any sampling.
    """
    config = settings if settings is not None else EvaluationSettings(metrics=tuple(metrics), **kwargs)
    start = time.perf_counter()
    procs = Processes(device)
    pipe, name, model_sha, commit = load_model(model, revision, procs.device)
    measures = Measures(config, procs.device)  # every refusal happens here, on every process, before any sampling
    output_dir = Path(output_dir)
    num_samples = config.samples_to_make
    unet = pipe.unet.config
    samples = SampleStore(
        output_dir / "samples",
        {
            "kind": "samples",
            "model_weights_sha256": model_sha,
            "seed": config.seed,
            "num_inference_steps": config.num_inference_steps,
            "precision": config.precision,
            "precision_resolved": resolve_precision(config.precision, procs.device, pipe.unet.dtype),
            "image_shape": [unet.in_channels, unet.sample_size, unet.sample_size],
        },
        config.shard_size,
        default_shard_size=config.batch_size,
    )
    nll, nll_images, num_nll = None, None, 0
    if "nll" in config.metrics:
        nll_images = bound_images(procs, pipe, config.nll_dataset, None, config.nll_split, None, config.convert_images)
        num_nll = len(nll_images) if config.nll_num_images is None else min(config.nll_num_images, len(nll_images))
        nll = ShardStore(
            output_dir / "nll",
            {
                "kind": "nll",
                "model_weights_sha256": model_sha,
                "seed": config.seed,
                "dataset": config.nll_dataset,
                "split": config.nll_split,
                "clip_denoised": True,
                "batch_size": config.nll_batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
                "precision": "fp32",
            },
            config.shard_size,
            default_shard_size=config.batch_size,
        )
    progress_dir = output_dir / ".progress"
    specs_names = [name for spec in measures.specs for name in spec.names]
    plan = plan_work(
        procs,
        [s for s in (samples, nll) if s is not None],
        progress_dir,
        lambda: {
            "backfill": shards_lacking(samples, num_samples, specs_names),
            "sample": samples.missing(num_samples),
            "nll": nll.missing(num_nll) if nll is not None else [],
        },
    )

    # --- the work, split by shard over the processes ---------------------------------------------------------
    work_start = time.perf_counter()
    progress = JobProgress(progress_dir, procs, sum(len(shard) for shards in plan.values() for shard in shards))
    timings = Timings()
    sampling = SamplingSettings(config.seed, config.batch_size, config.num_inference_steps, config.precision)
    try:
        backfill = procs.mine(plan["backfill"])
        add_missing_features(samples, backfill, measures.specs, config.batch_size, progress, timings)
        make_sample_shards(pipe, samples, procs.mine(plan["sample"]), sampling, measures.specs, progress, timings)
        if nll is not None:
            bound = BoundSettings(config.seed, config.nll_batch_size)
            bound_shards(pipe, nll, procs.mine(plan["nll"]), nll_images, bound, progress, timings)
    except NonFiniteSampleError as e:
        raise EvaluationError(f"{e} No metric was written.") from None
    progress.finish()
    procs.barrier()
    if not procs.is_main:
        return None

    # --- the metrics, on the main process, from the shards ---------------------------------------------------
    work_seconds = time.perf_counter() - work_start
    begin = time.perf_counter()
    measured = compute_metrics(config, measures, samples, nll, num_nll)
    metrics_seconds = time.perf_counter() - begin
    output_dir.mkdir(parents=True, exist_ok=True)
    grid = min(config.grid_size, num_samples)
    if grid:
        images = uint8_to_pil(torch.cat(list(samples.image_batches(grid))))
        image_grid(images).save(output_dir / GRID_FILE)

    made = sum(len(shard) for shard in plan["sample"])
    nll_record = {"dataset": config.nll_dataset, "split": config.nll_split, "num_images": num_nll}
    from .. import __version__

    report = EvaluationReport(
        {
            "model": name,
            "model_revision": commit,
            "model_weights_sha256": model_sha,
            **measured,
            "num_samples": config.num_samples if SAMPLE_METRICS & set(config.metrics) else 0,
            "num_inference_steps": config.num_inference_steps,
            "seed": config.seed,
            "precision": config.precision,
            "batch_size": config.batch_size,
            "num_processes": procs.count,
            "device": str(procs.device),
            "samples_made": made,  # by this run; the rest were found finished in OUTPUT_DIR/samples
            "samples_reused": num_samples - made,
            "nll_images_made": sum(len(shard) for shard in plan["nll"]),
            "extractors": measures.extractors(),
            **({"nll_data": nll_record} if nll is not None else {}),
            **({"reference": reference_record(config.reference, measures.reference)} if measures.reference else {}),
            "settings": {k: v for k, v in asdict(config).items() if k not in ("metrics",)},
            "wall_time_s": {
                **{k: round(v, 3) for k, v in timings.seconds.items()},  # the main process's share
                "work": round(work_seconds, 3),  # all processes, from the plan to the last shard
                "metrics": round(metrics_seconds, 3),
                "total": round(time.perf_counter() - start, 3),
            },
            "ddpm_hf_version": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    report.save(output_dir / REPORT_FILE)
    return report


def plan_work(procs: Processes, stores: list[ShardStore], progress_dir: Path, plan: Callable[[], Any]) -> Any:
    """Every process checks the stores (refusing another run's results) before the main process creates them,
    resets the job's progress and makes the `plan` of what is missing, which every process then gets."""
    for store in stores:
        store.check()
    procs.barrier()  # every process has read the manifests before the main process writes one
    made = None
    if procs.is_main:
        for store in stores:
            store.create()
        JobProgress.reset(progress_dir)
        made = plan()
    procs.barrier()
    return procs.share(made)


def bound_images(
    procs: Processes,
    pipe: DDPMPaperPipeline,
    dataset: str | None,
    data_dir: str | None,
    split: str,
    image_column: str | None,
    convert_images: bool,
) -> ImageDataset:
    """The images to bound (uint8 [C, H, W] at the network's size), refused (`EvaluationError`) if unlike the
    network's images unless converting them is asked, which the main process then says."""
    ds, column = load_image_dataset(dataset, data_dir, split, image_column)
    try:
        images, note = network_images(ds, column, pipe.unet.config, convert_images)
    except ImageMismatchError as e:
        raise EvaluationError(str(e)) from None
    if note and procs.is_main:
        print(note, flush=True)
    return images


def bound_shard_dir(output: str | os.PathLike) -> Path:
    """Where `evaluate_bound` keeps per-image results by default: OUTPUT without .json, plus `_shards`."""
    path = Path(output)
    return path.with_name((path.name[:-5] if path.name.endswith(".json") else path.name) + "_shards")


def evaluate_bound(
    model: DDPMPaperPipeline | str | os.PathLike,
    *,
    num_images: int,
    output: str | os.PathLike,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    image_column: str | None = None,
    convert_images: bool = False,
    seed: int = 0,
    batch_size: int = 256,
    clip_denoised: bool = True,
    shard_size: int | None = None,
    shard_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
) -> dict | None:
    """The variational bound in bits/dim of the first `num_images` images of a dataset (Table 1's NLL column), on
    one process or every process of an `accelerate launch` (what `examples/evaluate_nll.py` runs).

    Image i's bound draws its noise from a generator seeded `seed + i`, so each value, and the mean ± s.e., are the
    same for any number of processes. Per-image results are kept shard by shard in `shard_dir` (default: beside
    `output`): the same call after a crash bounds only the missing images; another model, seed, data, clipping or
    `batch_size` (the noise is drawn that many (image, t) pairs at a time) is refused. Returns the report (also
    written to `output` as JSON) on the main process, None on the others.
    """
    procs = Processes(device)
    pipe, name, model_sha, _ = load_model(model, revision, procs.device)
    images = bound_images(procs, pipe, dataset, data_dir, split, image_column, convert_images)
    if not 1 <= num_images <= len(images):
        raise EvaluationError(f"num_images {num_images} is out of range: the {split} split has {len(images)} images")
    settings = BoundSettings(seed, batch_size, clip_denoised=clip_denoised)
    identity = {
        "kind": "nll",
        "model_weights_sha256": model_sha,
        "seed": seed,
        "dataset": dataset or data_dir,
        "split": split,
        "clip_denoised": clip_denoised,
        "batch_size": batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
        "precision": settings.precision,
    }
    store = ShardStore(shard_dir or bound_shard_dir(output), identity, shard_size, default_shard_size=64)
    progress_dir = store.root / ".progress"
    missing = plan_work(procs, [store], progress_dir, lambda: store.missing(num_images))

    start = time.perf_counter()
    progress = JobProgress(progress_dir, procs, sum(len(shard) for shard in missing), desc="bits/dim")
    try:
        bound_shards(pipe, store, procs.mine(missing), images, settings, progress, Timings())
    except NonFiniteSampleError as e:
        raise EvaluationError(f"{e} Nothing was written.") from None
    progress.finish()
    procs.barrier()
    if not procs.is_main:
        return None
    report = {
        "model": name,
        "model_weights_sha256": model_sha,
        "dataset": identity["dataset"],
        "split": split,
        "clip_denoised": clip_denoised,
        "seed": seed,
        **bound_summary(store, num_images),
        "num_processes": procs.count,
        "images_made": sum(len(shard) for shard in missing),  # by this run; the rest were found in the shards
        "seconds": time.perf_counter() - start,
    }
    write_file(output, json.dumps(report, indent=1).encode())
    return report
