"""The training configuration: one dataclass, the paper's presets, and the command line built from both.

Every field is a flag with a help line; where diffusers' `train_unconditional.py` spells a flag otherwise, its
spelling is an alias (`--logger`, `--ddpm_num_steps`, ...), so a command copied from diffusers' docs runs. Flags of
that script whose meaning differs here are refused with the reason (`DIFFUSERS_ONLY`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..checks import check_choice
from ..errors import InputError
from .optim import LR_SCHEDULES

MixedPrecision = Literal["no", "fp16", "bf16"]


def _flag(default: Any, help: str, *aliases: str) -> Any:
    """A config field: its default, its help line and any other spellings of its flag (diffusers' names)."""
    return field(default=default, metadata={"help": help, "aliases": aliases})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; presets fill it with the paper's values and every field is a flag."""

    # data
    dataset_name: str | None = _flag(
        None, "a Hub dataset id, a local path datasets.load_dataset reads, or sklearn-digits"
    )
    dataset_config_name: str | None = _flag(None, "the dataset's configuration name, if it has several")
    train_data_dir: str | None = _flag(None, "a folder of images (replaces the preset's dataset)")
    dataset_split: str = _flag("train", "the split to train on")
    image_column: str | None = _flag(None, "the image column (default: image or img, whichever exists)")
    cache_dir: str | None = _flag(None, "where datasets caches downloads")
    resolution: int = _flag(32, "image size; the network's sample_size follows it")
    center_crop: bool = _flag(True, "resize the shorter side, then center-crop (the only crop implemented)")
    random_flip: bool = _flag(True, "random horizontal flips (the paper's CIFAR-10 augmentation)")
    skip_bad_images: bool = _flag(False, "skip unreadable images (reported by file) instead of stopping")
    dataloader_num_workers: int = _flag(0, "image-decoding processes")
    # model and diffusion
    model: str = _flag("cifar10", "the paper network to start from: cifar10, celebahq256 or lsun256")
    model_config_name_or_path: str | None = _flag(None, "a UNet2DModel config (folder or config.json) to train instead")
    unet_config: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "JSON object of UNet2DModel config overrides", "aliases": ()}
    )
    dropout: float = _flag(0.1, "dropout in the residual blocks (Appendix B)")
    num_train_timesteps: int = _flag(1000, "T, the length of the diffusion", "--ddpm_num_steps")
    beta_start: float = _flag(1e-4, "β_1 of the linear schedule")
    beta_end: float = _flag(0.02, "β_T of the linear schedule")
    beta_schedule: str = _flag("linear", "only linear, the paper's", "--ddpm_beta_schedule")
    variance_type: str = _flag("fixed_large", "the reverse process's σ_t²: fixed_large (β_t) or fixed_small (β̃_t)")
    prediction_type: str = _flag("epsilon", "only epsilon, the paper's parameterisation (Eq. 11)")
    loss: str = _flag("simple", "simple (L_simple, Eq. 14) or vlb (the true bound, Table 2)")
    # optimisation
    train_batch_size: int = _flag(128, "the GLOBAL batch, split over processes and accumulation steps (not per device)")
    gradient_accumulation_steps: int = _flag(1, "micro-batches per optimizer step")
    learning_rate: float = _flag(2e-4, "Adam's learning rate after warm-up")
    lr_scheduler: str = _flag("constant_with_warmup", f"the learning-rate schedule: {', '.join(LR_SCHEDULES)}")
    lr_warmup_steps: int = _flag(5000, "linear warm-up steps")
    adam_beta1: float = _flag(0.9, "Adam's β1")
    adam_beta2: float = _flag(0.999, "Adam's β2")
    adam_weight_decay: float = _flag(0.0, "decoupled weight decay (AdamW); the paper uses none")
    adam_epsilon: float = _flag(1e-8, "Adam's ε")
    max_grad_norm: float = _flag(1.0, "gradient-norm clipping")
    use_ema: bool = _flag(True, "keep an exponential moving average of the weights and export it")
    ema_decay: float = _flag(0.9999, "the EMA decay (its maximum with --ema_warmup)", "--ema_max_decay")
    ema_warmup: bool = _flag(False, "diffusers' EMA warm-up 1 - (1 + step/inv_gamma)^-power instead of a constant")
    ema_inv_gamma: float = _flag(1.0, "the warm-up's inv_gamma")
    ema_power: float = _flag(0.75, "the warm-up's power")
    ema_min_decay: float = _flag(0.0, "the warm-up's lowest decay")
    max_train_steps: int = _flag(800_000, "optimizer steps to train for")
    num_epochs: int | None = _flag(None, "train for this many passes over the data instead of --max_train_steps")
    mixed_precision: str | None = _flag(
        None, "no, fp16 or bf16; unset: Accelerate's setting (accelerate config/launch)"
    )
    gradient_checkpointing: bool = _flag(False, "recompute each U-Net block in the backward: far less memory")
    seed: int = _flag(0, "seeds the weights, the data order, timesteps and noise")
    # output
    output_dir: str = _flag("runs/ddpm", "where the pipeline, checkpoints, grids and logs go")
    checkpointing_steps: int = _flag(5000, "save a resumable checkpoint every N steps")
    checkpoints_total_limit: int | None = _flag(3, "keep this many checkpoints; none keeps all")
    resume_from_checkpoint: str | None = _flag(None, "latest, checkpoint-N (in the output folder) or a checkpoint path")
    resume_on_other_data: bool = _flag(False, "resume even where the data differs from the checkpoint's (said)")
    overwrite_output_dir: bool = _flag(
        False, "start anew in an --output_dir that holds a run, first moving that run aside (never deleting it)"
    )
    save_images_steps: int = _flag(10_000, "a sample grid every N steps; 0: none")
    save_images_epochs: int | None = _flag(None, "a sample grid every N epochs (replaces --save_images_steps)")
    num_grid_images: int = _flag(64, "samples in each grid", "--eval_batch_size")
    num_inference_steps: int = _flag(1000, "sampling steps for the grids", "--ddpm_num_inference_steps")
    save_pipeline_steps: int = _flag(0, "also save the EMA pipeline every N steps; 0: only at the end")
    save_model_epochs: int | None = _flag(None, "save the EMA pipeline every N epochs (replaces --save_pipeline_steps)")
    logging_steps: int = _flag(10, "log loss, lr, grad norm and EMA decay every N steps")
    logging_dir: str = _flag("logs", "tracker logs, inside the output folder")
    report_to: str | None = _flag(None, "an Accelerate tracker: tensorboard, wandb, ...", "--logger")
    push_to_hub: bool = _flag(False, "push the final pipeline, card and samples (never checkpoints) to the Hub")
    hub_model_id: str | None = _flag(None, "the Hub repo (default: the output folder's name, in your namespace)")
    hub_private_repo: bool = _flag(False, "create the Hub repo private", "--hub_private")
    hub_token: str | None = _flag(None, "a Hub token (default: HF_TOKEN or the stored login)")

    def __post_init__(self) -> None:
        positive = ("resolution", "train_batch_size", "gradient_accumulation_steps", "max_train_steps")
        positive += ("checkpointing_steps", "num_train_timesteps", "num_grid_images", "num_inference_steps")
        positive += ("logging_steps",)
        non_negative = ("lr_warmup_steps", "save_images_steps", "save_pipeline_steps", "dataloader_num_workers")
        optional_positive = ("num_epochs", "save_images_epochs", "save_model_epochs", "checkpoints_total_limit")
        checks = {name: _is_int(getattr(self, name), 1) for name in positive}
        checks |= {name: _is_int(getattr(self, name), 0) for name in non_negative}
        checks |= {name: getattr(self, name) is None or _is_int(getattr(self, name), 1) for name in optional_positive}
        checks |= {
            "learning_rate": _is_number(self.learning_rate) and self.learning_rate > 0,
            "adam_beta1": _is_number(self.adam_beta1) and 0 <= self.adam_beta1 < 1,
            "adam_beta2": _is_number(self.adam_beta2) and 0 <= self.adam_beta2 < 1,
            "adam_epsilon": _is_number(self.adam_epsilon) and self.adam_epsilon > 0,
            "adam_weight_decay": _is_number(self.adam_weight_decay) and self.adam_weight_decay >= 0,
            "max_grad_norm": _is_number(self.max_grad_norm) and self.max_grad_norm > 0,
            "dropout": _is_number(self.dropout) and 0 <= self.dropout < 1,
            "ema_decay": _is_number(self.ema_decay) and 0 <= self.ema_decay < 1,
            "ema_min_decay": _is_number(self.ema_min_decay) and 0 <= self.ema_min_decay <= self.ema_decay,
            "ema_inv_gamma": _is_number(self.ema_inv_gamma) and self.ema_inv_gamma > 0,
            "ema_power": _is_number(self.ema_power) and self.ema_power > 0,
            "beta_start": _is_number(self.beta_start) and 0 < self.beta_start < 1,
            "beta_end": _is_number(self.beta_end) and 0 < self.beta_end < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"invalid --{bad[0]}: {getattr(self, bad[0])!r}")
        if self.num_inference_steps > self.num_train_timesteps:  # the grids' chain: checked before training
            raise InputError(
                f"invalid --num_inference_steps: {self.num_inference_steps} (the grids' sampler takes at most "
                f"--num_train_timesteps = {self.num_train_timesteps} steps)"
            )
        check_choice("loss", self.loss, ("simple", "vlb"))
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULES)
        if self.mixed_precision is not None:
            check_choice("mixed_precision", self.mixed_precision, MixedPrecision)
        if not self.center_crop:
            raise InputError(
                "--center_crop false: random crops are not implemented; images are resized and center-cropped"
            )
        if self.dataset_name is not None and self.train_data_dir is not None:
            raise InputError("pass only one of --dataset_name and --train_data_dir")
        size = self.unet_config.get("sample_size")
        if size is not None and size != self.resolution:
            raise InputError(
                f"--unet_config sets sample_size={size} but --resolution is {self.resolution}: the network would "
                "sample images of another size than it trains on; drop sample_size (it follows --resolution)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting but the Hub token, which never reaches train_config.json or the model card."""
        return {k: v for k, v in asdict(self).items() if k != "hub_token"}


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    # Its CPU time buys many steps of a narrow network, decayed to zero, rather than few of a wide one at a
    # constant rate: more recognisable digits in the same minutes (the trials are in docs/benchmarks.md).
    "digits": {
        "dataset_name": "sklearn-digits",
        "resolution": 8,
        "random_flip": False,  # digits are not mirror-symmetric
        "unet_config": {
            "in_channels": 1,
            "out_channels": 1,
            "block_out_channels": (32, 64),
            "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
            "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
            "layers_per_block": 1,
        },
        "dropout": 0.0,
        "train_batch_size": 64,
        "learning_rate": 2e-3,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 100,
        "ema_decay": 0.998,
        "max_train_steps": 6000,
        "checkpointing_steps": 3000,
        "save_images_steps": 3000,
        "num_grid_images": 64,
        "output_dir": "runs/digits",
    },
}

