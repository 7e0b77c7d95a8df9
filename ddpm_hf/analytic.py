"""Analytic-DPM's optimal reverse variance for a trained ε-network (Bao et al., ICLR 2022), without retraining.

The paper fixes σ_t² to β_t or β̃_t, the two extremes (Sec. 3.2). Given the network, the variance that minimises the
bound is σ*_t² = β̃_t + c_t² (1 - ᾱ_t)/ᾱ_t (1 - Γ_t) (`ddpm_hf.diffusion.analytic_variance`), where
Γ_t = E_{q(x_t)} ‖ε_θ(x_t, t)‖²/d is one number per timestep, estimated here once by Monte Carlo on training images.
It holds for every respaced chain too, since a sub-chain's step needs Γ only at its own timestep. The estimate is
stored in the scheduler's config (`analytic_gamma`, `analytic_estimate`), so `save_pretrained`, `from_pretrained`
and the Hub carry it, and `DDPMPaperScheduler(variance_type="analytic")` samples and bounds with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .checks import check_int
from .diffusion import analytic_variance
from .errors import InputError
from .fastpath import EpsModel
from .likelihood import mean_flat, noised_pairs
from .reporting import Progress
from .scheduler import DDPMPaperScheduler
from .schedulers import check_num_inference_steps

METHOD = "Monte Carlo: the mean over images of ‖ε_θ(x_t, t)‖²/d, one x_t ~ q(x_t | x_0) per image and timestep"


@dataclass
class GammaEstimate:
    """Γ_t = E‖ε_θ(x_t, t)‖²/d of one network at some timesteps, with its Monte Carlo standard error."""

    timesteps: list[int]  # ascending t where Γ was estimated
    gamma: np.ndarray  # [K] Γ_t
    stderr: np.ndarray  # [K] its standard error over the images (std / √M)
    eps_mse: np.ndarray  # [K] E‖ε_θ - ε‖²/d, the network's error: 1 - Γ_t if ε_θ were exactly E[ε | x_t]
    num_images: int
    source: dict[str, Any] = field(default_factory=dict)  # what it was measured on: data, seed, weights hash

    @classmethod
    def from_samples(
        cls,
        timesteps: Sequence[int],
        mean_squares: np.ndarray,
        errors: np.ndarray,
        source: dict[str, Any] | None = None,
    ) -> GammaEstimate:
        """The estimate from per-image samples [M, K] of ‖ε_θ‖²/d and ‖ε_θ - ε‖²/d (`eps_mean_squares`)."""
        mean_squares, errors = np.asarray(mean_squares, np.float64), np.asarray(errors, np.float64)
        num_images = mean_squares.shape[0]
        stderr = (
            mean_squares.std(axis=0, ddof=1) / math.sqrt(num_images)
            if num_images > 1
            else np.full_like(mean_squares[0], np.nan)
        )
        return cls(
            timesteps=[int(t) for t in timesteps],
            gamma=mean_squares.mean(axis=0),
            stderr=stderr,
            eps_mse=errors.mean(axis=0),
            num_images=num_images,
            source=dict(source or {}),
        )

    def per_timestep(self, values: np.ndarray, num_train_timesteps: int) -> list[float | None]:
        """`values` [K] spread over t = 0..T-1, None where Γ was not estimated (the config's layout)."""
        out: list[float | None] = [None] * num_train_timesteps
        for t, value in zip(self.timesteps, values, strict=True):
            out[t] = None if not np.isfinite(value) else float(value)
        return out

    def scheduler_config(self, num_train_timesteps: int) -> dict[str, Any]:
        """The scheduler config keys that carry this estimate: `analytic_gamma` and `analytic_estimate`."""
        bad = [t for t, g in zip(self.timesteps, self.gamma, strict=True) if not np.isfinite(g)]
        if bad:
            raise InputError(f"Γ_t is not finite at timesteps {bad[:8]}: the network's output is not finite there")
        return {
            "analytic_gamma": self.per_timestep(self.gamma, num_train_timesteps),
            "analytic_estimate": {
                "method": METHOD,
                "num_images": self.num_images,
                "num_timesteps": len(self.timesteps),
                **self.source,
                "stderr": self.per_timestep(self.stderr, num_train_timesteps),
            },
        }


def eps_mean_squares(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x_0: torch.Tensor,
    timesteps: torch.Tensor,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    progress: Progress = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """‖ε_θ(x_t, t)‖²/d and ‖ε_θ(x_t, t) - ε‖²/d [B, K] of each image at each timestep, one x_t ~ q(x_t | x_0)
    each: the Monte Carlo samples of Γ_t, and of the network's error. The pairs go `batch_size` per pass."""
    batch_size = check_int("batch_size", x_0.shape[0] if batch_size is None else batch_size)
    squares = torch.zeros(x_0.shape[0], len(timesteps), dtype=torch.float64, device=x_0.device)
    errors = torch.zeros_like(squares)
    for pairs in noised_pairs(eps_model, scheduler.tables, x_0, timesteps, generator, batch_size, progress):
        eps = pairs.eps.to(torch.float64)
        squares[pairs.image, pairs.step] = mean_flat(eps**2)
        errors[pairs.image, pairs.step] = mean_flat((eps - pairs.noise) ** 2)
    return squares, errors


def gamma_timesteps(scheduler: DDPMPaperScheduler, num_inference_steps: int | Sequence[int] | None = None) -> list[int]:
    """The timesteps to estimate Γ at: all T (None), or those of the chains of the given step count (or counts, as
    `pipe()` takes one); each count checked before any work (`ddpm_hf.schedulers.check_num_inference_steps`)."""
    if num_inference_steps is None:
        return list(range(scheduler.config.num_train_timesteps))
    single = isinstance(num_inference_steps, (str, bytes)) or not isinstance(num_inference_steps, Iterable)
    counts = [num_inference_steps] if single else list(num_inference_steps)
    if not counts:
        raise InputError("num_inference_steps is empty: give a step count, several, or None for every timestep")
    counts = [check_num_inference_steps(scheduler, n) for n in counts]
    return sorted({int(t) for n in counts for t in scheduler.chain(n).timesteps})


def estimate_gamma(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x_0: torch.Tensor,
    num_inference_steps: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    progress: Progress = True,
) -> GammaEstimate:
    """Γ_t = E‖ε_θ(x_t, t)‖²/d by Monte Carlo over the images x_0 [M, C, H, W] on [-1, 1] (training images, as
    Bao et al.), at every timestep or at those of the chains of the given step count (or counts). One process; for
    many images on many processes, resumable, see `ddpm_hf.evaluation.estimate_analytic_variance`."""
    if x_0.ndim != 4 or not x_0.is_floating_point() or x_0.shape[0] < 2:
        raise InputError(f"x_0 must be at least 2 float images [M, C, H, W] in [-1, 1], got {tuple(x_0.shape)}")
    timesteps = gamma_timesteps(scheduler, num_inference_steps)
    squares, errors = eps_mean_squares(
        eps_model, scheduler, x_0, torch.tensor(timesteps), generator, batch_size, progress
    )
    return GammaEstimate.from_samples(timesteps, squares.cpu().numpy(), errors.cpu().numpy())


def with_analytic_variance(scheduler: DDPMPaperScheduler, estimate: GammaEstimate) -> DDPMPaperScheduler:
    """A copy of `scheduler` (same schedule and options) whose reverse variance is Analytic-DPM's, from `estimate`."""
    if not isinstance(scheduler, DDPMPaperScheduler):
        raise InputError(f"the analytic variance is DDPMPaperScheduler's, not {type(scheduler).__name__}'s")
    config = estimate.scheduler_config(scheduler.config.num_train_timesteps)
    return DDPMPaperScheduler.from_config(scheduler.config, variance_type="analytic", **config)


def variance_curves(scheduler: DDPMPaperScheduler, num_inference_steps: int | None = None) -> dict[str, np.ndarray]:
    """β_t, β̃_t and σ*_t² of a chain (full, or respaced to `num_inference_steps`), for plots and tables."""
    chain = scheduler.chain(num_inference_steps)
    gamma = scheduler.gamma[chain.timesteps] if scheduler.gamma is not None else None
    curves = {
        "timesteps": chain.timesteps.numpy(),
        "fixed_large": chain.tables.betas.numpy(),
        "fixed_small": chain.tables.posterior_variance.numpy(),
    }
    if gamma is not None:
        curves["analytic"] = analytic_variance(chain.tables, gamma).numpy()
    return curves


def describe(estimate: GammaEstimate) -> str:
    """The markdown a model card says about the estimate."""
    source = estimate.source
    data = source.get("dataset") or "the training images"
    split = f" ({source['split']})" if source.get("split") else ""
    worst = float(np.nanmax(estimate.stderr)) if np.isfinite(estimate.stderr).any() else float("nan")
    return (
        "This pipeline's scheduler samples and bounds with the **optimal reverse variance** of Analytic-DPM "
        '(Bao et al., ICLR 2022): `DDPMPaperScheduler(variance_type="analytic")`, which needs `ddpm_hf` '
        "(diffusers' own `DDPMScheduler` does not implement it). "
        f"Γ_t = E‖ε_θ(x_t, t)‖²/d was estimated at {len(estimate.timesteps)} timesteps from {estimate.num_images} "
        f"images of {data}{split}, seed {source.get('seed', 'n/a')}; its largest standard error is {worst:.2g}. "
        "The network's weights are those of the source pipeline"
        + (f" (sha256 `{source['model_weights_sha256'][:12]}…`)." if source.get("model_weights_sha256") else ".")
    )
