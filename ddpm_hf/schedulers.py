"""Which schedulers a DDPM ε-network samples with, and why the others are refused.

The pipeline runs the algorithm of the scheduler it holds. These are diffusers' samplers for a network that predicts
ε on a discrete β-schedule (what the paper trains): each reads the network's output as ε and the schedule from its
own config (`num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`, `trained_betas`), so
`DDIMScheduler.from_config(pipe.scheduler.config)` samples the same model. The tests sample each one against a
reference loop written from diffusers' documented protocol.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_int
from .errors import InputError
from .sampling import p_sample_loop, step_keywords

# Class names, as diffusers' `_compatibles` lists them.
SUPPORTED_SCHEDULERS = (
    "DDPMPaperScheduler",
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
)

# diffusers' samplers whose `variance_type` picks σ_t² among fixed choices: given "analytic", they would fall back to
# another variance silently (the others read variance_type only to split a learned variance off the output).
_FIXED_VARIANCE_FROM_CONFIG = ("DDPMScheduler",)

# Schedulers known not to fit, and why.
_WHY_NOT = {
    "LCMScheduler": "it samples a consistency-distilled network (LCM), not a DDPM ε-network",
    "TCDScheduler": "it samples a trajectory-consistency-distilled network, not a DDPM ε-network",
    "CMStochasticIterativeScheduler": "it samples a consistency model, not a DDPM ε-network",
    "EDMEulerScheduler": "it expects an EDM-preconditioned network (σ_data), not a DDPM ε-network",
    "EDMDPMSolverMultistepScheduler": "it expects an EDM-preconditioned network (σ_data), not a DDPM ε-network",
    "CosineDPMSolverMultistepScheduler": "it expects a network trained on a cosine σ schedule with EDM preconditioning",
    "FlowMatchEulerDiscreteScheduler": "it integrates a flow-matching velocity, not a DDPM ε-prediction",
    "FlowMatchHeunDiscreteScheduler": "it integrates a flow-matching velocity, not a DDPM ε-prediction",
    "ScoreSdeVeScheduler": "it samples a variance-exploding score network, not a DDPM (variance-preserving) one",
    "IPNDMScheduler": "it uses its own fixed σ schedule, not the network's β-schedule",
    "DDIMInverseScheduler": "it inverts images to noise; it does not sample",
    "RePaintScheduler": "it inpaints with a mask and a known image",
}


def check_scheduler(scheduler: SchedulerMixin) -> None:
    """A ValueError saying why, if `scheduler` cannot sample a DDPM network that predicts ε with a fixed variance."""
    name = type(scheduler).__name__
    supported = ", ".join(SUPPORTED_SCHEDULERS)
    if name not in SUPPORTED_SCHEDULERS:
        why = _WHY_NOT.get(name, "it is not one of the schedulers tested with a DDPM ε-network")
        raise InputError(f"{name} cannot sample this pipeline: {why}. Use one of: {supported}")
    config = scheduler.config
    prediction = config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise InputError(
            f"{name} has prediction_type={prediction!r}, but the network predicts ε (Eq. 11): its output would be "
            f"read as another quantity. Build it with prediction_type='epsilon', e.g. "
            f"{name}.from_config(pipe.scheduler.config, prediction_type='epsilon')"
        )
    variance = config.get("variance_type")
    if variance in ("learned", "learned_range"):
        raise InputError(
            f"{name} has variance_type={variance!r}, which needs a network that also predicts its variance "
            "(2 × the image channels); this network predicts ε only, with σ_t² fixed (Sec. 3.2)"
        )
    if variance == "analytic" and name in _FIXED_VARIANCE_FROM_CONFIG:
        raise InputError(
            f"{name} has variance_type='analytic' (Analytic-DPM's optimal variance), which only DDPMPaperScheduler "
            "implements: diffusers' DDPMScheduler would sample with another variance without a word. Use "
            "DDPMPaperScheduler.from_config(pipe.scheduler.config)"
        )


def gives_pred_original_sample(scheduler: SchedulerMixin, num_inference_steps: int) -> bool:
    """Whether `scheduler.step` returns x̂_0 (`pred_original_sample`) on a chain of `num_inference_steps`: DDPM, DDIM
    and the Euler family do; DPM-Solver++, UniPC, DEIS and PNDM do not. Found by one step of a copy on a 1-pixel
    input, since diffusers' output classes say it only by their fields, and the copy keeps the scheduler's state."""
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(num_inference_steps)
    t = probe.timesteps[0]
    x = torch.zeros(1, 1, 1, 1)
    out = probe.step(torch.zeros_like(x), t, probe.scale_model_input(x, t), **step_keywords(probe, None, None))
    return getattr(out, "pred_original_sample", None) is not None


# --- how many steps a scheduler can take ---------------------------------------------------------------------------


def _schedule_copy(scheduler: SchedulerMixin) -> SchedulerMixin:
    """A copy of `scheduler` to set timesteps on. The variance plays no part in which timesteps a step count gives;
    an analytic one would refuse a chain through timesteps where Γ_t was not estimated, which the scheduler itself
    says (with that reason) when the pipeline sets its timesteps."""
    if scheduler.config.get("variance_type") == "analytic":
        return type(scheduler).from_config(
            scheduler.config, variance_type="fixed_large", analytic_gamma=None, analytic_estimate=None
        )
    return copy.deepcopy(scheduler)


@contextmanager
def _quiet(scheduler: SchedulerMixin) -> Iterator[None]:
    """Hold back the warnings a scheduler's module logs while a copy is probed (DPM-Solver singlestep warns at every
    `set_timesteps`): they are printed once, when the pipeline sets the scheduler's own timesteps."""
    logger = logging.getLogger(type(scheduler).__module__)
    logger.addFilter(_drop)
    try:
        yield
    finally:
        logger.removeFilter(_drop)


