"""What a run leaves behind: the EMA pipeline with its model card, sample grids, and the push to the Hub."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image

from ..card import render_model_card
from ..grid import image_grid
from ..hub import pipeline_files, upload_folder
from ..pipeline import DDPMPaperPipeline
from ..publish import publish
from ..reporting import get_logger, progress_bar
from ..scheduler import DDPMPaperScheduler
from ..unet import DDPMUNet2DModel
from .config import TrainConfig
from .ema import EMA

logger = get_logger(__name__)


def ema_pipeline(ema: EMA | None, unet: torch.nn.Module, scheduler: DDPMPaperScheduler) -> DDPMPaperPipeline:
    """A pipeline holding a copy of `unet` (unwrapped) with the EMA weights (the paper samples from those), or with
    the trained weights themselves when there is no EMA (`--use_ema false`)."""
    model = DDPMUNet2DModel.from_config(unet.config).to(next(unet.parameters()).device)
    if ema is not None:
        ema.copy_to(model)
    else:
        model.load_state_dict(unet.state_dict())
    pipe = DDPMPaperPipeline(unet=model.eval(), scheduler=DDPMPaperScheduler.from_config(scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_sample_grid(
    pipe: DDPMPaperPipeline, cfg: TrainConfig, path: Path, stop: Callable[[], Any] | None = None
) -> list[Image.Image] | None:
    """A grid of `num_grid_images` samples with fixed per-image seeds, so grids compare across steps; returns the
    samples, or None (and no grid) if `stop()` became true while they were drawn."""
    n = cfg.num_grid_images
    generators = [torch.Generator().manual_seed(cfg.seed + i) for i in range(n)]
    # Minutes at the paper's 1000 steps: a bar of its own (the pipeline's is off), gone once the grid is written.
    with progress_bar(total=cfg.num_inference_steps, desc=f"sampling {n} images for {path.name}", leave=False) as bar:

        def advance(pipe: DDPMPaperPipeline, i: int, t: int, tensors: dict) -> dict:
            bar.update(1)
            if stop is not None and stop():
                pipe._interrupt = True  # ends the chain after this step (diffusers' convention)
            return {}

        steps = cfg.num_inference_steps
        out = pipe(batch_size=n, generator=generators, num_inference_steps=steps, callback_on_step_end=advance)
    if stop is not None and stop():
        return None
    images = out.images
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, pad=1, scale=max(1, 32 // images[0].width)).save(path)
    return images


def log_grid(accelerator: Accelerator, images: list[Image.Image], step: int) -> None:
    """Send sample images to the run's trackers (TensorBoard, W&B), as diffusers' training script does."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            batch = np.stack([np.asarray(image.convert("RGB")) for image in images])
            tracker.writer.add_images("samples", batch, step, dataformats="NHWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"samples": [wandb.Image(image) for image in images]}, step=step)


SAMPLES_FILE = "samples.png"  # the final grid, written beside the pipeline and pushed with it
# How a run was driven, not what was trained: true of the run, not of the weights a card describes.
RUN_CONTROL = {
    "resume_from_checkpoint", "output_dir", "logging_dir", "report_to", "logging_steps", "push_to_hub", "hub_model_id",
    "hub_private_repo", "checkpointing_steps", "checkpoints_total_limit", "save_images_steps", "save_pipeline_steps",
    "dataloader_num_workers", "cache_dir", "tracker_project_name", "overwrite_output_dir", "resume_on_other_data",
}  # fmt: skip
# The network is described by the weights' own config, not by the preset it started from or the overrides.
NETWORK_SETTINGS = {"model", "unet_config", "model_config_name_or_path"}
NETWORK_KEYS = ("sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
                "down_block_types", "up_block_types", "dropout")  # fmt: skip


def training_table(cfg: TrainConfig, pipe: DDPMPaperPipeline) -> str:
    """The card's training table: the network as trained (its config and size), then every setting that shaped the
    weights."""
    config = pipe.unet.config
    params = sum(p.numel() for p in pipe.unet.parameters())
    network = ", ".join(f"{k}={config[k]}" for k in NETWORK_KEYS if k in config)
    rows = [("network", f"{type(pipe.unet).__name__}, {params:,} parameters: {network}")]
    rows += [(k, v) for k, v in cfg.to_dict().items() if k not in RUN_CONTROL | NETWORK_SETTINGS]
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| `{k}` | `{v}` |" for k, v in rows)


def save_pipeline(pipe: DDPMPaperPipeline, cfg: TrainConfig, output_dir: Path) -> None:
    """Save `pipe` and its model card into `output_dir`, replacing the previous ones only when complete."""
    tmp = output_dir / ".tmp-pipeline"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    repo_id = cfg.hub_model_id or str(output_dir)  # what the card's snippets load: the repo, or this folder
    card = render_model_card(
        repo_id, dataset=cfg.dataset_name, training_details=training_table(cfg, pipe), samples=SAMPLES_FILE
    )
    card.save(tmp / "README.md")
    for entry in sorted(tmp.iterdir()):  # each part whole: the folder also holds the run's checkpoints and grids
        publish(entry, output_dir / entry.name)
    tmp.rmdir()


def push_pipeline(output_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> None:
    """Upload the final pipeline, its card and sample grid (never checkpoints); `HubUploadError` says why a push
    failed."""
    files = pipeline_files(output_dir, extra=("README.md", SAMPLES_FILE))
    info = upload_folder(output_dir, repo_id, private=private, token=token, files=files, commit_message="Train DDPM")
    logger.info(f"pushed {output_dir} to {repo_id} ({info.commit_url})")
