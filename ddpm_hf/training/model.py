"""The network and the diffusion a run trains, from its config."""

from __future__ import annotations

import inspect

from diffusers import UNet2DModel

from ..scheduler import DDPMPaperScheduler
from ..unet import DDPMUNet2DModel
from .config import TrainConfig


def build_unet(cfg: TrainConfig) -> DDPMUNet2DModel:
    """The paper network `cfg.model` with the reference initialisation, overridden by `--model_config_name_or_path`
    (diffusers' flag: a UNet2DModel config to train) and `--unet_config`; its sample_size is `--resolution`."""
    loaded = {}
    if cfg.model_config_name_or_path:
        keys = set(inspect.signature(UNet2DModel.__init__).parameters) - {"self"}
        loaded = {k: v for k, v in UNet2DModel.load_config(cfg.model_config_name_or_path).items() if k in keys}
    overrides = {**loaded, **cfg.unet_config, "sample_size": cfg.resolution, "dropout": cfg.dropout}
    return DDPMUNet2DModel.from_paper_config(cfg.model, **overrides)


def build_scheduler(cfg: TrainConfig) -> DDPMPaperScheduler:
    """The forward process and the sampler of the run (it refuses what the paper does not do, saying why)."""
    return DDPMPaperScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        variance_type=cfg.variance_type,
        prediction_type=cfg.prediction_type,
    )
