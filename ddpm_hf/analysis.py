"""The paper's analyses of a trained model: progressive generation (Fig. 1, Fig. 6), interpolation (Sec. 4.3,
Fig. 8) and progressive lossy coding's rate–distortion (Sec. 4.3, Table 4, Fig. 5).

Images are tensors on the model's [-1, 1] scale; `to_pil` turns them into pictures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_int
from .errors import InputError
from .fastpath import EpsModel
from .likelihood import BitsPerDim
from .pixels import PIXEL_SCALE
from .pixels import to_pil as to_pil  # re-exported: the analyses' images as PIL
from .reporting import Progress
from .sampling import ReverseStep, StepCallback, p_sample_loop, p_sample_loop_progressive
from .scheduler import DDPMPaperScheduler


@dataclass
class Trajectory:
    """A run of the reverse process: its final x_0 and what it predicted on the way."""

    images: torch.Tensor  # [B, C, H, W], the final samples x_0
    timesteps: list[int]  # the recorded t, descending
    pred_xstart: torch.Tensor  # [B, N, C, H, W], x̂_0(x_t) at each recorded t (clipped as the sampler clips it)
    x_t: torch.Tensor | None = None  # [B, N, C, H, W], the x_t that x̂_0 was predicted from


@dataclass
class Interpolation:
    """Decoded interpolants between two images (Sec. 4.3)."""

    lambdas: torch.Tensor  # [num], from 0 (image a) to 1 (image b)
    images: torch.Tensor  # [num, C, H, W]


@dataclass
class RateDistortion:
    """Progressive lossy coding (Table 4, Fig. 5), one entry per reverse step s = 1..T (s = T - t for timestep t)."""

    reverse_steps: np.ndarray  # [T]: 1..T, how many x's the receiver holds (x_{T-1} .. x_t)
    timesteps: np.ndarray  # [T]: t = T - s, the code index of the latest x_t received
    rate: np.ndarray  # [T]: bits/dim sent so far, L_T + Σ_{t' > t} L_{t'}, averaged over images
    distortion: np.ndarray  # [T]: RMSE of x̂_0(x_t) against x_0 on the 0..255 scale, over all images' pixels


def record_trajectory(steps: Iterable[ReverseStep], every: int, return_xt: bool = False) -> Trajectory:
    """Run the reverse process `steps`, keeping x̂_0 (and x_t) at every t divisible by `every`."""
    recorded: list[int] = []
    preds: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    for step in steps:
        if step.timestep % every == 0:
            recorded.append(step.timestep)
            preds.append(step.pred_xstart)
            if return_xt:
                inputs.append(step.x_t)
        x = step.prev_sample
    stack = (lambda xs: torch.stack(xs, dim=1)) if recorded else (lambda xs: x.new_zeros(x.shape[0], 0, *x.shape[1:]))
    return Trajectory(images=x, timesteps=recorded, pred_xstart=stack(preds), x_t=stack(inputs) if return_xt else None)


def progressive_generation(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    shape: tuple[int, ...],
    generator: torch.Generator | list[torch.Generator] | None = None,
    every: int = 100,
    return_xt: bool = False,
    device: torch.device | str = "cpu",
    progress: Progress = True,
    callback: StepCallback | None = None,
) -> Trajectory:
    """Sample from x_T ~ N(0, I) with the full chain (Algorithm 2), keeping x̂_0 at every t divisible by `every`
    (Fig. 6); sets the scheduler's timesteps to all T.

    As the reference's `p_sample_loop_progressive`: with T = 1000 and every = 100 the columns are t = 900, …, 0.
    """
    num_timesteps = scheduler.config.num_train_timesteps
    every = check_int("every", every, 1, num_timesteps)
    scheduler.set_timesteps(num_timesteps)
    x_last = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
    steps = p_sample_loop_progressive(eps_model, scheduler, x_last, generator, callback=callback, progress=progress)
    return record_trajectory(steps, every, return_xt)


def interpolate(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    t: int = 500,
    num: int = 8,
    generator: torch.Generator | None = None,
    progress: Progress = True,
    callback: StepCallback | None = None,
) -> Interpolation:
    """Interpolate two images in latent space (Sec. 4.3): x̄_t = (1 - λ) x_t + λ x'_t, then x̄_0 ~ p_θ(x_0 | x̄_t).

    x_t and x'_t are independent draws of q(x_t | x_0) and q(x_t | x'_0), the same for every λ; the reverse
    process then adds the same noise to every interpolant, so the row varies only through λ ("We fixed the noise
    for different values of λ so x_t and x'_t remain the same"). `t` is the code's 0-based timestep (the paper's
    Fig. 8 uses 500 steps of diffusion, x_500: t = 499 here). Sets the scheduler's timesteps to all T.
    """
    num_timesteps = scheduler.config.num_train_timesteps
    t = check_int("t", t, 0, num_timesteps - 1)
    num = check_int("num", num, 2)  # both ends included
    if x_a.ndim != 3 or x_a.shape != x_b.shape:
        raise InputError(
            f"x_a and x_b must be images [C, H, W] of one shape, got {tuple(x_a.shape)}, {tuple(x_b.shape)}"
        )
    if isinstance(generator, list):
        raise InputError("interpolate takes a single torch.Generator, not a list")
    sources = torch.stack([x_a, x_b]).float()
    noise = randn_tensor(tuple(sources.shape), generator=generator, device=sources.device, dtype=sources.dtype)
    x_t, x_t_prime = scheduler.q_sample(sources, torch.full((2,), t, device=sources.device), noise)
    lambdas = torch.linspace(0.0, 1.0, num, device=sources.device).view(-1, *([1] * x_t.ndim))
    mixed = (1.0 - lambdas) * x_t + lambdas * x_t_prime
    scheduler.set_timesteps(num_timesteps)
    images = p_sample_loop(
        eps_model, scheduler, mixed, generator, from_timestep=t, shared_noise=True, callback=callback, progress=progress
    )
    return Interpolation(lambdas=lambdas.flatten().cpu(), images=images)


def rate_distortion(bpd: BitsPerDim) -> RateDistortion:
    """Rate and distortion of progressive lossy coding (Algorithms 3-4, Table 4) from the bound's per-t terms.

    Having received x_{T-1} .. x_t, the receiver has paid rate L_T + Σ_{t' = t+1}^{T-1} L_{t'} (the KL term at t'
    codes x_{t'-1}) and reconstructs x̂_0(x_t); after all T steps the rate is L_T + Σ_{t ≥ 1} L_t (Table 4's 1.78
    bits/dim on CIFAR-10) and the remaining L_0 is the distortion in bits/dim.
    """
    terms = bpd.terms.double().cpu()
    num_timesteps = terms.shape[1]
    # after[t] = Σ_{t' > t} L_{t'}: a reversed cumulative sum, shifted by one.
    after = torch.flip(torch.cumsum(torch.flip(terms, [1]), dim=1), [1])
    after = torch.cat([after[:, 1:], torch.zeros_like(after[:, :1])], dim=1)
    rate = (bpd.prior.double().cpu()[:, None] + after).mean(dim=0)
    distortion = PIXEL_SCALE * bpd.x0_mse.double().cpu().mean(dim=0).sqrt()
    timesteps = np.arange(num_timesteps - 1, -1, -1)
    return RateDistortion(
        reverse_steps=num_timesteps - timesteps,
        timesteps=timesteps,
        rate=rate.numpy()[timesteps],
        distortion=distortion.numpy()[timesteps],
    )
