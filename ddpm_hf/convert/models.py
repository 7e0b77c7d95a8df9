"""The networks the paper's authors released (github.com/hojonathanho/diffusion, "Models and samples" link), with the
network, sampler and figures of each as the paper and the authors' scripts give them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..unet import PAPER_CONFIGS


@dataclass(frozen=True)
class ReleasedModel:
    """A released network: what it is, how to build and sample it, and what the paper says of it."""

    name: str  # e.g. "cifar10", as --model takes it
    title: str  # e.g. "CIFAR-10 (32×32)"
    folder: str  # the release's folder, e.g. "diffusion_cifar10_model" (pytorch_diffusion: "ema_" + it)
    unet_config: dict[str, Any]  # the diffusers UNet2DModel config
    variance_type: str  # the reverse variance the authors sampled it with
    dataset: str | None  # the training data's Hub dataset id, for the card's metadata
    training: str  # markdown: the paper's training setup
    paper_results: str  # markdown: the paper's figures for it


_COMMON_TRAINING = (
    "Adam (default betas, eps 1e-8, no weight decay), learning rate warmed up linearly over 5,000 steps, gradients "
    "clipped to global norm 1, T = 1000 with β linear from 1e-4 to 0.02, L_simple (ε-prediction), EMA decay 0.9999"
)
_TRAINING_256 = (
    "As the paper reports it: batch 64, learning rate 2e-5, dropout 0, {steps} steps; " + _COMMON_TRAINING + "."
)
_LSUN_FIGURES = "FID {fid} on 50,000 samples (the paper's Table 3, for its EMA weights)."


def _lsun(name: str, title: str, folder: str, steps: str, fid: str) -> ReleasedModel:
    return ReleasedModel(
        name=name,
        title=title,
        folder=folder,
        unet_config=PAPER_CONFIGS["lsun256"],
        variance_type="fixed_small",
        dataset=None,
        training=_TRAINING_256.format(steps=steps),
        paper_results=_LSUN_FIGURES.format(fid=fid),
    )


RELEASED_MODELS: dict[str, ReleasedModel] = {
    "cifar10": ReleasedModel(
        name="cifar10",
        title="CIFAR-10 (32×32)",
        folder="diffusion_cifar10_model",
        unet_config=PAPER_CONFIGS["cifar10"],
        variance_type="fixed_large",
        dataset="uoft-cs/cifar10",
        training="As the paper reports it: batch 128, learning rate 2e-4, dropout 0.1, random horizontal flips, "
        f"800k steps; {_COMMON_TRAINING}.",
        paper_results="Inception Score 9.46 ± 0.11; FID 3.17 against the training set (5.24 against the test set), "
        "on 50,000 samples; NLL ≤ 3.75 bits/dim on the test set (3.72 on the training set). The paper's Table 1, "
        "for its EMA weights.",
    ),
    "celeba_hq": ReleasedModel(
        name="celeba_hq",
        title="CelebA-HQ (256×256)",
        folder="diffusion_celeba_hq_model",
        unet_config=PAPER_CONFIGS["celebahq256"],
        variance_type="fixed_small",
        dataset=None,
        training=_TRAINING_256.format(steps="0.5M"),
        paper_results="The paper shows samples of this network and reports no metric for it.",
    ),
    "lsun_church": _lsun("lsun_church", "LSUN Church (256×256)", "diffusion_lsun_church_model", "1.2M", "7.89"),
    "lsun_bedroom": _lsun(
        "lsun_bedroom",
        "LSUN Bedroom (256×256)",
        "diffusion_lsun_bedroom_model",
        "2.4M",
        "6.36 (4.90 for the paper's large bedroom model)",
    ),
    "lsun_cat": _lsun("lsun_cat", "LSUN Cat (256×256)", "diffusion_lsun_cat_model", "1.8M", "19.75"),
}
