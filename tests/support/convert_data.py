"""The conversion tests' fixtures (tests/data/convert/, made by its scripts from the reference implementations): the
tiny network's files, its `ReleasedModel`, and its outputs."""

from pathlib import Path

import numpy as np
import torch

from ddpm_hf.convert import ReleasedModel
from ddpm_hf.unet import PAPER_CONFIGS

DATA = Path(__file__).resolve().parents[1] / "data" / "convert"
TF_DIR = DATA / "tf"
TF_PREFIX = TF_DIR / "model.ckpt-3"
TORCH_FILE = DATA / "pytorch" / "ema_diffusion_tiny_model" / "model-3.ckpt"
TF_OUTPUTS = dict(np.load(TF_DIR / "reference_outputs.npz"))
TORCH_OUTPUTS = dict(np.load(DATA / "pytorch" / "reference_outputs.npz"))

# The fixtures' network (ch 32, ch_mult (1, 1), 1 block a level, attention at 4×4 of 8×8) as a released model would
# be described; fixed_small, so that a test can tell the model's variance from the CIFAR-10 default.
TINY = ReleasedModel(
    name="tiny",
    title="Tiny (8×8)",
    folder="diffusion_tiny_model",
    unet_config={
        **PAPER_CONFIGS["cifar10"],
        "sample_size": 8,
        "block_out_channels": (32, 32),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "dropout": 0.0,
    },
    variance_type="fixed_small",
    dataset=None,
    training="Random weights, for tests.",
    paper_results="The paper reports FID 1.23 for this network.",
)


def eps(unet: torch.nn.Module, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The network's ε-prediction on a fixture's inputs x, t."""
    with torch.no_grad():
        return unet(torch.from_numpy(outputs["x"]), torch.from_numpy(outputs["t"])).sample.numpy()
