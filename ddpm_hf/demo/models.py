"""The demo's models: a pipeline folder or Hub repo opened for the page, and a small cache of the ones in use."""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

from ..errors import DDPMError
from ..pipeline import DDPMPaperPipeline


class ModelError(DDPMError, ValueError):
    """A model that could not be opened: the message says which and why."""


@dataclass
class Model:
    """A loaded pipeline and what the page says about it."""

    name: str
    pipe: DDPMPaperPipeline
    dataset: str | None  # the training dataset named by the model card, if any

    @property
    def num_timesteps(self) -> int:
        return self.pipe.scheduler.config.num_train_timesteps

    @property
    def size(self) -> int:
        return self.pipe.unet.config.sample_size

    @property
    def channels(self) -> int:
        return self.pipe.unet.config.in_channels

    def for_job(self) -> DDPMPaperPipeline:
        """The pipeline for one job: the shared network (its weights are only read) with a scheduler and an interrupt
        flag of the job's own, since both change as a chain runs and visitors' jobs may run at once."""
        pipe = DDPMPaperPipeline(unet=self.pipe.unet, scheduler=copy.deepcopy(self.pipe.scheduler))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def describe(self) -> str:
        params = sum(p.numel() for p in self.pipe.unet.parameters())
        config = self.pipe.scheduler.config
        sampler = type(self.pipe.scheduler).__name__
        variance = f", {config.variance_type}" if "variance_type" in config else ""
        return (
            f"**{self.name}**: {self.size}×{self.size}×{self.channels} images, {params / 1e6:.2f}M parameters, "
            f"T = {config.num_train_timesteps}, {sampler}{variance}"
            + (f", trained on {self.dataset}" if self.dataset else "")
            + f"; running on {self.pipe.device.type}."
        )


def card_datasets(folder: str | Path) -> list[str]:
    """The datasets a pipeline folder's model card lists (none without a card)."""
    card = Path(folder, "README.md")
    if not card.is_file():
        return []
    return list(ModelCard.load(card).data.datasets or [])


def model_folder(name: str, token: bool | None = None) -> str:
    """A pipeline folder, or a Hub repo id fetched into the Hub cache with `token` (False: without credentials)."""
    return name if os.path.isdir(name) else DDPMPaperPipeline.download(name, token=token)


def load_model(name: str, device: str, token: bool | None = None) -> Model:
    """A pipeline folder or Hub repo id, loaded on `device`; `ModelError` says why one cannot be opened."""
    try:
        folder = model_folder(name, token)
        pipe = DDPMPaperPipeline.from_pretrained(folder).to(device)
    except Exception as e:  # not a folder, not a pipeline, not on the Hub, unreadable weights...
        raise ModelError(f"{name} could not be opened as a DDPM pipeline: {e}") from e
    if not isinstance(pipe.unet.config.sample_size, int) or pipe.unet.config.in_channels not in (1, 3):
        raise ModelError(f"{name}: the demo shows square grayscale or RGB images")
    pipe.set_progress_bar_config(disable=True)
    return Model(name, pipe, (card_datasets(folder) or [None])[0])


class Models:
    """Loaded pipelines by name, the most recently used few kept in memory (a bound on what visitors can load)."""

    def __init__(self, device: str, token: bool | None = None, keep: int = 2) -> None:
        self.device, self.token, self.keep = device, token, keep
        self.loaded: OrderedDict[str, Model] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, name: str) -> Model:
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = load_model(name, self.device, self.token)
                while len(self.loaded) > self.keep:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(name)
            return self.loaded[name]
