"""The training loop (Algorithm 1 of the paper) with Accelerate: read it top to bottom."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..card import render_model_card
from ..data import ImageDataset, load_image_dataset, scale_to_model
from ..grid import image_grid
from ..hub import pipeline_files, upload_folder
from ..pipeline import DDPMPaperPipeline
from ..scheduler import DDPMPaperScheduler
from ..unet import DDPMUNet2DModel
from .batches import StepBatchSampler, collate_valid, micro_slice, step_randomness
from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import EMA
from .losses import diffusion_loss, make_optimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops before writing anything from the bad state."""


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """The reference's schedule: linear warm-up from 0 over `warmup_steps` updates, then constant."""
    return base_lr if warmup_steps <= 0 else base_lr * min(step / warmup_steps, 1.0)


def train(cfg: TrainConfig) -> Path:
    """Train a DDPM as configured; return the output folder, which ends up holding a `DDPMPaperPipeline`."""
    if cfg.dataset_name is None and cfg.train_data_dir is None:
        raise ValueError("no training data: pass --dataset_name or --train_data_dir")
    output_dir = Path(cfg.output_dir)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    procs, accum = accelerator.num_processes, cfg.gradient_accumulation_steps
    if cfg.train_batch_size % (procs * accum):
        raise ValueError(
            f"train_batch_size={cfg.train_batch_size} is not divisible by {procs} processes × {accum} accumulation"
        )
    micro_batch = cfg.train_batch_size // (procs * accum)
    say = accelerator.print
    say(f"global batch {cfg.train_batch_size} = {procs} processes × {accum} accumulation × {micro_batch} per device")
    if accelerator.device.type == "cpu" and procs == 1 and torch.get_num_threads() < (os.cpu_count() or 1):
        # `accelerate launch` without --cpu/--num_processes sets OMP_NUM_THREADS=1 for a lone CPU process.
        say(
            f"note: torch uses {torch.get_num_threads()} of {os.cpu_count()} CPU threads; for more, launch with "
            "`accelerate launch --cpu --num_processes 1` or `--num_cpu_threads_per_process N`"
        )

    # Same initial weights on every process; dropout then draws from per-process streams.
    set_seed(cfg.seed)
    unet = DDPMUNet2DModel.from_paper_config(cfg.model, dropout=cfg.dropout, **cfg.unet_config)
    scheduler = DDPMPaperScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        variance_type=cfg.variance_type,
    )
    set_seed(cfg.seed, device_specific=True)
    channels, resolution = unet.config.in_channels, cfg.resolution
    ds, column = load_image_dataset(cfg.dataset_name, cfg.train_data_dir, cfg.dataset_split, cfg.image_column)
    data = ImageDataset(ds, column, resolution, channels, skip_bad_images=cfg.skip_bad_images)
    say(f"{len(data)} training images from {cfg.dataset_name or cfg.train_data_dir}, {channels}×{resolution}²")

    # channels_last: faster steps on CPUs (oneDNN), and on an H100 a bf16 step ran at 0.92× the fp32 peer's speed in
    # channels_last but 0.81× in NCHW (docs/benchmarks.md). Sampling picks its own format (sampling_memory_format).
    unet.to(accelerator.device, memory_format=torch.channels_last)
    if cfg.gradient_checkpointing:  # diffusers' per-block checkpoints; they replay dropout's RNG state exactly
        unet.enable_gradient_checkpointing()
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    optimizer = make_optimizer(unet.parameters(), cfg.learning_rate, betas, cfg.adam_epsilon, accelerator.device)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    raw_unet = accelerator.unwrap_model(unet)
    ema = EMA(raw_unet, cfg.ema_decay)
    accelerator.register_for_checkpointing(ema)

    checkpoint_dir, step = output_dir / "checkpoints", 0
    if cfg.resume_from_checkpoint:
        found = resolve_checkpoint(checkpoint_dir, cfg.resume_from_checkpoint)
        if found is None:
            say(f"no checkpoint in {checkpoint_dir} yet: starting from scratch")
        else:
            step = load_checkpoint(accelerator, found)
            say(f"resumed from {found} at step {step}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=list))
    if cfg.report_to:
        accelerator.init_trackers("ddpm", config={k: str(v) for k, v in cfg.to_dict().items()})

    sampler = StepBatchSampler(
        len(data), cfg.train_batch_size, accum, accelerator.process_index, procs, cfg.seed, step, cfg.max_train_steps
    )
    loader = iter(
        torch.utils.data.DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=collate_valid,
            num_workers=cfg.dataloader_num_workers,
            # Its own generator: the loader must not draw from the global RNG that dropout uses (exact resume).
            generator=torch.Generator().manual_seed(cfg.seed),
        )
    )
    bar = tqdm(total=cfg.max_train_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    skipped, start_time, start_step, last_saved = 0, time.perf_counter(), step, None
    first_bad = torch.full((), -1, dtype=torch.long, device=accelerator.device)
    unet.train()
    while step < cfg.max_train_steps:
        lr = warmup_lr(step, cfg.learning_rate, cfg.lr_warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t_all, noise_all, flip_all = step_randomness(
            step, cfg.seed, cfg.train_batch_size, (channels, resolution, resolution), len(scheduler), accelerator.device
        )
        step_loss = torch.zeros((), device=accelerator.device)
        for m in range(accum):
            images, keep = next(loader)
            part = micro_slice(m, accelerator.process_index, procs, micro_batch)
            t, noise, flip = (v[part][keep.to(v.device)] for v in (t_all, noise_all, flip_all))
            skipped += micro_batch - len(keep)
            # Each process divides by its nominal share, so DDP's mean over processes is the global-batch mean.
            with accelerator.no_sync(unet) if m < accum - 1 else contextlib.nullcontext():
                if images is None:  # every image of this micro-batch was unreadable and skipped
                    loss = sum(p.sum() * 0.0 for p in unet.parameters())
                else:
                    x_0 = scale_to_model(images.to(accelerator.device, non_blocking=True))
                    if cfg.random_flip:
                        x_0 = torch.where(flip.view(-1, 1, 1, 1), x_0.flip(-1), x_0)
                    loss = diffusion_loss(unet, scheduler, cfg.loss, x_0, t, noise).sum() / (micro_batch * accum)
                accelerator.backward(loss)
            step_loss += loss.detach()
        # The first non-finite step is recorded on the device and read only where it matters (below), so that
        # the GPU is not synced at every step.
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(step_loss), step, first_bad)
        grad_norm = accelerator.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(raw_unet)
        step += 1
        bar.update(1)

        logging = step % cfg.logging_steps == 0 or step == cfg.max_train_steps
        saving = step % cfg.checkpointing_steps == 0 or step == cfg.max_train_steps
        writes = any(n and step % n == 0 for n in (cfg.save_images_steps, cfg.save_pipeline_steps))
        if logging or saving or writes:
            bad = int(accelerator.reduce(first_bad, reduction="max"))  # every process checks at the same steps
            if bad >= 0:
                raise TrainingDiverged(
                    f"non-finite loss at step {bad}; nothing was saved after it. The last good checkpoint is "
                    f"{last_saved or resolve_checkpoint(checkpoint_dir, 'latest') or 'none (no checkpoint yet)'}"
                )

        if logging:
            loss_value = accelerator.reduce(step_loss, reduction="mean").item()
            rate = (step - start_step) * cfg.train_batch_size / (time.perf_counter() - start_time)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
            logs = {"loss": loss_value, "lr": lr, "grad_norm": float(grad_norm), "ema_decay": ema.decay}
            accelerator.log(logs, step=step)
        if saving:
            last_saved = save_checkpoint(accelerator, checkpoint_dir, step, cfg.checkpoints_total_limit)
        periodic_grid = cfg.save_images_steps and step % cfg.save_images_steps == 0 and step < cfg.max_train_steps
        if periodic_grid and accelerator.is_main_process:  # the last step's grid is the final samples.png
            save_sample_grid(ema, raw_unet, scheduler, cfg, output_dir / "samples" / f"step-{step:07d}.png")
        if cfg.save_pipeline_steps and step % cfg.save_pipeline_steps == 0 and accelerator.is_main_process:
            save_pipeline(ema, raw_unet, scheduler, cfg, output_dir)
    bar.close()

    if accelerator.is_main_process:
        pipe = save_pipeline(ema, raw_unet, scheduler, cfg, output_dir)
        save_sample_grid(ema, raw_unet, scheduler, cfg, output_dir / "samples.png", pipe=pipe)
        if cfg.push_to_hub:
            push_pipeline(output_dir, cfg.hub_model_id, private=cfg.hub_private)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    elapsed = time.perf_counter() - start_time
    rate = (step - start_step) * cfg.train_batch_size / max(elapsed, 1e-9)
    cuda = accelerator.device.type == "cuda"
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated(accelerator.device) / 2**30:.1f} GiB" if cuda else ""
    say(
        f"done: {step} steps ({step - start_step} this run) in {elapsed:.0f} s, {rate:.0f} images/s{peak}, "
        f"{skipped} unreadable images skipped; EMA pipeline in {output_dir}"
    )
    return output_dir


