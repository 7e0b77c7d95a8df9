"""What identifies a result, built and compared in this one place: the weights, the sampler, the step count, the
precision and the data.

A number (an FID, a bound, a Γ estimate, a checkpoint's next step) holds only for what made it. Every store, report,
card, push and resume records a `ResultIdentity` (or the parts of it that apply) and compares it with
`check_same`, which names every part that differs, so a result is never reused, published or continued under
another sampler, other weights or other data without a word.

- weights: sha256 of the U-Net's weights as `save_pretrained` writes them (one safetensors file), so an in-memory
  network and its saved folder have one hash;
- sampler: the scheduler's class, its `variance_type` where it has one, and a sha256 of its whole config (which
  holds Analytic-DPM's Γ);
- data: the number of images and a sha256 over the ordered examples (their encoded bytes, or their file names and
  sizes where a dataset only points at files).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from .errors import DDPMError
from .metrics_format import SPREAD_KEYS


class IdentityMismatchError(DDPMError, ValueError):
    """A result made by something else (other weights, sampler, steps, precision or data) than what asks for it."""


def files_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 (hex) of the files' bytes, one file after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def folder_weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over a pipeline folder's U-Net safetensors files."""
    return files_sha256(sorted(Path(folder, "unet").glob("*.safetensors")))


def _weights_version(module: torch.nn.Module) -> tuple:
    """Where each weight lives and how often it was written in place: changes whenever the weights do."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors)


def weights_sha256(unet: torch.nn.Module) -> str:
    """sha256 of the network's weights as `save_pretrained` writes them: the same hash as the saved folder's. Cached
    on the module until its weights change (an in-place update or a load)."""
    version = _weights_version(unet)
    cached = getattr(unet, "_ddpm_hf_weights_sha256", None)
    if cached is not None and cached[0] == version:
        return cached[1]
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in unet.state_dict().items()}
    sha = hashlib.sha256(safetensors_bytes(state, metadata={"format": "pt"})).hexdigest()
    object.__setattr__(unet, "_ddpm_hf_weights_sha256", (version, sha))  # not a submodule, not a parameter
    return sha


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of a diffusers config, without its bookkeeping keys (`_class_name`, `_diffusers_version`, ...)."""
    kept = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


# The samplers whose `variance_type` picks σ_t² among fixed choices; the others keep the key only to split a learned
# variance off the network's output, so it says nothing of how they sample.
_VARIANCE_SAMPLERS = ("DDPMPaperScheduler", "DDPMScheduler")


def sampler_identity(scheduler: Any) -> dict[str, Any]:
    """Which sampler made a result: the scheduler's class, its reverse variance (where it picks one) and its
    config's hash."""
    config, name = scheduler.config, type(scheduler).__name__
    return {
        "class": name,
        "variance_type": config.get("variance_type") if name in _VARIANCE_SAMPLERS else None,
        "config_sha256": config_sha256(config),
    }


def describe_sampler(sampler: Mapping[str, Any] | None, num_inference_steps: int | None = None) -> str:
    """A sampler identity in words, as a card states it: `DDPMPaperScheduler (fixed_large), 1000 steps`."""
    if not sampler:
        return "sampler not recorded"
    variance = f" ({sampler['variance_type']})" if sampler.get("variance_type") else ""
    steps = f", {num_inference_steps} steps" if num_inference_steps else ""
    return f"{sampler.get('class', '?')}{variance}{steps}"


def _example_digest(example: Any) -> bytes:
    """What identifies one undecoded image: its encoded bytes, else its file's name and size."""
    if isinstance(example, Mapping):
        if example.get("bytes"):
            return hashlib.sha256(example["bytes"]).digest()
        path = example.get("path")
        if path:
            size = os.path.getsize(path) if os.path.isfile(path) else -1
            return hashlib.sha256(f"{os.path.basename(path)}:{size}".encode()).digest()
    return hashlib.sha256(repr(example).encode()).digest()


