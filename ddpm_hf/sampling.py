"""Algorithm 2, the reverse process, as one loop: sampling, progressive generation and interpolation all run it.

As improved-diffusion's `p_sample_loop_progressive`, the loop is a generator of steps; `p_sample_loop` only consumes
it. Each step is the scheduler's `step`, on whatever timesteps `scheduler.set_timesteps` chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from diffusers.utils.torch_utils import randn_tensor

from .diffusion import compute_dtype
from .fastpath import EpsModel
from .progress import Progress, track
from .scheduler import DDPMPaperScheduler


class ReverseStep(NamedTuple):
    """One step of the reverse process, from x_t to x_{t-1}."""

    index: int  # 0 for the first step of the loop
    timestep: int  # t
    x_t: torch.Tensor  # the step's input
    pred_xstart: torch.Tensor  # x̂_0(x_t), clipped as the scheduler clips it
    prev_sample: torch.Tensor  # x_{t-1}; the final sample x_0 after the last step


def p_sample_loop_progressive(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    *,
    from_timestep: int | None = None,
    shared_noise: bool = False,
    progress: Progress = True,
) -> Iterator[ReverseStep]:
    """Algorithm 2 from `x` down to x_0 over the scheduler's timesteps, yielding every step.

    Args:
        eps_model: `(x_t, t) -> ε̂`, e.g. from `ddpm_hf.fastpath.eps_model`; t is a 0-d long tensor on x's device.
        scheduler: its current `timesteps` are the chain (set them with `set_timesteps`).
        x: x_T, or x_t for `from_timestep` = t.
        generator: draws each step's noise z (one per image, or one for the batch).
        from_timestep: start at this scheduled timestep instead of the first (interpolation starts at x_t).
        shared_noise: add the same z to every image at each step, to compare images that differ only in where
            they start; z is then drawn with the shape of one image.
        progress: a progress bar (`True`, `False` or a callable such as a pipeline's `progress_bar`).
    """
    timesteps = scheduler.timesteps.cpu()
    if from_timestep is not None:
        if from_timestep not in timesteps.tolist():
            raise ValueError(f"from_timestep={from_timestep} is not one of the scheduler's timesteps")
        timesteps = timesteps[timesteps <= from_timestep]
    # The network reads each t from one copy on the device (a host scalar would be copied, and synced, every step);
    # the scheduler reads the same values on the host, where they cost nothing.
    network_timesteps = timesteps.to(x.device)
    final = int(scheduler.timesteps.min())
    for i, t in enumerate(track(timesteps.tolist(), progress)):
        eps = eps_model(x, network_timesteps[i])
        noise = None
        if shared_noise and t != final:  # Algorithm 2 adds no noise on the final step
            one = (1, *x.shape[1:])
            noise = randn_tensor(one, generator=generator, device=x.device, dtype=compute_dtype(x.dtype)).expand_as(x)
        out = scheduler.step(eps, t, x, generator=None if shared_noise else generator, variance_noise=noise)
        yield ReverseStep(i, t, x, out.pred_original_sample, out.prev_sample)
        x = out.prev_sample


def p_sample_loop(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    x: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    **kwargs,
) -> torch.Tensor:
    """x_0 from Algorithm 2: the last step of `p_sample_loop_progressive` (same arguments)."""
    for step in p_sample_loop_progressive(eps_model, scheduler, x, generator, **kwargs):
        x = step.prev_sample
    return x
