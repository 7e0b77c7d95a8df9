"""The paper's optimiser: Adam without weight decay, and the learning rate as a pure function of the step."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    """The reference's schedule: linear warm-up from 0 over `warmup_steps` updates, then constant."""
    return base_lr if warmup_steps <= 0 else base_lr * min(step / warmup_steps, 1.0)


def make_optimizer(
    params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float, device: torch.device
) -> torch.optim.Adam:
    """The paper's Adam (no weight decay): one fused kernel on CUDA and CPU (measured in docs/benchmarks.md),
    multi-tensor (foreach) elsewhere."""
    if device.type in ("cuda", "cpu"):
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, foreach=True)
