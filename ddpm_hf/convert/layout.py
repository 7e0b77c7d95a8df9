"""The reference network's layers (hojonathanho/diffusion's `diffusion_tf/models/unet.py`) and where each one lies in
diffusers' `UNet2DModel`.

The reference: `conv_in`, then per resolution level i `down_i` with `block_j` (residual blocks, `attn_j` after each
at the attention resolutions) and `downsample` (all levels but the last); `mid` (`block_1`, `attn_1`, `block_2`);
`up_i` from the last level to the first, with one more block than `down_i` (the skip connections) and `upsample`
(all levels but the first); `norm_out`, `conv_out`; the time embedding `temb` (`dense0`, `dense1`). diffusers numbers
its up blocks from the lowest resolution, so `up_i` is `up_blocks[levels - 1 - i]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# conv: 3×3 conv; dense: fully connected; norm: GroupNorm; attn: a 1×1 projection of the attention block, a Linear
# in diffusers; shortcut: the 1×1 projection of a residual block's skip path (`nin_shortcut`), a 1×1 conv in diffusers.
Kind = Literal["conv", "dense", "norm", "attn", "shortcut"]


@dataclass(frozen=True)
class Layer:
    """One layer: its kind, its diffusers module path, and its path in the reference as (TF scope, PyTorch port
    module path): e.g. ("conv", "down_blocks.0.resnets.0.conv1", "down_0/block_0/conv1", "down.0.block.0.conv1")."""

    kind: Kind
    diffusers: str
    tf: str
    torch: str


@dataclass(frozen=True)
class Architecture:
    """What distinguishes one network of the reference's family from another, in diffusers' terms."""

    block_out_channels: tuple[int, ...]  # ch · ch_mult
    layers_per_block: int  # num_res_blocks
    attention_levels: tuple[int, ...]  # the levels at an attention resolution
    in_channels: int = 3
    out_channels: int = 3

    @classmethod
    def from_unet_config(cls, config: dict[str, Any]) -> Architecture:
        """The architecture of a diffusers `UNet2DModel` config (`ddpm_hf.unet.PAPER_CONFIGS`' entries, say)."""
        attention = tuple(i for i, name in enumerate(config["down_block_types"]) if name.startswith("Attn"))
        return cls(
            tuple(config["block_out_channels"]),
            config["layers_per_block"],
            attention,
            config.get("in_channels", 3),
            config.get("out_channels", 3),
        )

    def unet_config(self, base: dict[str, Any]) -> dict[str, Any]:
        """`base` (a paper config: norms, embedding, padding...) with this architecture's blocks and channels."""
        levels = len(self.block_out_channels)
        down = tuple("AttnDownBlock2D" if i in self.attention_levels else "DownBlock2D" for i in range(levels))
        up = tuple(name.replace("Down", "Up") for name in reversed(down))
        return {
            **base,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "down_block_types": down,
            "up_block_types": up,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
        }

    def differences(self, other: Architecture) -> list[str]:
        """'field: ours vs theirs' for each field that differs."""
        return [
            f"{name}: {getattr(self, name)} vs {getattr(other, name)}"
            for name in self.__dataclass_fields__
            if getattr(self, name) != getattr(other, name)
        ]


def _at(tf: str, torch: str, name: str) -> tuple[str, str]:
    """A sublayer's (TF, PyTorch port) paths."""
    return f"{tf}/{name}", f"{torch}.{name}"


def _resnet(diffusers: str, tf: str, torch: str, shortcut: bool) -> list[Layer]:
    layers = [
        Layer("norm", f"{diffusers}.norm1", *_at(tf, torch, "norm1")),
        Layer("conv", f"{diffusers}.conv1", *_at(tf, torch, "conv1")),
        Layer("dense", f"{diffusers}.time_emb_proj", *_at(tf, torch, "temb_proj")),
        Layer("norm", f"{diffusers}.norm2", *_at(tf, torch, "norm2")),
        Layer("conv", f"{diffusers}.conv2", *_at(tf, torch, "conv2")),
    ]
    if shortcut:  # the reference projects the skip path only where the channel count changes
        layers.append(Layer("shortcut", f"{diffusers}.conv_shortcut", *_at(tf, torch, "nin_shortcut")))
    return layers


def _attention(diffusers: str, tf: str, torch: str) -> list[Layer]:
    names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    return [
        Layer("norm" if ours == "group_norm" else "attn", f"{diffusers}.{ours}", *_at(tf, torch, theirs))
        for ours, theirs in names.items()
    ]


def layers(arch: Architecture) -> list[Layer]:
    """Every layer of the network, in the reference's order."""
    channels, blocks, levels = arch.block_out_channels, arch.layers_per_block, len(arch.block_out_channels)
    out = [
        Layer("dense", "time_embedding.linear_1", "temb/dense0", "temb.dense.0"),
        Layer("dense", "time_embedding.linear_2", "temb/dense1", "temb.dense.1"),
        Layer("conv", "conv_in", "conv_in", "conv_in"),
    ]
    skips = [channels[0]]  # the channels of each activation the up path concatenates, as the reference's `hs`
    for i in range(levels):
        block_in = channels[i - 1] if i else channels[0]  # conv_in gives channels[0]
        ours = f"down_blocks.{i}"
        for j in range(blocks):
            tf, torch = f"down_{i}/block_{j}", f"down.{i}.block.{j}"
            out += _resnet(f"{ours}.resnets.{j}", tf, torch, shortcut=block_in != channels[i])
            block_in = channels[i]
            if i in arch.attention_levels:
                out += _attention(f"{ours}.attentions.{j}", f"down_{i}/attn_{j}", f"down.{i}.attn.{j}")
            skips.append(channels[i])
        if i != levels - 1:
            tf, torch = f"down_{i}/downsample/conv", f"down.{i}.downsample.conv"
            out.append(Layer("conv", f"{ours}.downsamplers.0.conv", tf, torch))
            skips.append(channels[i])
    out += _resnet("mid_block.resnets.0", "mid/block_1", "mid.block_1", shortcut=False)
    out += _attention("mid_block.attentions.0", "mid/attn_1", "mid.attn_1")
    out += _resnet("mid_block.resnets.1", "mid/block_2", "mid.block_2", shortcut=False)
    h = channels[-1]
    for i in reversed(range(levels)):
        ours = f"up_blocks.{levels - 1 - i}"
        for j in range(blocks + 1):
            tf, torch = f"up_{i}/block_{j}", f"up.{i}.block.{j}"
            out += _resnet(f"{ours}.resnets.{j}", tf, torch, shortcut=h + skips.pop() != channels[i])
            h = channels[i]
            if i in arch.attention_levels:
                out += _attention(f"{ours}.attentions.{j}", f"up_{i}/attn_{j}", f"up.{i}.attn.{j}")
        if i != 0:
            out.append(Layer("conv", f"{ours}.upsamplers.0.conv", f"up_{i}/upsample/conv", f"up.{i}.upsample.conv"))
    out += [Layer("norm", "conv_norm_out", "norm_out", "norm_out"), Layer("conv", "conv_out", "conv_out", "conv_out")]
    return out
