"""Which network a checkpoint holds: its architecture, read from the stored layers, and the released model it is."""

from __future__ import annotations

from pathlib import Path

from .layout import Architecture, Layer
from .models import RELEASED_MODELS, ReleasedModel
from .sources import ConversionError, SourceWeights


def _conv(tf: str, torch: str) -> Layer:
    return Layer("conv", "", tf, torch)


def infer_architecture(weights: SourceWeights) -> Architecture:
    """The architecture the stored layers describe: levels and blocks by the layers present, channels by their
    shapes, attention levels by their attention layers."""
    conv_in = weights.channels(_conv("conv_in", "conv_in"))
    conv_out = weights.channels(_conv("conv_out", "conv_out"))
    if conv_in is None or conv_out is None:
        raise ConversionError(
            f"{weights.path} has no conv_in or conv_out layer: not a network of the reference's U-Net family"
        )
    levels = 0
    while weights.channels(_conv(f"down_{levels}/block_0/conv1", f"down.{levels}.block.0.conv1")):
        levels += 1
    blocks = 0
    while weights.channels(_conv(f"down_0/block_{blocks}/conv1", f"down.0.block.{blocks}.conv1")):
        blocks += 1
    if not levels:
        raise ConversionError(f"{weights.path} has no residual block down_0/block_0: not a network of the reference's")
    channels = tuple(
        weights.channels(_conv(f"down_{i}/block_0/conv1", f"down.{i}.block.0.conv1"))[0] for i in range(levels)
    )
    if conv_in[0] != channels[0]:
        raise ConversionError(
            f"{weights.path}: conv_in has {conv_in[0]} channels but the first level {channels[0]}; diffusers' "
            "UNet2DModel needs them equal (ch_mult[0] = 1, as in every network of the paper)"
        )
    attention = tuple(
        i for i in range(levels) if weights.channels(Layer("attn", "", f"down_{i}/attn_0/q", f"down.{i}.attn.0.q"))
    )
    return Architecture(channels, blocks, attention, in_channels=conv_in[1], out_channels=conv_out[0])


def model_named_by(path: Path, candidates: list[ReleasedModel]) -> ReleasedModel | None:
    """The released model whose folder name (diffusion_<name>_model) the checkpoint's path contains, if one does."""
    named = [m for m in candidates if any(m.folder in part for part in path.parts)]
    return named[0] if len(named) == 1 else None


def identify_model(
    arch: Architecture,
    path: Path,
    model: str | ReleasedModel | None = None,
    released: dict[str, ReleasedModel] | None = None,
) -> ReleasedModel:
    """The released model the checkpoint at `path` is: `model` (a name of `released`, default `RELEASED_MODELS`, or
    a `ReleasedModel`), else the one its path names, else the only one of that architecture. Refuses a checkpoint
    whose architecture differs from the model's, whose path names another model, or that cannot be told."""
    released = RELEASED_MODELS if released is None else released
    if isinstance(model, str):
        if model not in released:
            raise ConversionError(f"unknown model {model!r}; the released ones are {', '.join(released)}")
        model = released[model]
    candidates = list(released.values()) + ([model] if model is not None and model not in released.values() else [])
    named = model_named_by(path, candidates)
    if model is None:
        fitting = [m for m in released.values() if Architecture.from_unet_config(m.unet_config) == arch]
        if named is None and len(fitting) > 1:
            raise ConversionError(
                f"{path} holds a network of the architecture of {', '.join(m.name for m in fitting)}, which the "
                "weights cannot tell apart, and its path names none of their folders: name the model (--model)"
            )
        model = named or (fitting[0] if fitting else None)
        if model is None:
            raise ConversionError(
                f"{path} holds a network of none of the released models' architectures ({describe(arch)}): "
                f"not one of {', '.join(released)}"
            )
    elif named is not None and named.name != model.name:
        raise ConversionError(
            f"{path} lies in a folder of the {named.name} release ({named.folder}), but model {model.name!r} was "
            "named: name the model the checkpoint is, or rename its folder if it is misnamed"
        )
    expected = Architecture.from_unet_config(model.unet_config)
    if arch != expected:
        raise ConversionError(
            f"{path} is not the {model.name} network: {'; '.join(arch.differences(expected))} (this checkpoint vs "
            f"{model.name}'s)"
        )
    return model


def describe(arch: Architecture) -> str:
    return (
        f"channels {arch.block_out_channels}, {arch.layers_per_block} blocks a level, attention at levels "
        f"{arch.attention_levels}, {arch.in_channels} → {arch.out_channels} image channels"
    )
