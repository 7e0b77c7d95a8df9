"""The optimiser: the paper's Adam, and the learning rate as a pure function of the step (so resume is exact).

The schedules are diffusers' (`diffusers.optimization.get_scheduler`), by the same names and formulas; the paper's
is `constant_with_warmup`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..errors import InputError

LR_SCHEDULES = ("constant_with_warmup", "constant", "linear", "cosine", "cosine_with_restarts", "polynomial")
_POLYNOMIAL_END, _POLYNOMIAL_POWER = 1e-7, 1.0  # get_scheduler's defaults for "polynomial"


def lr_factor(name: str, step: int, warmup_steps: int, total_steps: int, base_lr: float = 1.0) -> float:
    """The multiplier of the base learning rate at `step` (0-based count of optimizer steps taken) for schedule
    `name`: linear warm-up over `warmup_steps`, then constant, linear or cosine decay to 0 at `total_steps`, one cosine
    restart cycle, or polynomial decay to 1e-7 (`base_lr` is needed for that one's end point)."""
    if name == "constant":
        return 1.0
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if name == "constant_with_warmup":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if name == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if name == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    if name == "cosine_with_restarts":
        return 0.0 if progress >= 1.0 else max(0.0, 0.5 * (1.0 + math.cos(math.pi * (progress % 1.0))))
    if name == "polynomial":
        if step > total_steps:
            return _POLYNOMIAL_END / base_lr
        decay = (base_lr - _POLYNOMIAL_END) * (1 - progress) ** _POLYNOMIAL_POWER + _POLYNOMIAL_END
        return decay / base_lr
    raise InputError(f"lr_scheduler must be one of {LR_SCHEDULES}, got {name!r}")


def learning_rate(name: str, step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at `step` under schedule `name` (the paper's: linear warm-up, then constant)."""
    return base_lr * lr_factor(name, step, warmup_steps, total_steps, base_lr)


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    device: torch.device,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The paper's Adam (no weight decay; AdamW when `weight_decay` > 0, as diffusers' script): one fused kernel on
    CUDA and CPU (measured in docs/benchmarks.md), multi-tensor (foreach) elsewhere."""
    kernel = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kernel)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, **kernel)
