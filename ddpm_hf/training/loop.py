"""The training loop (Algorithm 1 of the paper) with Accelerate.

`train(cfg)` builds a `Trainer` and runs it. Set-up reads top to bottom in `Trainer.__init__`. As improved-diffusion's
`TrainLoop`, `run_loop` repeats `run_step` (`forward_backward` over the micro-batches, the optimizer and EMA updates)
and `after_step` (the NaN check, logging, checkpoints, sample grids, exports), and stops early on a signal
(`interrupt`); each method does one of those jobs. `TrainerCallback`s observe the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration, set_seed

from ..data import ImageDataset, load_image_dataset
from ..errors import DDPMError, InputError, OutputExistsError
from ..fastpath import eps_model, memory_format
from ..identity import data_fingerprint
from ..pixels import scale_to_model
from ..reporting import get_logger, progress_bar
from .batches import micro_batch_size, micro_slice, step_loader, step_randomness
from .callbacks import TrainerCallback
from .checkpoint import CONFIG_FILE, DATA_KEY, holds_run, resolve_checkpoint, resume, save_checkpoint
from .config import TrainConfig, epochs_as_steps
from .ema import EMA, warmup_decay
from .export import SAMPLES_FILE, ema_pipeline, log_grid, push_pipeline, save_pipeline, save_sample_grid
from .interrupt import StopOnSignal, TrainingInterrupted, resume_command
from .losses import diffusion_loss, make_loss
from .model import build_scheduler, build_unet
from .optim import learning_rate, make_optimizer

logger = get_logger(__name__)


class TrainingDiverged(DDPMError, RuntimeError):
    """The loss became NaN or infinite; the run stops before writing anything from the bad state."""


class RunExistsError(OutputExistsError):
    """The output folder holds a run that this one was not asked to continue or move aside."""


class Trainer:
    """One training run as configured by a `TrainConfig`; `run_loop` trains and returns the output folder."""

    def __init__(self, cfg: TrainConfig, callbacks: Iterable[TrainerCallback] = ()) -> None:
        if cfg.dataset_name is None and cfg.train_data_dir is None:
            raise InputError("no training data: pass --dataset_name or --train_data_dir")
        self.cfg, self.callbacks = cfg, list(callbacks)
        self.output_dir, self.checkpoint_dir = Path(cfg.output_dir), Path(cfg.output_dir) / "checkpoints"
        # Accelerate keeps one mixed-precision state per process and would reuse a previous run's (a notebook, the
        # tests); a new run starts from its own settings. The process group and device (PartialState) are kept.
        AcceleratorState._reset_state()
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,  # None: whatever `accelerate config` / `launch` chose
            log_with=cfg.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / cfg.logging_dir)
            ),
        )
        self.claim_output_dir()
        self.check_precision()
        self.micro_batch = self.split_batch()
        self.build_model()
        self.data = self.load_data()
        self.plan_steps()
        self.build_optimization()
        self.step = self.resume()
        self.record_config()
        self.loader = self.make_loader()

    # --- set-up ----------------------------------------------------------------------------------------------

    def claim_output_dir(self) -> None:
        """A folder that holds a run is continued (--resume_from_checkpoint) or, with --overwrite_output_dir, moved
        aside whole; otherwise refused, so that a repeated command never replaces a finished run's checkpoints and
        pipeline, nor leaves two runs' checkpoints side by side for `latest` to mix."""
        cfg, acc = self.cfg, self.accelerator
        held = holds_run(self.output_dir)
        if not held or cfg.resume_from_checkpoint:
            return
        if not cfg.overwrite_output_dir:
            raise RunExistsError(
                f"{self.output_dir} holds a run ({held}): continue it with --resume_from_checkpoint latest, train "
                "into another --output_dir, or pass --overwrite_output_dir to move that run aside and start anew"
            )
        aside = self.output_dir.with_name(f"{self.output_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        if acc.is_main_process:
            os.replace(self.output_dir, aside)
            logger.info(f"moved the run that was in {self.output_dir} to {aside} (--overwrite_output_dir)")
        acc.wait_for_everyone()

    def check_precision(self) -> None:
        """Refuse a mixed precision Accelerate would silently not apply (fp16 autocast on a CPU)."""
        acc = self.accelerator
        if acc.mixed_precision != "no" and not acc.native_amp and acc.device.type == "cpu":
            raise InputError(
                f"mixed precision {acc.mixed_precision!r} has no effect on a CPU here (Accelerate would train in "
                "fp32): use --mixed_precision bf16 or no"
            )

    def split_batch(self) -> int:
        """The per-device micro-batch: the global batch over processes × accumulation steps."""
        procs, accum = self.accelerator.num_processes, self.cfg.gradient_accumulation_steps
        micro_batch = micro_batch_size(self.cfg.train_batch_size, procs, accum)
        logger.info(
            f"global batch {self.cfg.train_batch_size} = {procs} processes × {accum} accumulation × "
            f"{micro_batch} per device"
        )
        if self.accelerator.device.type == "cpu" and procs == 1 and torch.get_num_threads() < (os.cpu_count() or 1):
            # `accelerate launch` without --cpu/--num_processes sets OMP_NUM_THREADS=1 for a lone CPU process.
            logger.warning(
                f"note: torch uses {torch.get_num_threads()} of {os.cpu_count()} CPU threads; for more, launch with "
                "`accelerate launch --cpu --num_processes 1` or `--num_cpu_threads_per_process N`"
            )
        return micro_batch

    def build_model(self) -> None:
        """The paper's network and diffusion: the same initial weights on every process, then per-process RNG
        streams for dropout."""
        cfg = self.cfg
        set_seed(cfg.seed)
        self.unet, self.scheduler = build_unet(cfg), build_scheduler(cfg)
        set_seed(cfg.seed, device_specific=True)
        device = self.accelerator.device
        # The training layout must be set before Accelerate wraps the network for DDP (fastpath.eps_model).
        self.unet.to(device, memory_format=memory_format(device, training=True))
        if cfg.gradient_checkpointing:  # diffusers' per-block checkpoints; they replay dropout's RNG state exactly
            self.unet.enable_gradient_checkpointing()
        self.loss = make_loss(cfg.loss, self.scheduler)

    def load_data(self) -> ImageDataset:
        cfg, channels = self.cfg, self.unet.config.in_channels
        ds, column = load_image_dataset(
            cfg.dataset_name,
            cfg.train_data_dir,
            cfg.dataset_split,
            cfg.image_column,
            cache_dir=cfg.cache_dir,
            config_name=cfg.dataset_config_name,
        )
        data = ImageDataset(ds, column, cfg.resolution, channels, skip_bad_images=cfg.skip_bad_images)
        # What a checkpoint was trained on, so that a resume on other images is refused (checkpoint.check_data).
        source = cfg.dataset_name or cfg.train_data_dir
        self.data_identity = {"dataset": source, "split": cfg.dataset_split, **data_fingerprint(ds, column)}
        logger.info(
            f"{len(data)} training images from {cfg.dataset_name or cfg.train_data_dir}, {channels}×{cfg.resolution}²"
        )
        return data

    def plan_steps(self) -> None:
        """Epoch-based flags (diffusers' --num_epochs, --save_images_epochs, --save_model_epochs) as step counts; the
        effective values replace the configured ones, so train_config.json and the card say what ran."""
        steps = epochs_as_steps(self.cfg, len(self.data))
        if steps:
            logger.info(f"epochs of {len(self.data)} images: " + ", ".join(f"{k} = {v}" for k, v in steps.items()))
        self.cfg = dataclasses.replace(self.cfg, mixed_precision=self.accelerator.mixed_precision, **steps)

    def build_optimization(self) -> None:
        """Adam on the prepared (possibly DDP-wrapped) network, and the EMA of its weights."""
        cfg = self.cfg
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        optimizer = make_optimizer(
            self.unet.parameters(),
            cfg.learning_rate,
            betas,
            cfg.adam_epsilon,
            self.accelerator.device,
            weight_decay=cfg.adam_weight_decay,
        )
        self.network, self.optimizer = self.accelerator.prepare(self.unet, optimizer)
        self.ema = EMA(self.unet, cfg.ema_decay) if cfg.use_ema else None
        if self.ema is not None:
            self.accelerator.register_for_checkpointing(self.ema)
            warmup = f"diffusers' warm-up (inv_gamma {cfg.ema_inv_gamma}, power {cfg.ema_power}) up to"
            logger.info(f"EMA of the weights: {warmup if cfg.ema_warmup else 'constant decay'} {cfg.ema_decay}")

    def resume(self) -> int:
        """The step to start from: 0, or that of the checkpoint `--resume_from_checkpoint` names (see `checkpoint`)."""
        if not self.cfg.resume_from_checkpoint:
            return 0
        return resume(self.accelerator, self.checkpoint_dir, self.cfg.resume_from_checkpoint, self.record())

    def record(self) -> dict:
        """What train_config.json and each checkpoint record: the settings and the data's fingerprint."""
        return {**self.cfg.to_dict(), DATA_KEY: self.data_identity}

    def record_config(self) -> None:
        cfg = self.cfg
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / CONFIG_FILE).write_text(json.dumps(self.record(), indent=2, default=list))
        if cfg.report_to:
            self.accelerator.init_trackers("ddpm", config={k: str(v) for k, v in cfg.to_dict().items()})

    def make_loader(self) -> Iterator:
        """This process's micro-batches of images for the remaining steps (see `batches.step_loader`)."""
        cfg, acc = self.cfg, self.accelerator
        return step_loader(self.data, cfg, acc.process_index, acc.num_processes, self.step, cfg.dataloader_num_workers)

    # --- the loop --------------------------------------------------------------------------------------------

    def run_loop(self) -> Path:
        """Train from `self.step` to `max_train_steps`, then save (and push) the EMA pipeline."""
        cfg = self.cfg
        self.bar = progress_bar(total=cfg.max_train_steps, initial=self.step, desc="train")
        self.skipped, self.start_time, self.start_step, self.last_saved = 0, time.perf_counter(), self.step, None
        self.bad_images: dict[str, str] = {}  # file (or row) -> why it is unreadable
        # The first non-finite step, kept on the device and read only when something is written (no sync per step).
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.accelerator.device)
        self.network.train()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        stop = StopOnSignal(self.accelerator)
        with stop, eps_model(self.network, training=True, device=self.accelerator.device) as self.eps_model:
            while self.step < cfg.max_train_steps:
                self.run_step()
                self.after_step()
                if (signum := stop.agreed()) is not None:
                    self.interrupt(signum)
        self.bar.close()
        self.finish()
        return self.output_dir

    def run_step(self) -> None:
        """One optimizer step on the global batch: Algorithm 1's gradient step, then the EMA update."""
        cfg = self.cfg
        self.lr = learning_rate(
            cfg.lr_scheduler, self.step, cfg.learning_rate, cfg.lr_warmup_steps, cfg.max_train_steps
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.step_loss = self.forward_backward()
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(self.step_loss), self.step, self.first_bad)
        self.grad_norm = self.accelerator.clip_grad_norm_(self.network.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            decay = cfg.ema_decay  # the paper's constant, or diffusers' warm-up, a function of the step alone
            if cfg.ema_warmup:
                decay = warmup_decay(self.step + 1, cfg.ema_decay, cfg.ema_inv_gamma, cfg.ema_power, cfg.ema_min_decay)
            self.ema.update(self.unet, decay)
        self.step += 1
        self.bar.update(1)

    def forward_backward(self) -> torch.Tensor:
        """Accumulate the gradient of this step's loss over its micro-batches; return the loss (this process's)."""
        cfg, acc, accum = self.cfg, self.accelerator, self.cfg.gradient_accumulation_steps
        channels = self.unet.config.in_channels
        sample_shape = (channels, cfg.resolution, cfg.resolution)
        t_all, noise_all, flip_all = step_randomness(
            self.step, cfg.seed, cfg.train_batch_size, sample_shape, len(self.scheduler), acc.device
        )
        step_loss = torch.zeros((), device=acc.device)
        for m in range(accum):
            images, keep, bad = next(self.loader)
            for where, reason in bad:
                if where not in self.bad_images:
                    logger.warning(f"skipping an unreadable image: {reason}")
                    self.bad_images[where] = reason
            part = micro_slice(m, acc.process_index, acc.num_processes, self.micro_batch)
            t, noise, flip = (v[part][keep.to(v.device)] for v in (t_all, noise_all, flip_all))
            self.skipped += self.micro_batch - len(keep)
            # Each process divides by its nominal share, so DDP's mean over processes is the global-batch mean.
            with acc.no_sync(self.network) if m < accum - 1 else contextlib.nullcontext():
                if images is None:  # every image of this micro-batch was unreadable and skipped
                    loss = sum(p.sum() * 0.0 for p in self.network.parameters())
                else:
                    x_0 = scale_to_model(images.to(acc.device, non_blocking=True))
                    if cfg.random_flip:
                        x_0 = torch.where(flip.view(-1, 1, 1, 1), x_0.flip(-1), x_0)
                    per_example = diffusion_loss(self.eps_model, self.scheduler, self.loss, x_0, t, noise)
                    loss = per_example.sum() / (self.micro_batch * accum)
                acc.backward(loss)
            step_loss += loss.detach()
        return step_loss

    def after_step(self) -> None:
        """What follows a step at its cadence: the NaN check, logging, a checkpoint, a grid, an export."""
        cfg, step, last = self.cfg, self.step, self.step == self.cfg.max_train_steps
        logging = step % cfg.logging_steps == 0 or last
        saving = step % cfg.checkpointing_steps == 0 or last
        grid = bool(cfg.save_images_steps) and step % cfg.save_images_steps == 0 and not last  # last: samples.png
        export = bool(cfg.save_pipeline_steps) and step % cfg.save_pipeline_steps == 0
        if logging or saving or grid or export:
            self.check_finite()
        if logging:
            self.log_step()
        if saving:
            self.save_checkpoint()
        if (grid or export) and self.accelerator.is_main_process:
            pipe = ema_pipeline(self.ema, self.unet, self.scheduler)
            if export:  # before sampling, which may move the copy's weights to the sampling layout
                save_pipeline(pipe, cfg, self.output_dir)
            if grid:
                images = save_sample_grid(pipe, cfg, self.output_dir / "samples" / f"step-{step:07d}.png")
                log_grid(self.accelerator, images, step)
        for callback in self.callbacks:
            callback.on_step_end(self)

    def check_finite(self) -> None:
        """Stop before anything is written from a non-finite state; every process checks at the same steps."""
        bad = int(self.accelerator.reduce(self.first_bad, reduction="max"))
        if bad >= 0:
            last_good = self.last_saved or resolve_checkpoint(self.checkpoint_dir, "latest")
            raise TrainingDiverged(
                f"non-finite loss at step {bad}; nothing was saved after it. The last good checkpoint is "
                f"{last_good or 'none (no checkpoint yet)'}"
            )

    def log_step(self) -> None:
        loss = self.accelerator.reduce(self.step_loss, reduction="mean").item()
        rate = (self.step - self.start_step) * self.cfg.train_batch_size / (time.perf_counter() - self.start_time)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr:.2e}", img_s=f"{rate:.0f}")
        logs = {"loss": loss, "lr": self.lr, "grad_norm": float(self.grad_norm)}
        if self.ema is not None:
            logs["ema_decay"] = self.ema.decay
        self.accelerator.log(logs, step=self.step)

    def save_checkpoint(self) -> None:
        self.last_saved = save_checkpoint(
            self.accelerator, self.checkpoint_dir, self.step, self.cfg.checkpoints_total_limit, self.record()
        )
        for callback in self.callbacks:
            callback.on_checkpoint(self, self.last_saved)

    def interrupt(self, signum: int) -> None:
        """Stop on a signal: checkpoint the state after the last step (every process), say how to resume, raise."""
        self.check_finite()
        if self.last_saved is None or self.last_saved.name != f"checkpoint-{self.step}":
            self.save_checkpoint()
        self.bar.close()
        message = (
            f"stopped by {signal.Signals(signum).name} after step {self.step}; {self.last_saved} holds it. "
            f"Resume with:\n  {resume_command()}"
        )
        logger.warning(message)
        raise TrainingInterrupted(message, signum)

    def bad_files(self) -> str:
        """The distinct unreadable files skipped so far, for the final report."""
        if not self.bad_images:
            return ""
        names = sorted(self.bad_images)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f" ({len(names)} distinct file{'s' if len(names) > 1 else ''}: {shown})"

    def final_grid(self, pipe) -> None:
        """samples.png (minutes at 1000 steps), stopped cleanly by SIGINT or SIGTERM: the pipeline and the last
        checkpoint are saved by then, so a stop only skips the grid, and says how to draw it."""
        with StopOnSignal(self.accelerator, "skipping the sample grid (the pipeline is saved)", local=True) as stop:
            images = save_sample_grid(pipe, self.cfg, self.output_dir / SAMPLES_FILE, stop=lambda: stop.received)
        if images is None:
            message = (
                f"stopped by {signal.Signals(stop.received).name} while drawing {SAMPLES_FILE}, after training: the "
                f"pipeline in {self.output_dir} and {self.last_saved} are saved; no grid was drawn (python "
                f"examples/sample.py --model {self.output_dir} draws one)"
            )
            logger.warning(message)
            raise TrainingInterrupted(message, stop.received)
        log_grid(self.accelerator, images, self.step)

    def finish(self) -> None:
        """Save the EMA pipeline, its card and final samples (and push them), then report the run."""
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            pipe = ema_pipeline(self.ema, self.unet, self.scheduler)
            save_pipeline(pipe, cfg, self.output_dir)
            self.final_grid(pipe)
            if cfg.push_to_hub:
                repo_id = cfg.hub_model_id or self.output_dir.resolve().name  # diffusers' default: the folder's name
                push_pipeline(self.output_dir, repo_id, private=cfg.hub_private_repo, token=cfg.hub_token)
        acc.wait_for_everyone()
        acc.end_training()
        for callback in self.callbacks:
            callback.on_train_end(self)
        elapsed = time.perf_counter() - self.start_time
        rate = (self.step - self.start_step) * cfg.train_batch_size / max(elapsed, 1e-9)
        cuda = acc.device.type == "cuda"
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated(acc.device) / 2**30:.1f} GiB" if cuda else ""
        logger.info(
            f"done: {self.step} steps ({self.step - self.start_step} this run) in {elapsed:.0f} s, {rate:.0f} "
            f"images/s{peak}, {self.skipped} unreadable images skipped{self.bad_files()}; EMA pipeline in "
            f"{self.output_dir}"
        )


def train(cfg: TrainConfig, callbacks: Iterable[TrainerCallback] = ()) -> Path:
    """Train a DDPM as configured; return the output folder, which ends up holding a `DDPMPaperPipeline`."""
    return Trainer(cfg, callbacks).run_loop()
