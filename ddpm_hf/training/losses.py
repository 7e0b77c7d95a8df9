"""The paper's two training objectives, each a small callable chosen by name: L_simple (Eq. 14) and the true
variational bound L (Table 2)."""

from __future__ import annotations

from typing import Literal

import torch

from ..checks import check_choice
from ..fastpath import EpsModel
from ..likelihood import vlb_terms
from ..scheduler import DDPMPaperScheduler

LossName = Literal["simple", "vlb"]


class SimpleLoss:
    """L_simple (Eq. 14) per example: ||ε - ε_θ(x_t, t)||² averaged over dimensions, in float32."""

    def __call__(
        self, x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        return (eps.float() - noise.float()).square().mean(dim=tuple(range(1, eps.ndim)))


class VLBLoss:
    """The true bound's term per example (Table 2's L; the reference's "kl"): L_0 at t = 0, L_t otherwise, in
    bits/dim and float64 (`ddpm_hf.likelihood.vlb_terms`)."""

    def __init__(self, scheduler: DDPMPaperScheduler) -> None:
        self.scheduler = scheduler

    def __call__(
        self, x_0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        return vlb_terms(self.scheduler, x_0, x_t, t, eps)


def make_loss(name: LossName, scheduler: DDPMPaperScheduler) -> SimpleLoss | VLBLoss:
    """The loss called `name` (`--loss`)."""
    return SimpleLoss() if check_choice("loss", name, LossName) == "simple" else VLBLoss(scheduler)


def diffusion_loss(
    eps_model: EpsModel,
    scheduler: DDPMPaperScheduler,
    loss: SimpleLoss | VLBLoss,
    x_0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Algorithm 1's per-example loss [B]: x_t ~ q(x_t | x_0) with the given t and ε, then `loss`."""
    x_t = scheduler.q_sample(x_0, t, noise)
    return loss(x_0, x_t, t, noise, eps_model(x_t, t))