def ema_pipeline(ema: EMA, unet: torch.nn.Module, scheduler: DDPMPaperScheduler) -> DDPMPaperPipeline:
    """A pipeline holding a copy of `unet` (unwrapped) with the EMA weights (the paper samples from those)."""
    model = DDPMUNet2DModel.from_config(unet.config).to(next(unet.parameters()).device)
    ema.copy_to(model)
    pipe = DDPMPaperPipeline(unet=model.eval(), scheduler=DDPMPaperScheduler.from_config(scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_sample_grid(
    ema: EMA,
    unet: torch.nn.Module,
    scheduler: DDPMPaperScheduler,
    cfg: TrainConfig,
    path: Path,
    pipe: DDPMPaperPipeline | None = None,
) -> Path:
    """A grid of `num_grid_images` EMA samples with fixed per-image seeds, so grids compare across steps."""
    pipe = pipe or ema_pipeline(ema, unet, scheduler)
    n = cfg.num_grid_images
    generators = [torch.Generator().manual_seed(cfg.seed + i) for i in range(n)]
    images = pipe(batch_size=n, generator=generators, num_inference_steps=cfg.num_inference_steps).images
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, pad=1, scale=max(1, 32 // images[0].width)).save(path)
    return path


def save_pipeline(
    ema: EMA, unet: torch.nn.Module, scheduler: DDPMPaperScheduler, cfg: TrainConfig, output_dir: Path
) -> DDPMPaperPipeline:
    """Save the EMA pipeline and its model card into `output_dir`, replacing the previous one only when complete."""
    pipe = ema_pipeline(ema, unet, scheduler)
    tmp = output_dir / ".tmp-pipeline"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    repo_id = cfg.hub_model_id or output_dir.resolve().name
    details = "| setting | value |\n|---|---|\n" + "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.to_dict().items())
    render_model_card(repo_id, dataset=cfg.dataset_name, training_details=details).save(tmp / "README.md")
    for entry in sorted(tmp.iterdir()):
        target = output_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()
    return pipe


def push_pipeline(output_dir: Path, repo_id: str, private: bool = False) -> None:
    """Upload the final pipeline, its card and sample grid (never checkpoints); `HubUploadError` says why a push
    failed."""
    files = pipeline_files(output_dir, extra=("README.md", "samples.png"))
    info = upload_folder(output_dir, repo_id, private=private, files=files, commit_message="Train DDPM")
    print(f"pushed {output_dir} to {repo_id} ({info.commit_url})")
