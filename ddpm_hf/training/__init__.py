"""Training with Accelerate: the paper's recipe as small pieces (config, batches, losses, optimiser, EMA,
checkpoints, export, and the loop that runs them)."""

from .callbacks import TrainerCallback
from .config import PRESETS, TrainConfig, parse_args, preset_config
from .interrupt import TrainingInterrupted
from .loop import Trainer, TrainingDiverged, train

__all__ = [
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "TrainerCallback",
    "TrainingDiverged",
    "TrainingInterrupted",
    "parse_args",
    "preset_config",
    "train",
]
