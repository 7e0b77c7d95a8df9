"""The two checkpoint formats of the paper's released networks, read layer by layer in diffusers' tensor layout.

- The authors' TensorFlow checkpoints: variables `model/<scope>/{W,b}` (GroupNorm `gamma`, `beta`), the EMA of each
  in `<variable>/ExponentialMovingAverage` (`tf.train.ExponentialMovingAverage`'s shadow), optimizer slots beside
  them. Kernels are [kh, kw, in, out], dense and 1×1 (`nin`) weights [in, out].
- pesser/pytorch_diffusion's state dicts (`torch.save(model.state_dict())`): the same layers under PyTorch module
  paths, PyTorch layouts, the attention projections as 1×1 convs. A file holds one set of weights; the port names
  EMA files `ema_diffusion_<name>_model/model-<step>.ckpt`.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from ..errors import DDPMError, MissingFileError
from .layout import Layer
from .tf_checkpoint import CheckpointFormatError, TFCheckpoint, checkpoint_prefix

TF_SCOPE = "model/"  # the authors' scripts build the network under variable scope "model"
EMA_SUFFIX = "/ExponentialMovingAverage"
TF_PARAMS = {"weight": "W", "bias": "b"}
TF_NORM_PARAMS = {"weight": "gamma", "bias": "beta"}
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ConversionError(DDPMError, ValueError):
    """A checkpoint that cannot be converted as asked; the message says why."""


class SourceWeights(ABC):
    """A checkpoint's weights (EMA or raw, as chosen) read layer by layer in diffusers' layout."""

    format: str  # for messages and the model card
    files: list[Path]  # what the weights were read from
    ema: bool
    step: int | None  # the training step the checkpoint records, if it does

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def name(self, layer: Layer, param: str) -> str:
        """The stored name of a layer's `param` ("weight" or "bias") in the chosen weights."""

    @abstractmethod
    def has(self, name: str) -> bool: ...

    @abstractmethod
    def channels(self, layer: Layer) -> tuple[int, int] | None:
        """(out, in) channels of a conv or dense layer's stored weight (of the raw weights: the structure), or None
        where the layer is not stored."""

    @abstractmethod
    def tensor(self, layer: Layer, param: str) -> torch.Tensor:
        """A layer's `param` in diffusers' layout."""

    @abstractmethod
    def unused(self, used: set[str]) -> list[str]:
        """The stored network weights that are not among `used` (names as `name` gives them)."""


def _expect_rank(name: str, array: np.ndarray | torch.Tensor, rank: int, kind: str) -> None:
    if array.ndim != rank:
        raise ConversionError(
            f"{name} has shape {tuple(array.shape)}, where the reference's {kind} layer has {rank} dims"
        )


class TFWeights(SourceWeights):
    format = "TensorFlow checkpoint of the authors' code (hojonathanho/diffusion)"

    def __init__(self, prefix: Path, ema: bool, verify: bool = True) -> None:
        super().__init__(prefix)
        self.checkpoint = TFCheckpoint(prefix, verify=verify)
        self.files = [self.checkpoint.index_file, *self.checkpoint.data_files]
        self.ema = ema
        names = [n for n in self.checkpoint.entries if n.startswith(TF_SCOPE)]
        params = set(TF_PARAMS.values()) | set(TF_NORM_PARAMS.values())
        self.raw = {n for n in names if n.rsplit("/", 1)[-1] in params}  # not the EMA shadows nor optimizer slots
        if not self.raw:
            some = ", ".join(sorted(self.checkpoint.entries)[:5]) or "nothing"
            raise ConversionError(f"{prefix} holds no network variables under {TF_SCOPE!r} (it holds {some}): not a "
                                  "checkpoint of the authors' diffusion code")  # fmt: skip
        if ema and not any(n.endswith(EMA_SUFFIX) for n in names):
            raise ConversionError(
                f"EMA weights were asked for, but {prefix} stores no ExponentialMovingAverage variables: convert its "
                "raw weights with ema=False (--no_ema)"
            )
        step = self.checkpoint.entries.get("global_step")
        self.step = int(self.checkpoint.read("global_step")) if step is not None and step.shape == () else None

    def name(self, layer: Layer, param: str) -> str:
        base = f"{TF_SCOPE}{layer.tf}/{(TF_NORM_PARAMS if layer.kind == 'norm' else TF_PARAMS)[param]}"
        return base + EMA_SUFFIX if self.ema else base

    def has(self, name: str) -> bool:
        return name in self.checkpoint.entries

    def channels(self, layer: Layer) -> tuple[int, int] | None:
        entry = self.checkpoint.entries.get(f"{TF_SCOPE}{layer.tf}/W")
        return None if entry is None else (entry.shape[-1], entry.shape[-2])  # [..., in, out]

    def tensor(self, layer: Layer, param: str) -> torch.Tensor:
        name = self.name(layer, param)
        array = self.checkpoint.read(name)
        if param == "weight" and layer.kind != "norm":
            _expect_rank(name, array, 4 if layer.kind == "conv" else 2, layer.kind)
            # conv: [kh, kw, in, out] -> [out, in, kh, kw]; dense and 1×1: [in, out] -> [out, in]
            array = array.transpose(3, 2, 0, 1) if layer.kind == "conv" else array.T
            if layer.kind == "shortcut":
                array = array[:, :, None, None]
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def unused(self, used: set[str]) -> list[str]:
        return sorted(self.raw - {n.removesuffix(EMA_SUFFIX) for n in used})


