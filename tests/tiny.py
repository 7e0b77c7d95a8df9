"""Tiny models shared by the tests: the paper's architecture at toy size, fast on a CPU."""

import torch

from ddpm_hf import DDPMPaperPipeline, DDPMPaperScheduler, DDPMUNet2DModel

TINY_UNET = {
    "sample_size": 8,
    "block_out_channels": (32, 32),
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "dropout": 0.0,
}


def tiny_unet(seed: int = 0, perturb: float = 0.05) -> DDPMUNet2DModel:
    """A tiny paper U-Net whose near-zero layers are perturbed, so that its output depends on its input."""
    torch.manual_seed(seed)
    unet = DDPMUNet2DModel.from_paper_config("cifar10", **TINY_UNET)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(perturb * torch.randn_like(p))
    return unet.eval()


def tiny_pipeline(variance_type: str = "fixed_large", seed: int = 0) -> DDPMPaperPipeline:
    pipe = DDPMPaperPipeline(unet=tiny_unet(seed), scheduler=DDPMPaperScheduler(variance_type=variance_type))
    pipe.set_progress_bar_config(disable=True)
    return pipe