# Flags of diffusers' train_unconditional.py whose meaning differs here, and what to do instead.
DIFFUSERS_ONLY = {
    "--enable_xformers_memory_efficient_attention": "attention already runs through PyTorch's fused kernels here",
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
        description="Train a DDPM with the paper's recipe (Ho et al. 2020) through Accelerate. Flags spelled as in "
        "diffusers' train_unconditional.py mean the same here; defaults below are the chosen preset's.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cifar10", help="the paper's hyperparameters")
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        kind: Any = {bool: _parse_bool, int: int, float: float}.get(type(f.default), str)
        extra: dict[str, Any] = {}
        if f.name == "unet_config":
            kind, default = json.loads, json.dumps(default)
        elif f.name in ("checkpoints_total_limit", "num_epochs", "save_images_epochs", "save_model_epochs"):
            kind = _parse_optional_int
        elif isinstance(f.default, bool):
            extra = {"nargs": "?", "const": True, "metavar": "true|false"}  # a bare switch, or an explicit value
        names = [f"--{f.name}", *f.metadata.get("aliases", ())]
        parser.add_argument(
            *names,
            dest=f.name,
            type=kind,
            default=default,
            help=f"{f.metadata['help']} (default: %(default)s)",
            **extra,
        )
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by old launchers
    for name, why in DIFFUSERS_ONLY.items():
        parser.add_argument(name, nargs="?", action=_Refuse, help=f"not taken: {why}", why=why)
    return parser


