"""CLIP image embeddings and CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for
Image Generation"): the squared MMD between the samples' and the reference's CLIP embeddings under a Gaussian
kernel, as their released code computes it.

Embeddings as in their code: `transformers`' `CLIPVisionModelWithProjection` (default
`openai/clip-vit-large-patch14-336`, ViT-L/14 at 336 px) on images resized bicubically to the network's input size
(no crop) and normalised with CLIP's mean and standard deviation; the projected `image_embeds`, scaled to unit
length. Their code resizes float images with TF's bicubic resize; here PIL's bicubic filter on the 8-bit image
does it, as for DINOv2 (an approximation of theirs, not bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .defaults import DEFAULT_CLIP
from .dinov2 import EncoderWeightsError, HubImageEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGMA = 10.0  # the Gaussian kernel's bandwidth, as in the paper
SCALE = 1000.0  # the paper reports 1000 × MMD² for readability


class CLIPWeightsError(EncoderWeightsError):
    """The CLIP weights are neither a local folder nor in the Hub cache, and cannot be downloaded now."""


class CLIP(HubImageEncoder):
    """CLIP's projected image embeddings, unit length, of uint8 NCHW images (1 or 3 channels)."""

    name = "clip"
    network_class = "CLIPVisionModelWithProjection"
    mean, std = CLIP_MEAN, CLIP_STD
    what, flag, weights_error = "CLIP", "--clip_model", CLIPWeightsError
    default_model = DEFAULT_CLIP  # its input size, 336, is the network's own (`HubImageEncoder.input_size`)

    @property
    def dim(self) -> int:
        return int(self.net.config.projection_dim)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeds = self.net(pixel_values=pixel_values).image_embeds
        return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)


def gaussian_kernel_mean(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, block: int = 4096) -> float:
    """The mean of exp(−‖x_i − y_j‖² / 2σ²) over every pair of rows (diagonal included), in float64 blocks."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    y_sq, total = (y * y).sum(axis=1), 0.0
    for start in range(0, len(x), block):
        part = x[start : start + block]
        squared = (part * part).sum(axis=1)[:, None] + y_sq[None, :] - 2.0 * part @ y.T
        total += float(np.exp(-np.maximum(squared, 0.0) / (2.0 * sigma**2)).sum())
    return total / (len(x) * len(y))


def cmmd(samples: np.ndarray, reference: np.ndarray, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """CMMD: `scale` × MMD² of two sets of CLIP embeddings, the means over all pairs as their code takes them."""
    if len(samples) < 1 or len(reference) < 1:
        raise InputError("CMMD needs embeddings of at least one image on each side")
    k_xx = gaussian_kernel_mean(samples, samples, sigma)
    k_yy = gaussian_kernel_mean(reference, reference, sigma)
    k_xy = gaussian_kernel_mean(samples, reference, sigma)
    return scale * (k_xx + k_yy - 2.0 * k_xy)