def data_fingerprint(dataset: Any, column: str) -> dict[str, Any]:
    """The images a result used: their count and a sha256 over the ordered examples of `column` (undecoded)."""
    digest = hashlib.sha256()
    count = 0
    for start in range(0, len(dataset), 1024):
        for example in dataset[start : start + 1024][column]:
            digest.update(_example_digest(example))
            count += 1
    return {"num_images": count, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class ResultIdentity:
    """What made a result; parts that do not apply to it stay None (a bound has no precision choice, a FID no data).

    `to_dict`/`from_dict` are how it is recorded (manifests, metrics.json, train_config.json)."""

    weights_sha256: str | None = None
    sampler: dict[str, Any] | None = None
    num_inference_steps: int | None = None
    precision: str | None = None
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | None) -> ResultIdentity:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (record or {}).items() if k in names})

    def differences(self, other: ResultIdentity) -> dict[str, tuple[Any, Any]]:
        """The parts recorded on both sides that differ, as (self's, other's)."""
        found = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine is not None and theirs is not None and _normalised(mine) != _normalised(theirs):
                found[f.name] = (mine, theirs)
        return found


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def record_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key of two identity records (a store's manifest and the run asking for it) whose values differ, a key
    missing on one side included, as (recorded, current)."""
    return {
        key: (recorded.get(key), current.get(key))
        for key in sorted(set(recorded) | set(current))
        if _normalised(recorded.get(key)) != _normalised(current.get(key))
    }


def _said(part: str, value: Any) -> str:
    if part == "sampler":
        return describe_sampler(value) + f" (config sha256 {str(value.get('config_sha256', '?'))[:12]})"
    if part == "data":
        return f"{value.get('num_images', '?'):,} images (sha256 {str(value.get('sha256', '?'))[:12]})"
    if part == "weights_sha256":
        return f"weights sha256 {str(value)[:12]}"
    return str(value)


def check_same(made: ResultIdentity, wanted: ResultIdentity, what: str, hint: str = "") -> None:
    """Raise `IdentityMismatchError` naming each part of `what` (e.g. "these metrics") that was made otherwise
    than `wanted` asks, with both values."""
    differences = made.differences(wanted)
    if differences:
        said = "; ".join(f"{part}: {_said(part, a)} against {_said(part, b)}" for part, (a, b) in differences.items())
        raise IdentityMismatchError(f"{what} were made otherwise than asked ({said}){'. ' + hint if hint else ''}")


def check_metrics(
    record: Mapping[str, Any],
    weights: str,
    sampler: Mapping[str, Any],
    *,
    what: str = "these metrics",
    target: str = "the pushed pipeline",
    other_sampler: bool = False,
    other_sampler_hint: str = "other_sampler=True",
) -> None:
    """Refuse metrics (an evaluation report's record) for a card of `target`, whose weights hash is `weights` and
    whose scheduler is `sampler`, unless they were measured on those weights and, unless `other_sampler` says they
    are another sampler's on purpose, with that sampler. A report that does not record its sampler (made before
    samplers were recorded) passes that part; the card then says the sampler was not recorded."""
    measured = record.get("model_weights_sha256")
    if measured != weights:
        raise IdentityMismatchError(
            f"{what} measured other weights than {target}'s (weights sha256 {measured or 'not recorded'} there, "
            f"{weights} here): evaluate {target} and use that report"
        )
    if other_sampler:
        return
    measurements = record.get("measurements") or {}
    for key, value in (record.get("metrics") or {}).items():
        if value is None or key in SPREAD_KEYS:  # a spread is its metric's, checked with it
            continue
        made = (measurements.get(key) or {}).get("sampler") or record.get("sampler")
        if made and made.get("config_sha256") != sampler.get("config_sha256"):
            steps = (measurements.get(key) or {}).get("num_inference_steps")
            raise IdentityMismatchError(
                f"{what} hold {key} measured with {describe_sampler(made, steps)}, but {target} samples with "
                f"{describe_sampler(sampler)} (config sha256 {str(made.get('config_sha256'))[:12]} there, "
                f"{str(sampler.get('config_sha256'))[:12]} here): evaluate with {target}'s scheduler, or pass "
                f"{other_sampler_hint} to publish them as that sampler's (the card names each metric's sampler)"
            )