def is_ema_file(path: Path) -> bool:
    """Whether the port's naming marks `path` (or its folder) as EMA weights: `ema_...`."""
    return path.name.startswith("ema_") or path.parent.name.startswith("ema_")


class TorchWeights(SourceWeights):
    format = "state dict of pesser/pytorch_diffusion (a PyTorch port of the authors' code)"

    def __init__(self, path: Path, ema: bool) -> None:
        super().__init__(path)
        self.files, self.ema = [path], ema
        if ema != is_ema_file(path):
            raise ConversionError(
                f"EMA weights were asked for, but {path} holds raw ones: pytorch_diffusion stores EMA weights only in "
                "files named ema_... (ema_diffusion_<model>_model/model-<step>.ckpt); convert this one with "
                "ema=False (--no_ema), or the model's ema_ file"
                if ema
                else f"raw weights were asked for (ema=False), but {path} is named as pytorch_diffusion names EMA "
                "weights (ema_...): convert it with ema=True, or the model's file without ema_"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, or one holding more than tensors
            raise ConversionError(f"{path} is not a PyTorch state dict that loads safely: {e}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConversionError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
        self.state = state
        match = re.search(r"model-(\d+)\.", path.name)
        self.step = int(match.group(1)) if match else None

    def name(self, layer: Layer, param: str) -> str:
        return f"{layer.torch}.{param}"

    def has(self, name: str) -> bool:
        return name in self.state

    def channels(self, layer: Layer) -> tuple[int, int] | None:
        weight = self.state.get(f"{layer.torch}.weight")
        return None if weight is None or weight.ndim < 2 else (weight.shape[0], weight.shape[1])

    def tensor(self, layer: Layer, param: str) -> torch.Tensor:
        name = self.name(layer, param)
        value = self.state[name]
        if param == "weight" and layer.kind == "attn":  # a 1×1 conv here, a Linear in diffusers
            _expect_rank(name, value, 4, "1×1 projection")
            value = value[:, :, 0, 0]
        return value.to(torch.float32).contiguous()

    def unused(self, used: set[str]) -> list[str]:
        return sorted(set(self.state) - used)


def open_source(path: str | os.PathLike, ema: bool = True, verify: bool = True) -> SourceWeights:
    """The weights of a checkpoint: a TF checkpoint (its prefix, `.index`, a data shard, or a folder with a
    `checkpoint` file or one `.index`) or a pytorch_diffusion state dict (the file, or a folder holding one).
    `verify` checks a TF checkpoint's CRC-32C checksums."""
    path = Path(path)
    try:
        prefix = checkpoint_prefix(path)
    except CheckpointFormatError as e:
        raise ConversionError(str(e)) from None
    if prefix is not None:
        try:
            return TFWeights(prefix, ema, verify)
        except CheckpointFormatError as e:
            raise ConversionError(f"{prefix}: {e}") from None
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in TORCH_SUFFIXES)
        if len(files) != 1:
            found = ", ".join(p.name for p in files) or "none"
            raise ConversionError(
                f"{path} is a folder without a TF checkpoint (no `checkpoint` file, no .index) and with "
                f"{len(files)} PyTorch files ({found}): name the checkpoint itself"
            )
        path = files[0]
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path} (nor a TF checkpoint with that prefix: no {path}.index)")
    return TorchWeights(path, ema)
