"""`estimate_analytic_variance`: Γ_t of a trained pipeline on its training data, on one process or every process of
an `accelerate launch`, resumable; it writes a pipeline folder whose scheduler uses Analytic-DPM's optimal variance
(what `examples/analytic_variance.py` runs).

Image i's x_t draws its noise from a generator seeded `seed + i`, so each image's values, and Γ with its standard
error, are the same for any number of processes. Per-image values are kept shard by shard in OUTPUT_DIR/gamma/ (a
`run_sharded` job): the same call after a crash measures only the missing images, and another model, seed, data,
timesteps or batch size is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analytic import GammaEstimate, describe, eps_mean_squares, gamma_timesteps, with_analytic_variance
from ..card import rerender_card
from ..checks import check_choice, check_int
from ..errors import InputError
from ..fastpath import eps_model
from ..identity import sampler_identity
from ..pipeline import DDPMPaperPipeline, check_finite
from ..pixels import scale_to_model
from ..publish import publish, write_file
from ..scheduler import DDPMPaperScheduler
from ..settings import setting
from .defaults import PRECISIONS
from .distributed import JobProgress, Processes
from .report import EvaluationError
from .runner import bound_images, load_model, resolve_model
from .sharded import Plan, run_sharded
from .store import ShardStore

SHARD_DIR = "gamma"
ESTIMATE_FILE = "gamma.json"


def _measure_shards(
    pipe: DDPMPaperPipeline,
    store: ShardStore,
    shards: list,
    images: torch.utils.data.Dataset,
    timesteps: torch.Tensor,
    seed: int,
    batch_size: int,
    precision: str,
    progress: JobProgress,
) -> None:
    """‖ε_θ‖²/d and ‖ε_θ - ε‖²/d at each timestep of each image of each shard, image by image (its own generator)."""
    device = pipe.device
    with eps_model(pipe.unet, precision, device=device) as eps:
        for shard in shards:
            squares, errors = [], []
            for index in shard.indices:
                x_0 = scale_to_model(images[index][None]).to(device)
                generator = torch.Generator(device).manual_seed(seed + index)
                square, error = eps_mean_squares(eps, pipe.scheduler, x_0, timesteps, generator, batch_size, False)
                check_finite(square, "images' ‖ε_θ‖²")
                squares.append(square.cpu().numpy())
                errors.append(error.cpu().numpy())
                progress.advance(1)
            store.write(shard, {"mean_square": np.concatenate(squares), "eps_mse": np.concatenate(errors)})


@dataclass(frozen=True)
class GammaSettings:
    """How `estimate_analytic_variance` estimates Γ_t; checked when made. Each field is a keyword of
    `estimate_analytic_variance` and a flag of `examples/analytic_variance.py`, with the default and help stated
    here."""

    num_images: int = setting(1000, "training images Γ is averaged over (at least 2: a standard error needs two)")
    num_inference_steps: tuple[int, ...] | None = setting(
        None,
        "estimate Γ only at the timesteps of these step counts' chains; none means every timestep, which serves "
        "every step count",
    )
    seed: int = setting(0, "image i's x_t draws its noise from a generator seeded seed + i")
    batch_size: int = setting(256, "(image, timestep) pairs per forward pass; the noise is drawn in these chunks")
    precision: str = setting("fp32", "the network's numerics", choices=PRECISIONS)
    shard_size: int | None = setting(None, "images per shard, fixed by the run that makes the store; none means 64")

    def __post_init__(self) -> None:
        if self.num_inference_steps is not None:
            object.__setattr__(self, "num_inference_steps", tuple(self.num_inference_steps))
        try:
            check_int("num_images", self.num_images)
            if self.num_images < 2:
                raise InputError(f"num_images must be from 2 (a standard error needs two), got {self.num_images}")
            check_int("batch_size", self.batch_size)
            check_int("seed", self.seed, low=0)
            check_choice("precision", self.precision, PRECISIONS)
            for steps in self.num_inference_steps or ():
                check_int("num_inference_steps", steps)
            if self.shard_size is not None:
                check_int("shard_size", self.shard_size)
        except InputError as e:
            raise EvaluationError(str(e)) from None


def estimate_analytic_variance(
    model: DDPMPaperPipeline | str | os.PathLike,
    *,
    output_dir: str | os.PathLike,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    convert_images: bool = False,
    revision: str | None = None,
    device: str | torch.device | None = None,
    settings: GammaSettings | None = None,
    **kwargs: Any,
) -> GammaEstimate | None:
    """Estimate Γ_t of `model` on the first `num_images` images of a dataset (its training data, as Bao et al.) and
    save into `output_dir` the same pipeline with `DDPMPaperScheduler(variance_type="analytic")`, its model card
    and `gamma.json` (Γ, its standard error and the network's ε error per timestep).

    Γ is measured at every timestep (default), which serves every step count, or at those of the chains of
    `num_inference_steps`. The keywords after `device` are `GammaSettings`' (`num_images`, `num_inference_steps`,
    `seed`, `batch_size`, `precision`, `shard_size`), or pass `settings` whole. Returns the estimate on the main
    process, None on the others.
    """
    config = settings if settings is not None else GammaSettings(**kwargs)
    num_images, seed, batch_size, precision = config.num_images, config.seed, config.batch_size, config.precision
    procs = Processes(device)
    output_dir = Path(output_dir)
    check_output_dir(model, revision, output_dir)
    pipe, name, model_sha, commit = load_model(model, revision, procs.device)
    if not isinstance(pipe.scheduler, DDPMPaperScheduler):
        raise EvaluationError(f"the analytic variance is DDPMPaperScheduler's; {name} has a {type(pipe.scheduler)}")
    images = bound_images(procs, pipe, dataset, data_dir, split, image_column, convert_images)
    if not 2 <= num_images <= len(images):
        raise EvaluationError(
            f"num_images {num_images} is out of range: from 2 (a standard error needs two) to the {len(images)} "
            f"images of the {split} split"
        )
    try:
        timesteps = gamma_timesteps(pipe.scheduler, config.num_inference_steps)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    identity = {
        "kind": "gamma",
        "model_weights_sha256": model_sha,
        "scheduler": sampler_identity(pipe.scheduler),
        "seed": seed,
        "dataset": dataset or data_dir,
        "split": split,
        "timesteps": timesteps,
        "batch_size": batch_size,  # the noise is drawn in chunks of this many (image, t) pairs
        "precision": precision,
    }
    store = ShardStore(output_dir / SHARD_DIR, identity, config.shard_size, default_shard_size=64)

    def work(mine: Plan, progress: JobProgress) -> None:
        _measure_shards(
            pipe, store, mine["gamma"], images, torch.tensor(timesteps), seed, batch_size, precision, progress
        )

    plan = run_sharded(procs, [store], lambda: {"gamma": store.missing(num_images)}, work, output_dir, desc="Γ_t")
    if plan is None:  # not the main process
        return None

    source = {
        "model": name,
        "model_revision": commit,
        "model_weights_sha256": model_sha,
        "dataset": identity["dataset"],
        "split": split,
        "seed": seed,
    }
    estimate = GammaEstimate.from_samples(
        timesteps,
        np.concatenate(list(store.blocks("mean_square", num_images))),
        np.concatenate(list(store.blocks("eps_mse", num_images))),
        {k: v for k, v in source.items() if v is not None},
    )
    pipe.scheduler = with_analytic_variance(pipe.scheduler, estimate)
    save_analytic_pipeline(pipe, estimate, output_dir, source_card=_source_card(model, revision))
    return estimate


def check_output_dir(model: DDPMPaperPipeline | str | os.PathLike, revision: str | None, output_dir: Path) -> None:
    """The estimate writes a new pipeline folder: never into the source pipeline's own folder (it would convert the
    source in place), nor over a pipeline that an earlier estimate did not write (one without its gamma/ shards)."""
    if not isinstance(model, DDPMPaperPipeline) and os.path.isdir(model):
        if output_dir.resolve() == Path(model).resolve():
            raise EvaluationError(
                f"--output_dir {output_dir} is the source pipeline's folder: the estimate writes a new pipeline folder "
                "(the same weights with the analytic variance); choose another --output_dir"
            )
    if (output_dir / "model_index.json").is_file() and not (output_dir / SHARD_DIR).is_dir():
        raise EvaluationError(
            f"{output_dir} holds a pipeline that no Γ estimate wrote: choose another --output_dir, or move it away"
        )


def _source_card(model: DDPMPaperPipeline | str | os.PathLike, revision: str | None) -> Path | None:
    """The model card of the source pipeline's folder, if it has one (its training details carry over)."""
    if isinstance(model, DDPMPaperPipeline):
        return None
    return Path(resolve_model(str(model), revision)[0]) / "README.md"


def save_analytic_pipeline(
    pipe: DDPMPaperPipeline, estimate: GammaEstimate, output_dir: Path, source_card: Path | None = None
) -> None:
    """Save the pipeline, its card (the source's training details, and how Γ was estimated) and gamma.json into
    `output_dir`, each part replacing the previous one whole."""
    tmp = output_dir / ".tmp-pipeline"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    # No samples.png: the source's grid was drawn with another variance (examples/analytic_variance.py draws one).
    card = rerender_card(source_card or tmp / "README.md", str(output_dir), variance=describe(estimate), samples=None)
    card.save(tmp / "README.md")
    for entry in sorted(tmp.iterdir()):
        publish(entry, output_dir / entry.name)
    tmp.rmdir()
    (output_dir / "samples.png").unlink(missing_ok=True)  # an earlier estimate's grid
    table = {
        "timesteps": estimate.timesteps,
        "gamma": estimate.gamma.tolist(),
        "stderr": estimate.stderr.tolist(),
        "eps_mse": estimate.eps_mse.tolist(),
        "num_images": estimate.num_images,
        **estimate.source,
    }
    write_file(output_dir / ESTIMATE_FILE, json.dumps(table, indent=1).encode())
