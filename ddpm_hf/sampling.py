"""The reverse process as one loop: sampling, progressive generation and interpolation all run it.

As improved-diffusion's `p_sample_loop_progressive`, the loop is a generator of steps; `p_sample_loop` only consumes
it. Each step is the scheduler's `step`, on whatever timesteps `scheduler.set_timesteps` chose: Algorithm 2 with a
`DDPMPaperScheduler`, or the algorithm of any diffusers scheduler the pipeline accepts (`ddpm_hf.schedulers`),
following diffusers' protocol: x_T scaled by `init_noise_sigma`, `scale_model_input` before every network call, one
network call per entry of `timesteps` (second-order methods repeat timesteps), and the step's keywords (`generator`,
`eta`) passed only where its `step` takes them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .diffusion import compute_dtype
from .errors import InputError
from .fastpath import EpsModel
from .reporting import Progress, track


@dataclass
class ReverseStep:
    """One step of the reverse process, from x_t to the next sample.

    The loop goes on from `prev_sample` as it is when the step is handed back: a callback may replace it (as
    diffusers' `callback_on_step_end` may return new latents).
    """

    index: int  # 0 for the first step of the loop
    timestep: int | float  # t, as the scheduler's `timesteps` holds it (a float for the σ-based schedulers)
    x_t: torch.Tensor  # the step's input
    pred_xstart: torch.Tensor | None  # x̂_0(x_t) where the scheduler gives it (clipped as it clips), else None
    prev_sample: torch.Tensor  # x_{t-1}; the final sample x_0 after the last step


StepCallback = Callable[[ReverseStep], bool]  # sees (and may change) each step; True stops the loop after it


def step_keywords(scheduler: SchedulerMixin, generator: Any, eta: float | None) -> dict[str, Any]:
    """The keywords for `scheduler.step`: the generator where it draws noise, η where it takes one (DDIM).

    As diffusers' `prepare_extra_step_kwargs`, read off the step's signature; an η for a scheduler without one is
    refused rather than dropped.
    """
    accepted = inspect.signature(scheduler.step).parameters
    keywords: dict[str, Any] = {}
    if "generator" in accepted:
        keywords["generator"] = generator
    if eta is not None:
        if "eta" not in accepted:
            raise InputError(f"eta is DDIM's noise scale; {type(scheduler).__name__}.step takes no eta")
        keywords["eta"] = float(eta)
    return keywords


def p_sample_loop_progressive(
    eps_model: EpsModel,
    scheduler: SchedulerMixin,
    x: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    *,
    from_timestep: int | None = None,
    shared_noise: bool = False,
    eta: float | None = None,
    callback: StepCallback | None = None,
    progress: Progress = True,
) -> Iterator[ReverseStep]:
    """The reverse process from `x` over the scheduler's timesteps, yielding every step.

    Args:
        eps_model: `(x_t, t) -> ε̂`, e.g. from `ddpm_hf.fastpath.eps_model`; t is a 0-d tensor on x's device.
        scheduler: its current `timesteps` are the chain (set them with `set_timesteps`).
        x: x_T already scaled by `init_noise_sigma`, or x_t for `from_timestep` = t.
        generator: draws each step's noise z (one per image, or one for the batch), where the scheduler draws any.
        from_timestep: start at this scheduled timestep instead of the first (interpolation starts at x_t).
        shared_noise: add the same z to every image at each step, to compare images that differ only in where
            they start; z is then drawn with the shape of one image (schedulers whose `step` takes `variance_noise`).
        eta: DDIM's η, for schedulers whose `step` takes it.
        callback: called with each step before it is yielded; it may replace `prev_sample`, and returns True to end
            the loop after that step.
        progress: a progress bar (`True`, `False` or a callable such as a pipeline's `progress_bar`).
    """
    keywords = step_keywords(scheduler, None if shared_noise else generator, eta)
    if shared_noise and "variance_noise" not in inspect.signature(scheduler.step).parameters:
        raise InputError(f"shared noise needs a scheduler whose step takes variance_noise, not {type(scheduler)}")
    scheduled = scheduler.timesteps.cpu()  # what the scheduler reads: on the host, where indexing costs nothing
    if from_timestep is not None:
        if from_timestep not in scheduled.tolist():
            raise InputError(f"from_timestep={from_timestep} is not one of the scheduler's timesteps")
        scheduled = scheduled[scheduled <= from_timestep]
    # The network reads each t from one copy on the device (a host scalar would be copied, and synced, every step).
    network_timesteps = scheduled.to(x.device)
    final = len(scheduled) - 1
    for i in track(range(len(scheduled)), progress):
        t = scheduled[i]
        eps = eps_model(scheduler.scale_model_input(x, t), network_timesteps[i])
        if shared_noise:  # one z for every image; Algorithm 2 adds no noise on the final step
            z = None
            if i != final:
                z = randn_tensor((1, *x.shape[1:]), generator=generator, device=x.device, dtype=compute_dtype(x.dtype))
            keywords["variance_noise"] = None if z is None else z.expand_as(x)
        out = scheduler.step(eps, t, x, **keywords)
        step = ReverseStep(i, t.item(), x, getattr(out, "pred_original_sample", None), out.prev_sample)
        stop = callback is not None and callback(step)
        yield step
        x = step.prev_sample
        if stop:
            return


def p_sample_loop(
    eps_model: EpsModel,
    scheduler: SchedulerMixin,
    x: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    **kwargs,
) -> torch.Tensor:
    """The final sample of `p_sample_loop_progressive` (same arguments)."""
    for step in p_sample_loop_progressive(eps_model, scheduler, x, generator, **kwargs):
        x = step.prev_sample
    return x
