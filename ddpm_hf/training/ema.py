"""Exponential moving average of the weights, as the reference keeps it: constant decay, no warm-up."""

from __future__ import annotations

from typing import Any

import torch


class EMA:
    """θ_ema ← decay · θ_ema + (1 - decay) · θ after every optimizer step, in float32 whatever the model's dtype.

    Registered with `accelerator.register_for_checkpointing`, so `save_state`/`load_state` carry it.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
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
            raise ValueError(f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)}")
        self.decay = state["decay"]
        pairs = zip(state["shadow"], self.shadow, strict=True)
        self.shadow = [s.to(device=old.device, dtype=torch.float32) for s, old in pairs]
