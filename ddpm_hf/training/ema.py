"""Exponential moving average of the weights: the reference's constant decay, or diffusers' warm-up on request."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError


def warmup_decay(update: int, max_decay: float, inv_gamma: float, power: float, min_decay: float) -> float:
    """diffusers' `EMAModel` warm-up for the `update`-th update (1-based): 0 (a copy) at the first, then
    1 - (1 + n / inv_gamma)^-power for n = update - 1, kept within [min_decay, max_decay]."""
    n = update - 1
    if n <= 0:
        return 0.0
    return max(min(1.0 - (1.0 + n / inv_gamma) ** -power, max_decay), min_decay)


class EMA:
    """θ_ema ← decay · θ_ema + (1 - decay) · θ after every optimizer step, in float32 whatever the model's dtype.

    Registered with `accelerator.register_for_checkpointing`, so `save_state`/`load_state` carry it. `decay` is the
    one last applied (the constant given here unless `update` is passed another).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float | None = None) -> None:
        if decay is not None:
            self.decay = decay
        params = [p.detach().float() for p in model.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - self.decay)  # one fused kernel over all tensors

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for p, s in zip(model.parameters(), self.shadow, strict=True):
            p.copy_(s.to(device=p.device, dtype=p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise InputError(f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)}")
        self.decay = state["decay"]
        pairs = zip(state["shadow"], self.shadow, strict=True)
        self.shadow = [s.to(device=old.device, dtype=torch.float32) for s, old in pairs]
