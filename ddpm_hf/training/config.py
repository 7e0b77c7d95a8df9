"""The training configuration: one dataclass, the paper's presets, and the command line built from both."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; presets fill it with the paper's values and every field is a flag."""

    # data
    dataset_name: str | None = None  # Hub id, local path read by datasets.load_dataset, or "sklearn-digits"
    train_data_dir: str | None = None  # a folder of images (datasets' imagefolder)
    dataset_split: str = "train"
    image_column: str | None = None  # default: "image" or "img", whichever exists
    resolution: int = 32
    random_flip: bool = True
    skip_bad_images: bool = False
    dataloader_num_workers: int = 0
    # model and diffusion
    model: str = "cifar10"  # a DDPMUNet2DModel.from_paper_config name
    unet_config: dict[str, Any] = field(default_factory=dict)  # overrides of that config
    dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    variance_type: str = "fixed_large"
    loss: str = "simple"  # "simple": L_simple (Eq. 14); "vlb": the true bound L (Table 2)
    # optimisation
    train_batch_size: int = 128  # the global batch, split over processes and accumulation steps
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_warmup_steps: int = 5000
    max_grad_norm: float = 1.0
    ema_decay: float = 0.9999
    max_train_steps: int = 800_000
    mixed_precision: str = "no"  # "no", "bf16" or "fp16", through Accelerate
    gradient_checkpointing: bool = False  # recompute each block's activations in the backward: less memory
    seed: int = 0
    # output
    output_dir: str = "runs/ddpm"
    checkpointing_steps: int = 5000
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    save_images_steps: int = 10_000  # 0: no sample grids
    num_grid_images: int = 64
    num_inference_steps: int = 1000  # for the sample grids
    save_pipeline_steps: int = 0  # 0: only at the end
    logging_steps: int = 10
    report_to: str | None = None  # "tensorboard", "wandb", ... (Accelerate trackers)
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def __post_init__(self) -> None:
        checks = {
            "loss": self.loss in ("simple", "vlb"),
            "mixed_precision": self.mixed_precision in ("no", "bf16", "fp16"),
            "train_batch_size": self.train_batch_size > 0,
            "gradient_accumulation_steps": self.gradient_accumulation_steps > 0,
            "max_train_steps": self.max_train_steps > 0,
            "checkpointing_steps": self.checkpointing_steps > 0,
            "resolution": self.resolution > 0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "checkpoints_total_limit": self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid {bad[0]}: {getattr(self, bad[0])!r}")
        if self.dataset_name is not None and self.train_data_dir is not None:
            raise ValueError("pass only one of --dataset_name and --train_data_dir")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PAPER_256 = {
    "model": "celebahq256",
    "resolution": 256,
    "dropout": 0.0,
    "train_batch_size": 64,
    "learning_rate": 2e-5,
    "variance_type": "fixed_small",  # the 256×256 models sample with β̃_t
    "num_grid_images": 16,
}
PRESETS: dict[str, dict[str, Any]] = {
    # Table/Appendix B of the paper: batch 128, Adam 2e-4, warmup 5000, clip 1.0, dropout 0.1, flip, EMA 0.9999.
    "cifar10": {"dataset_name": "cifar10", "max_train_steps": 800_000},
    "celebahq256": {**_PAPER_256, "max_train_steps": 500_000},
    "lsun256": {**_PAPER_256, "model": "lsun256", "max_train_steps": 1_200_000},  # church; bedroom: --random_flip false
    # A small model on scikit-learn's bundled 8×8 digits: minutes on a 2-core CPU, recognisable samples.
    "digits": {
        "dataset_name": "sklearn-digits",
        "resolution": 8,
        "random_flip": False,  # digits are not mirror-symmetric
        "unet_config": {
            "sample_size": 8,
            "in_channels": 1,
            "out_channels": 1,
            "block_out_channels": (64, 128),
            "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
            "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
            "layers_per_block": 1,
        },
        "dropout": 0.0,
        "train_batch_size": 64,
        "learning_rate": 1e-3,
        "lr_warmup_steps": 100,
        "ema_decay": 0.995,
        "max_train_steps": 2000,
        "checkpointing_steps": 1000,
        "save_images_steps": 1000,
        "num_grid_images": 64,
        "output_dir": "runs/digits",
    },
}


HELP = {
    "dataset_name": "Hub id or local path for datasets.load_dataset, or sklearn-digits",
    "train_data_dir": "a folder of images (replaces the preset's dataset)",
    "unet_config": "JSON object of UNet2DModel config overrides",
    "loss": "simple (L_simple, Eq. 14) or vlb (the true bound, Table 2)",
    "train_batch_size": "global batch, split over processes and accumulation steps",
    "mixed_precision": "no, bf16 or fp16",
    "gradient_checkpointing": "recompute each U-Net block's activations in the backward: far less memory, more time",
    "resume_from_checkpoint": "latest or a checkpoint folder",
    "save_images_steps": "sample grid every N steps; 0 turns grids off",
    "num_inference_steps": "sampling steps for the grids",
    "save_pipeline_steps": "also save the EMA pipeline every N steps; 0: only at the end",
    "checkpoints_total_limit": "keep this many checkpoints; none keeps all",
    "report_to": "an Accelerate tracker, e.g. tensorboard",
}


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _parser(defaults: TrainConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a DDPM with the paper's recipe (Ho et al. 2020) through Accelerate.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cifar10", help="the paper's hyperparameters")
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        kind = {bool: _parse_bool, int: int, float: float}.get(type(default), str)
        if f.name in ("unet_config",):
            kind, default = json.loads, json.dumps(default)
        elif f.name == "checkpoints_total_limit":
            kind = _parse_optional_int
        parser.add_argument(
            f"--{f.name}", type=kind, default=default, help=f"{HELP.get(f.name, '')} (default: %(default)s)"
        )
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line; `--preset` picks the defaults, so `--preset digits --help` shows the digits values."""
    preset_parser = argparse.ArgumentParser(add_help=False)
    preset_parser.add_argument("--preset", choices=sorted(PRESETS), default="cifar10")
    preset = preset_parser.parse_known_args(argv)[0].preset
    defaults = preset_config(preset)
    args = vars(_parser(defaults).parse_args(argv))
    args.pop("preset")
    given = sys.argv[1:] if argv is None else argv
    if args["train_data_dir"] is not None and not any(a.startswith("--dataset_name") for a in given):
        args["dataset_name"] = None  # a folder of images replaces the preset's dataset
    return TrainConfig(**args)


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset's TrainConfig with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})