def _drop(record: logging.LogRecord) -> bool:
    return False


def _moves(scheduler: SchedulerMixin) -> bool:
    """Whether the chain `scheduler` holds changes x_T at all: run on a 2-pixel x_T with a constant ε̂, no network."""
    x = torch.tensor([0.5, -1.0]).reshape(1, 1, 1, 2) * scheduler.init_noise_sigma
    out = p_sample_loop(
        lambda x_t, t: torch.ones_like(x_t), scheduler, x, torch.Generator().manual_seed(0), progress=False
    )
    # A real step changes x by at least √(1 - ᾱ_0)·ε̂ ≈ 1e-2 (β_1 = 1e-4); rounding, by ~1e-7.
    return not torch.allclose(out, x, rtol=1e-5, atol=1e-5)


def _steps_fault(scheduler: SchedulerMixin, num_inference_steps: int) -> str | None:
    """Why `scheduler` cannot run a chain of `num_inference_steps` steps, or None if it can: read off a copy's
    timesteps for that count (diffusers' own refusals, or the collapses its timestep spacing makes at some counts,
    which would otherwise fail mid-chain with an IndexError, give NaN, or leave x_T as it is)."""
    n, num_train = num_inference_steps, scheduler.config.num_train_timesteps
    if n > num_train:
        return f"a chain has at most T = {num_train} steps, one per timestep of the forward process"
    probe = _schedule_copy(scheduler)
    with _quiet(probe):
        return _schedule_fault(probe, n)


