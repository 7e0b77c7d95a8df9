"""Training with Accelerate: the paper's recipe as small pieces (config, batches, EMA, checkpoints, loop)."""

from .config import PRESETS, TrainConfig, parse_args, preset_config
from .loop import TrainingDiverged, train

__all__ = ["PRESETS", "TrainConfig", "TrainingDiverged", "parse_args", "preset_config", "train"]
