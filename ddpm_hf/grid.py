"""Sample grids: many small images as one picture, the way papers and training logs show them."""

from __future__ import annotations

import math

from PIL import Image

from .errors import InputError
from .pixels import uint8_to_pil  # noqa: F401 (re-exported beside image_grid, which takes its images)


def image_grid(images: list[Image.Image], cols: int | None = None, pad: int = 0, scale: int = 1) -> Image.Image:
    """Images in rows of `cols` (default: as square as possible), `pad` pixels apart, each enlarged `scale` times.

    Gaps and empty cells are mid-gray, so black-background samples stay apart. Upscaling is nearest-neighbour, so
    tiny images (8×8 digits) stay crisp.
    """
    if not images:
        raise InputError("image_grid needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].width * scale, images[0].height * scale
    gray = (128,) * len(images[0].getbands())
    grid = Image.new(images[0].mode, (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), gray)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(image.resize((w, h), Image.Resampling.NEAREST), (c * (w + pad), r * (h + pad)))
    return grid
