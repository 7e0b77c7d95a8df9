"""Which schedulers a DDPM ε-network samples with, and why the others are refused.

The pipeline runs the algorithm of the scheduler it holds. These are diffusers' samplers for a network that predicts
ε on a discrete β-schedule (what the paper trains): each reads the network's output as ε and the schedule from its
own config (`num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`, `trained_betas`), so
`DDIMScheduler.from_config(pipe.scheduler.config)` samples the same model. The tests sample each one against a
reference loop written from diffusers' documented protocol.
"""

from __future__ import annotations

import copy

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .sampling import step_keywords

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
        raise ValueError(f"{name} cannot sample this pipeline: {why}. Use one of: {supported}")
    config = scheduler.config
    prediction = config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ValueError(
            f"{name} has prediction_type={prediction!r}, but the network predicts ε (Eq. 11): its output would be "
            f"read as another quantity. Build it with prediction_type='epsilon', e.g. "
            f"{name}.from_config(pipe.scheduler.config, prediction_type='epsilon')"
        )
    variance = config.get("variance_type")
    if variance in ("learned", "learned_range"):
        raise ValueError(
            f"{name} has variance_type={variance!r}, which needs a network that also predicts its variance "
            "(2 × the image channels); this network predicts ε only, with σ_t² fixed (Sec. 3.2)"
        )
    if variance == "analytic" and name in _FIXED_VARIANCE_FROM_CONFIG:
        raise ValueError(
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
