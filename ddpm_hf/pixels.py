"""Pixel conversions, in one place: 8-bit pixels ↔ the model's [-1, 1] scale ↔ the pipeline's [0, 1] output ↔ PIL,
quantised as diffusers writes PNGs (round(255 x))."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import InputError

PIXEL_SCALE = 127.5  # [-1, 1] to 0..255


def scale_to_model(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to the model's [-1, 1] as the reference does: x / 127.5 - 1."""
    return x.float() / PIXEL_SCALE - 1.0


def model_to_unit(x: torch.Tensor) -> torch.Tensor:
    """The model's [-1, 1] to [0, 1], clamped: what the pipeline returns."""
    return (x / 2 + 0.5).clamp(0, 1)


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as uint8 pixels (on the CPU), round(255 x) as `numpy_to_pil` quantises them."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8).cpu()


def uint8_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 [N, C, H, W] pixels (C = 1 or 3) as PIL images: grayscale or RGB."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"expected uint8 [N, 1 or 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
    return [Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).squeeze(-1).numpy())) for image in images.cpu()]


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, C, H, W] on the [-1, 1] scale to PIL images."""
    return uint8_to_pil(unit_to_uint8(model_to_unit(images.detach().float().cpu())))
