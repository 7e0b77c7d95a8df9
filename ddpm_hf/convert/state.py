"""A checkpoint's weights as a diffusers `UNet2DModel` state dict, all or nothing."""

from __future__ import annotations

import torch

from ..errors import SetupError
from .layout import Architecture, layers
from .sources import ConversionError, SourceWeights

SHOWN = 12  # names listed in a message before "and N more"


def _names(names: list[str]) -> str:
    more = f", and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def unet_state_dict(
    weights: SourceWeights, arch: Architecture, expected: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Every parameter of the `arch` network from `weights`, checked against `expected` (the target model's
    parameter shapes). Refuses missing weights (naming them), weights this network has no place for, and shapes
    that differ."""
    state, missing, used = {}, [], set()
    for layer in layers(arch):
        for param in ("weight", "bias"):
            name = weights.name(layer, param)
            if not weights.has(name):
                missing.append(name)
                continue
            used.add(name)
            state[f"{layer.diffusers}.{param}"] = weights.tensor(layer, param)
    if missing:
        raise ConversionError(f"{weights.path} lacks {len(missing)} of the network's variables: {_names(missing)}")
    unused = weights.unused(used)
    if unused:
        raise ConversionError(
            f"{weights.path} holds {len(unused)} variables the network has no place for ({_names(unused)}): a network "
            "of another architecture"
        )
    if set(state) != set(expected):  # the layout and diffusers' model disagree: a bug here, not in the checkpoint
        raise SetupError(f"layout mismatch with UNet2DModel: {sorted(set(state) ^ set(expected))[:SHOWN]}")
    wrong = [f"{k} {tuple(v.shape)} (needs {tuple(expected[k])})" for k, v in state.items() if v.shape != expected[k]]
    if wrong:
        raise ConversionError(f"{weights.path} holds tensors of other shapes than the network's: {_names(wrong)}")
    return state
