"""What the demo shows: enlarged image grids, the samples as downloads, and the bound's plots."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import torch
from PIL import Image

from ..analysis import RateDistortion
from ..grid import image_grid
from ..pixels import to_pil

DISPLAY_PX = 64  # images are enlarged (nearest neighbour) to at least this many pixels a side


def display(images: torch.Tensor | list[Image.Image], cols: int | None = None) -> Image.Image:
    """Images (on [-1, 1], values outside clipped as for x_t; or PIL images) as one enlarged grid."""
    pil = images if isinstance(images, list) else to_pil(images)
    scale = max(1, math.ceil(DISPLAY_PX / pil[0].width))
    return image_grid(pil, cols=cols, pad=1 if len(pil) > 1 else 0, scale=scale)  # cols: as square as possible


def save_downloads(images: list[Image.Image], grid: Image.Image, folder: str | Path) -> list[str]:
    """The samples as PNGs at the model's resolution in a zip, and the grid the page shows."""
    archive, grid_path = Path(folder, "samples.zip"), Path(folder, "samples_grid.png")
    with zipfile.ZipFile(archive, "w") as zf:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            zf.writestr(f"sample_{i:03d}.png", buffer.getvalue())
    grid.save(grid_path)
    return [str(grid_path), str(archive)]


def terms_plot(terms: torch.Tensor):
    """The bound's per-t terms in bits/dim, L_0 … L_(T-1), on a log scale."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), layout="constrained")
    ax = figure.add_subplot()
    ax.semilogy(range(len(terms)), terms.clamp_min(1e-12).numpy(), lw=1)
    ax.set(xlabel="t", ylabel="L_t, bits/dim (L_0: the decoder)")
    return figure


def rd_plot(rd: RateDistortion):
    """Distortion against rate, and both against the reverse steps received, as the paper's Fig. 5."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.2), layout="constrained")
    ax1, ax2 = figure.subplots(1, 2)
    ax1.plot(rd.rate, rd.distortion, lw=1)
    ax1.set(xlabel="rate (bits/dim)", ylabel="distortion (RMSE, 0..255)")
    ax2.plot(rd.reverse_steps, rd.distortion, lw=1, label="distortion")
    ax2.set(xlabel="reverse steps received", ylabel="RMSE (0..255)")
    ax3 = ax2.twinx()
    ax3.plot(rd.reverse_steps, rd.rate, lw=1, color="tab:orange", label="rate")
    ax3.set_ylabel("bits/dim")
    return figure