class _Refuse(argparse.Action):
    """A diffusers flag whose meaning differs here: stop with the reason."""

    def __init__(self, *args: Any, why: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.why = why

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(f"{self.option_strings[0]} is not taken by this script: {self.why}")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line; `--preset` picks the defaults, so `--preset digits --help` shows the digits values."""
    preset_parser = argparse.ArgumentParser(add_help=False)
    preset_parser.add_argument("--preset", choices=sorted(PRESETS), default="cifar10")
    preset = preset_parser.parse_known_args(argv)[0].preset
    defaults = preset_config(preset)
    args = vars(_parser(defaults).parse_args(argv))
    for name in ("preset", "local_rank", *(flag.lstrip("-") for flag in DIFFUSERS_ONLY)):
        args.pop(name, None)
    given = sys.argv[1:] if argv is None else argv
    if args["train_data_dir"] is not None and not any(a.startswith("--dataset_name") for a in given):
        args["dataset_name"] = None  # a folder of images replaces the preset's dataset
    return TrainConfig(**args)


def epochs_as_steps(cfg: TrainConfig, num_images: int) -> dict[str, int]:
    """diffusers' epoch-based flags (--num_epochs, --save_images_epochs, --save_model_epochs) as the step counts they
    mean for `num_images` images, under the names of the step-based settings they replace."""
    per_epoch = math.ceil(num_images / cfg.train_batch_size)
    epochs = {
        "max_train_steps": cfg.num_epochs,
        "save_images_steps": cfg.save_images_epochs,
        "save_pipeline_steps": cfg.save_model_epochs,
    }
    return {name: n * per_epoch for name, n in epochs.items() if n is not None}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset's TrainConfig with `overrides` applied."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})
