"""Hooks into the training loop, for tests, tools and anything that observes a run without editing it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Trainer


class TrainerCallback:
    """Hooks into `Trainer.run_loop`; override what you need (each is a no-op here). They run on every process."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """After set-up and any resume, before the first step."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After each optimizer step and what follows it (logging, checkpoint, grids); `trainer.step` is its count."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After the checkpoint `path` is complete on disk."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the final pipeline is saved (and pushed)."""
