"""Sample grids: many small images as one picture, the way papers and training logs show them."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def uint8_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 [N, C, H, W] pixels (C = 1 or 3) as PIL images: grayscale or RGB."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 [N, 1 or 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
    return [Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).squeeze(-1).numpy())) for image in images.cpu()]


def image_grid(images: list[Image.Image], cols: int | None = None, pad: int = 0, scale: int = 1) -> Image.Image:
    """Images in rows of `cols` (default: as square as possible), `pad` pixels apart, each enlarged `scale` times.

    Gaps and empty cells are mid-gray, so black-background samples stay apart. Upscaling is nearest-neighbour, so
    tiny images (8×8 digits) stay crisp.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].width * scale, images[0].height * scale
    gray = (128,) * len(images[0].getbands())
    grid = Image.new(images[0].mode, (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), gray)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(image.resize((w, h), Image.Resampling.NEAREST), (c * (w + pad), r * (h + pad)))
    return grid