def _schedule_fault(probe: SchedulerMixin, n: int) -> str | None:
    """`_steps_fault` on the copy `probe`, whose timesteps it sets."""
    num_train = probe.config.num_train_timesteps
    try:
        probe.set_timesteps(n)
    except Exception as e:  # diffusers' refusals, and its failures (PNDM's warm-up needs 4 timesteps: a numpy error)
        return f"its set_timesteps({n}) fails ({type(e).__name__}: {e})"
    timesteps = probe.timesteps.detach().cpu().to(torch.float64)
    if not torch.isfinite(timesteps).all() or timesteps.min() < 0 or timesteps.max() > num_train - 1:
        return (
            f"its timesteps run from {timesteps.min().item():g} to {timesteps.max().item():g}, outside the network's "
            f"0..{num_train - 1}"
        )
    # Each step starts from a noise level of its own: σ where the scheduler steps on `sigmas` (the network's t may
    # repeat there: Heun evaluates twice per level, Karras' σ round to shared t), else the timestep.
    sigmas = getattr(probe, "sigmas", None)
    levels = timesteps if sigmas is None else torch.as_tensor(sigmas).detach().cpu()[:-1]  # the last: where it ends
    distinct = len(torch.unique(levels))
    if distinct < n:
        return (
            f"its timestep spacing rounds the {n} steps onto {distinct} distinct noise level{'s' * (distinct > 1)}, "
            "so steps would repeat"
        )
    # PNDM's Runge-Kutta warm-up: each of its steps calls the network at both ends and at the midpoint (2k + 1
    # timesteps for k steps of 4 calls); a half step of T // n // 2 = 0 puts the midpoint on an end.
    warm_up = getattr(probe, "prk_timesteps", None)
    if warm_up is not None and len(warm_up) and len(set(warm_up.tolist())) < 2 * (len(warm_up) // 4) + 1:
        return "the midpoints of its Runge-Kutta warm-up (skip_prk_steps=False) round onto the steps' ends"
    # On one timestep, whether the chain moves depends on where its step ends: at ᾱ = 1, or at ᾱ_0 itself (PNDM,
    # DDIM with set_alpha_to_one=False), which returns x_T as it was.
    if len(torch.unique(timesteps)) == 1 and not _moves(probe):
        return f"its one step, at t = {timesteps[0].item():g}, returns x_T unchanged"
    return None


def valid_num_inference_steps(scheduler: SchedulerMixin) -> range:
    """The step counts `scheduler` can sample with, on its own config (T, timestep spacing, offsets). Every count
    in it passes `check_num_inference_steps`; the tests check, for every supported scheduler, that the valid counts
    are this one range."""
    num_train = scheduler.config.num_train_timesteps
    low = next((n for n in range(1, num_train + 1) if _steps_fault(scheduler, n) is None), None)
    if low is None:
        return range(1, 1)
    high = num_train
    if _steps_fault(scheduler, high) is not None:  # the largest valid count, by bisection between low and T
        good, bad = low, high
        while bad - good > 1:
            middle = (good + bad) // 2
            good, bad = (middle, bad) if _steps_fault(scheduler, middle) is None else (good, middle)
        high = good
    return range(low, high + 1)


def check_num_inference_steps(
    scheduler: SchedulerMixin, num_inference_steps: Any, name: str = "num_inference_steps"
) -> int:
    """`num_inference_steps` as an int if `scheduler` can sample a chain of that many steps; otherwise an
    `InputError` naming the scheduler, why, and the counts it takes (`valid_num_inference_steps`). Cheap (a copy's
    `set_timesteps`), and calls no network: run it before sampling."""
    try:
        n = check_int(name, num_inference_steps, 1)
    except ValueError as e:
        raise InputError(str(e)) from None
    why = _steps_fault(scheduler, n)
    if why is None:
        return n
    config = scheduler.config
    valid = valid_num_inference_steps(scheduler)
    spacing = f", timestep_spacing={config.timestep_spacing!r}" if "timestep_spacing" in config else ""
    takes = f"it takes {valid.start} to {valid.stop - 1} steps" if valid else "it takes no step count at all"
    raise InputError(
        f"{name}: {type(scheduler).__name__} cannot take {n} step{'s' * (n != 1)}: {why}. On this schedule "
        f"(T = {config.num_train_timesteps}{spacing}) {takes}"
    )
