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
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checks import check_int
from ..data import ImageDataset, ImageMismatchError, load_image_dataset, network_images
from ..errors import InputError
from ..fastpath import resolve_precision
from ..grid import image_grid
from ..identity import folder_weights_sha256, sampler_identity, weights_sha256
from ..metrics_format import METRIC_KEYS, NLL
from ..pipeline import DDPMPaperPipeline
from ..pixels import uint8_to_pil
from ..reporting import get_logger
from ..scheduler import DDPMPaperScheduler
from ..schedulers import check_num_inference_steps
from ..settings import setting
from .distributed import JobProgress, Processes
from .jobs import (
    BoundSettings,
    SamplingSettings,
    Timings,
    add_missing_features,
    bound_shards,
    bound_summary,
    make_sample_shards,
    shards_lacking,
)
from .measures import Measures, compute_metrics, reference_record
from .report import SAMPLE_METRICS, EvaluationError, EvaluationReport, EvaluationSettings
from .sharded import Plan, count, run_sharded
from .store import SampleStore, ShardStore

logger = get_logger(__name__)

REPORT_FILE = "metrics.json"
GRID_FILE = "samples.png"
BOUND_FILE = "nll.json"  # evaluate_bound's report
SAMPLES_DIR, NLL_DIR = "samples", "nll"  # the stores of each part's shards, inside the output folder


def resolve_model(model: str, revision: str | None = None) -> tuple[str, str | None]:
    """The local folder of a pipeline and, for a Hub repo, the commit it was downloaded at."""
    if os.path.isdir(model):
        return model, None
    folder = DDPMPaperPipeline.download(model, revision=revision)
    return folder, Path(folder).name if Path(folder).parent.name == "snapshots" else revision


