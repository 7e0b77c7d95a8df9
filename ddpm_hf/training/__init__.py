"""Training with Accelerate: the paper's recipe as small pieces (config, batches, losses, optimiser, EMA,
checkpoints, export, and the loop that runs them)."""

from .config import PRESETS, TrainConfig, parse_args, preset_config
from .loop import Trainer, TrainerCallback, TrainingDiverged, train

__all__ = [
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "TrainerCallback",
    "TrainingDiverged",
    "parse_args",
    "preset_config",
    "train",
]
