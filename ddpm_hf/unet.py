"""`DDPMUNet2DModel`: diffusers' `UNet2DModel` with the paper's presets and the reference's initialisation."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import nn

from .blocks import install_fast_blocks_
from .errors import InputError

# The paper's networks in diffusers' vocabulary. The CIFAR-10 entry equals google/ddpm-cifar10-32's UNet config
# (which carries no dropout key) plus the paper's dropout 0.1.
_COMMON: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 2,
    "downsample_padding": 0,  # stride-2 conv with TF "SAME" (asymmetric) padding
    "flip_sin_to_cos": False,  # sin first, then cos
    "freq_shift": 1,
    "norm_eps": 1e-6,
    "norm_num_groups": 32,
    "attention_head_dim": None,  # single-head attention
    "act_fn": "silu",
    "time_embedding_type": "positional",
    "center_input_sample": False,
    "mid_block_scale_factor": 1,
}
PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "cifar10": {
        **_COMMON,
        "sample_size": 32,
        "block_out_channels": (128, 256, 256, 256),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        "dropout": 0.1,
    },
    "celebahq256": {
        **_COMMON,
        "sample_size": 256,
        "block_out_channels": (128, 128, 256, 256, 512, 512),
        "down_block_types": ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
        "dropout": 0.0,
    },
}
PAPER_CONFIGS["lsun256"] = dict(PAPER_CONFIGS["celebahq256"])


def variance_scaling_(weight: torch.Tensor, scale: float) -> None:
    """TF's variance_scaling(scale, "fan_avg", "uniform"), the reference's `default_init`."""
    receptive = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    limit = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        weight.uniform_(-limit, limit)


def reference_init_(model: UNet2DModel) -> UNet2DModel:
    """Initialise like the authors' code: fan_avg uniform everywhere, near-zero (scale 1e-10) for the last layers.

    The near-zero layers are each residual block's second conv, each attention output projection and the output
    conv, so every residual branch starts as the identity; biases start at zero and GroupNorm at (1, 0).
    """
    near_zero = {
        id(m) for name, m in model.named_modules() if name == "conv_out" or name.endswith((".conv2", ".to_out.0"))
    }
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            variance_scaling_(module.weight, 1e-10 if id(module) in near_zero else 1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def check_sample_size(config: Any) -> None:
    """A ValueError naming the sizes that work, unless each side of `sample_size` is divisible by the network's total
    downsampling (2 per down block but the last): otherwise the skip connections' sizes cannot match."""
    factor = 2 ** (len(config.down_block_types) - 1)
    size = config.sample_size
    sides = (size, size) if isinstance(size, int) else tuple(size)
    if any(side % factor for side in sides):
        bad = next(side for side in sides if side % factor)
        below, above = max(factor, bad // factor * factor), (bad // factor + 1) * factor
        raise InputError(
            f"sample_size {size} (--resolution in training) does not fit this network: it halves the image "
            f"{len(config.down_block_types) - 1} times, so each side must be a multiple of {factor} (e.g. {below} or "
            f"{above}, not {bad})"
        )


class DDPMUNet2DModel(UNet2DModel):
    """The paper's U-Net (Appendix B) as a diffusers `UNet2DModel`: same config, same weights layout.

    Checkpoints load both ways with vanilla diffusers: `DDPMUNet2DModel.from_pretrained` reads a `UNet2DModel`
    folder (e.g. google/ddpm-cifar10-32) and `UNet2DModel.from_pretrained` reads ours. Build the paper's networks
    with `from_paper_config`, which also applies the reference initialisation; the plain constructor keeps
    PyTorch's default initialisation, exactly as `UNet2DModel` does. Dropout, attention and the residual
    blocks run through `ddpm_hf.blocks`: the same computation, faster on CPU.
    """

    @functools.wraps(UNet2DModel.__init__)  # keeps the signature diffusers' config machinery reads
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        install_fast_blocks_(self)

    @classmethod
    def paper_config(cls, name: str, **overrides: Any) -> dict[str, Any]:
        """The diffusers config of a paper network (`cifar10`, `celebahq256`, `lsun256`) with `overrides` applied."""
        if name not in PAPER_CONFIGS:
            raise InputError(f"unknown paper config {name!r}; choose one of {sorted(PAPER_CONFIGS)}")
        unknown = set(overrides) - set(inspect.signature(UNet2DModel.__init__).parameters)
        if unknown:
            raise InputError(f"unknown UNet2DModel config keys: {sorted(unknown)}")
        return {**PAPER_CONFIGS[name], **overrides}

    @classmethod
    def from_paper_config(cls, name: str, **overrides: Any) -> DDPMUNet2DModel:
        """A freshly initialised paper network: `DDPMUNet2DModel.from_paper_config("cifar10")` (35,746,307 params)."""
        unet = cls(**cls.paper_config(name, **overrides))
        check_sample_size(unet.config)
        return reference_init_(unet)