def load_model(
    model: DDPMPaperPipeline | str | os.PathLike, revision: str | None, device: torch.device
) -> tuple[DDPMPaperPipeline, str, str, str | None]:
    """The pipeline to measure (progress bars off: the job has one), its name, weights hash and Hub commit."""
    if isinstance(model, DDPMPaperPipeline):
        name, commit = getattr(model, "name_or_path", None) or "(a pipeline object)", None
        sha = weights_sha256(model.unet)
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
    check_pipeline(pipe, config)
    measures = Measures(config, procs.device)  # every refusal happens here, on every process, before any sampling
    output_dir = Path(output_dir)
    num_samples = config.samples_to_make
    unet = pipe.unet.config
    samples = SampleStore(
        output_dir / SAMPLES_DIR,
        {
            "kind": "samples",
            "model_weights_sha256": model_sha,
            "scheduler": sampler_identity(pipe.scheduler),
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
        identity = bound_identity(
            model_sha, pipe, config.seed, config.nll_dataset, config.nll_split, True, config.nll_batch_size
        )
        nll = ShardStore(output_dir / NLL_DIR, identity, config.shard_size, default_shard_size=config.batch_size)
    specs_names = [name for spec in measures.specs for name in spec.names]
    timings = Timings()
    sampling = SamplingSettings(config.seed, config.batch_size, config.num_inference_steps, config.precision)

    def work(mine: Plan, progress: JobProgress) -> None:
        add_missing_features(samples, mine["backfill"], measures.specs, config.batch_size, progress, timings)
        make_sample_shards(pipe, samples, mine["sample"], sampling, measures.specs, progress, timings)
        if nll is not None:
            bound = BoundSettings(config.seed, config.nll_batch_size)
            bound_shards(pipe, nll, mine["nll"], nll_images, bound, progress, timings)

    work_start = time.perf_counter()
    plan = run_sharded(
        procs,
        [s for s in (samples, nll) if s is not None],
        lambda: {
            "backfill": shards_lacking(samples, num_samples, specs_names),
            "sample": samples.missing(num_samples),
            "nll": nll.missing(num_nll) if nll is not None else [],
        },
        work,
        output_dir,
        desc="evaluation",
        unwritten="No metric was written.",
    )
    if plan is None:  # not the main process
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

    sampler = sampler_identity(pipe.scheduler)
    for key, measurement in measured["measurements"].items():  # each metric's sampler, as the card states it
        steps = config.num_inference_steps if METRIC_KEYS[key].sampled else pipe.scheduler.config.num_train_timesteps
        measurement.update(sampler=sampler, num_inference_steps=steps)
    made = count(plan["sample"])
    nll_record = {"dataset": config.nll_dataset, "split": config.nll_split, "num_images": num_nll}
    report = EvaluationReport(
        {
            "model": name,
            "model_revision": commit,
            "model_weights_sha256": model_sha,
            "sampler": sampler,
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
            "nll_images_made": count(plan["nll"]),
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


def check_pipeline(pipe: DDPMPaperPipeline, config: EvaluationSettings) -> None:
    """Refuse, before any sampling, what the pipeline cannot measure as asked: the bound needs the paper's
    posterior (a `DDPMPaperScheduler`), and the step count must be one the scheduler samples."""
    if SAMPLE_METRICS & set(config.metrics) or config.grid_size:
        try:
            check_num_inference_steps(pipe.scheduler, config.num_inference_steps)
        except InputError as e:
            raise EvaluationError(str(e)) from None
    if "nll" in config.metrics and not isinstance(pipe.scheduler, DDPMPaperScheduler):
        raise EvaluationError(
            f"nll is the variational bound of the paper's reverse process, which DDPMPaperScheduler defines; this "
            f"pipeline holds a {type(pipe.scheduler).__name__}: measure nll with DDPMPaperScheduler "
            "(DDPMPaperScheduler.from_config(pipe.scheduler.config)), the sample metrics with this one"
        )


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
    if note:
        logger.info(note)
    return images


def bound_identity(
    model_sha: str,
    pipe: DDPMPaperPipeline,
    seed: int,
    dataset: str | None,
    split: str,
    clip_denoised: bool,
    batch_size: int,
    num_inference_steps: int | None = None,
) -> dict:
    """What a store of bounds records of how they were made (one builder for `evaluate` and `evaluate_bound`)."""
    return {
        "kind": "nll",
        "model_weights_sha256": model_sha,
        "scheduler": sampler_identity(pipe.scheduler),
        "seed": seed,
        "dataset": dataset,
        "split": split,
        "clip_denoised": clip_denoised,
        "batch_size": batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
        "precision": "fp32",  # the bound's network runs in fp32 (BoundSettings)
        **({"num_inference_steps": num_inference_steps} if num_inference_steps is not None else {}),
    }


@dataclass(frozen=True)
class BoundEvaluationSettings:
    """How `evaluate_bound` bounds a dataset's images; checked when made. Each field is a keyword of
    `evaluate_bound` and a flag of `examples/evaluate_nll.py`, with the default and help stated here."""

    num_images: int = setting(1000, "the first N images of the split")
    seed: int = setting(0, "image i's noise comes from a generator seeded seed + i")
    batch_size: int = setting(256, "(image, timestep) pairs per forward pass; the noise is drawn in these chunks")
    clip_denoised: bool = setting(True, "clip x̂_0 to [-1, 1] in the decoder term, as the reference does")
    num_inference_steps: int | None = setting(
        None, "the bound of the respaced chain that sampling with this many steps runs; none means all T steps"
    )
    shard_size: int | None = setting(None, "images per shard, fixed by the run that makes the store; none means 64")

    def __post_init__(self) -> None:
        try:
            check_int("num_images", self.num_images)
            check_int("batch_size", self.batch_size)
            for name in ("num_inference_steps", "shard_size"):  # None: the full chain, the default shard size
                if getattr(self, name) is not None:
                    check_int(name, getattr(self, name))
            check_int("seed", self.seed, low=0)
        except InputError as e:
            raise EvaluationError(str(e)) from None


def evaluate_bound(
    model: DDPMPaperPipeline | str | os.PathLike,
    *,
    output_dir: str | os.PathLike = "outputs/evaluate_nll",
    output: str | os.PathLike | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    image_column: str | None = None,
    convert_images: bool = False,
    revision: str | None = None,
    device: str | torch.device | None = None,
    settings: BoundEvaluationSettings | None = None,
    **kwargs: Any,
) -> EvaluationReport | None:
    """The variational bound in bits/dim of the first `num_images` images of a dataset (Table 1's NLL column), on
    one process or every process of an `accelerate launch` (what `examples/evaluate_nll.py` runs).

    Image i's bound draws its noise from a generator seeded `seed + i`, so each value, and the mean ± s.e., are the
    same for any number of processes. Per-image results are kept shard by shard in OUTPUT_DIR/nll/: the same call
    after a crash bounds only the missing images; another model, seed, data, clipping or
    `batch_size` (the noise is drawn that many (image, t) pairs at a time) is refused. `num_inference_steps`: the
    bound of the respaced chain that sampling with that many steps runs (default: the full chain). The scheduler's
    variance is the pipeline's (`fixed_large`, `fixed_small` or `analytic`). The keywords after `device` are
    `BoundEvaluationSettings`' (`num_images`, `seed`, `batch_size`...), or pass `settings` whole. Returns the report
    (also written to `output`, default OUTPUT_DIR/nll.json) on the main process, None on the others.
    """
    config = settings if settings is not None else BoundEvaluationSettings(**kwargs)
    num_images, seed, batch_size = config.num_images, config.seed, config.batch_size
    clip_denoised, num_inference_steps = config.clip_denoised, config.num_inference_steps
    procs = Processes(device)
    pipe, name, model_sha, _ = load_model(model, revision, procs.device)
    images = bound_images(procs, pipe, dataset, data_dir, split, image_column, convert_images)
    if not 1 <= num_images <= len(images):
        raise EvaluationError(f"num_images {num_images} is out of range: the {split} split has {len(images)} images")
    settings = BoundSettings(seed, batch_size, clip_denoised=clip_denoised, num_inference_steps=num_inference_steps)
    try:
        pipe.scheduler.chain(num_inference_steps)  # a step count or a Γ it lacks, refused before any work
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    identity = bound_identity(
        model_sha, pipe, seed, dataset or data_dir, split, clip_denoised, batch_size, num_inference_steps
    )
    output_dir = Path(output_dir)
    store = ShardStore(output_dir / NLL_DIR, identity, config.shard_size, default_shard_size=64)

    def work(mine: Plan, progress: JobProgress) -> None:
        bound_shards(pipe, store, mine["nll"], images, settings, progress, Timings())

    start = time.perf_counter()
    plan = run_sharded(procs, [store], lambda: {"nll": store.missing(num_images)}, work, output_dir, desc="bits/dim")
    if plan is None:  # not the main process
        return None
    summary = bound_summary(store, num_images)
    steps = num_inference_steps or pipe.scheduler.config.num_train_timesteps
    sampler = sampler_identity(pipe.scheduler)
    report = EvaluationReport(
        {
            "model": name,
            "model_weights_sha256": model_sha,
            "sampler": sampler,
            # As evaluate's metrics.json has it, so that a card and a push read the bound like any other metric.
            "metrics": {NLL.key: summary["bpd"], NLL.spread: summary["bpd_stderr"]},
            "measurements": {
                NLL.key: {
                    NLL.count: num_images,
                    "data": {"dataset": identity["dataset"], "split": split},
                    "sampler": sampler,
                    "num_inference_steps": steps,
                }
            },
            "dataset": identity["dataset"],
            "split": split,
            "clip_denoised": clip_denoised,
            "seed": seed,
            "variance_type": pipe.scheduler.config.variance_type,
            "num_inference_steps": steps,
            **summary,
            "num_processes": procs.count,
            "images_made": count(plan["nll"]),  # by this run; the rest were found in the shards
            "seconds": time.perf_counter() - start,
        }
    )
    report.save(output or output_dir / BOUND_FILE)
    return report
