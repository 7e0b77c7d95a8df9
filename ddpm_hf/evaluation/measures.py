"""The feature networks and reference statistics an evaluation's metrics need (`Measures`, all loaded and checked
before any sampling), and the metrics computed from the stored samples (`compute_metrics`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics_format import CMMD, FD_DINOV2, FID, INCEPTION_SCORE, KID, NLL, PRECISION, RECALL
from .clip import CLIP, cmmd
from .dinov2 import DINOv2, EncoderWeightsError
from .frechet import FIDStatistics, frechet_distance
from .inception import InceptionV3
from .inception_score import inception_score_of_blocks
from .jobs import (
    FeatureSpec,
    bound_summary,
    shard_statistics,
)
from .kid import kernel_inception_distance
from .precision_recall import precision_recall
from .reference import resolve_reference
from .report import INCEPTION_METRICS, REFERENCE_FEATURE_METRICS, EvaluationError, EvaluationSettings
from .store import SampleStore, ShardStore


def check_reference(path: str, extractor: Any, what: str) -> FIDStatistics:
    """Statistics from fid_stats.py, refused (before any sampling) unless made by this very extractor."""
    reference = FIDStatistics.load(path)
    try:
        reference.check_made_by(extractor, path)
    except ValueError as e:
        raise EvaluationError(f"{what}: {e}") from None
    return reference


def reference_record(path: str, reference: FIDStatistics) -> dict:
    return {
        "path": str(path),
        "dataset": reference.dataset,
        "split": reference.split,
        "num_images": reference.num_images,
    }


class Measures:
    """The feature networks and reference statistics the metrics need, all loaded and checked before sampling."""

    def __init__(self, settings: EvaluationSettings, device: torch.device) -> None:
        metrics = set(settings.metrics)
        self.inception = self.dinov2 = self.reference = self.reference_dinov2 = self.reference_features = None
        self.clip = self.reference_clip = self.reference_clip_features = None
        if metrics & INCEPTION_METRICS:
            self.inception = InceptionV3(settings.inception_weights, device=device)
            if "is" in metrics and not self.inception.has_classifier:
                raise EvaluationError(
                    f"the Inception Score: {self.inception.weights_path} has no classifier head; pass Inception "
                    "weights with one (inception_weights, --inception_weights)"
                )
        if "fd_dinov2" in metrics:
            try:
                self.dinov2 = DINOv2(settings.dinov2_model, device=device)
            except EncoderWeightsError as error:
                raise EvaluationError(f"fd_dinov2: {error}") from error
        if "cmmd" in metrics:
            try:
                self.clip = CLIP(settings.clip_model, device=device)
            except EncoderWeightsError as error:
                raise EvaluationError(f"cmmd: {error}") from error
        if ({"fid"} | REFERENCE_FEATURE_METRICS) & metrics:
            path = resolve_reference(settings.reference)  # a file, or hf://datasets/... fetched into the Hub cache
            self.reference = check_reference(path, self.inception, "fid/precision_recall/kid")
            if REFERENCE_FEATURE_METRICS & metrics:
                self.reference_features = self.load_reference_features(path, self.reference, "precision_recall/kid")
        if self.dinov2 is not None:
            path = resolve_reference(settings.reference_dinov2)
            self.reference_dinov2 = check_reference(path, self.dinov2, "fd_dinov2")
        if self.clip is not None:
            path = resolve_reference(settings.reference_clip)
            self.reference_clip = check_reference(path, self.clip, "cmmd")
            self.reference_clip_features = self.load_reference_features(path, self.reference_clip, "cmmd")
        self.specs = []
        if self.inception is not None:
            self.specs.append(FeatureSpec(self.inception, probabilities="is" in metrics))
        if self.dinov2 is not None:
            self.specs.append(FeatureSpec(self.dinov2))
        if self.clip is not None:
            self.specs.append(FeatureSpec(self.clip))

    @staticmethod
    def load_reference_features(path: str, reference: FIDStatistics, what: str) -> np.ndarray:
        """The reference's features themselves (memory-mapped), which `what` compares the samples' with."""
        if not reference.features_file:
            raise EvaluationError(
                f"{what} needs the reference's features, and {path} has none: make it with "
                "examples/fid_stats.py --save_features"
            )
        features_path = Path(path).parent / reference.features_file
        if not features_path.is_file():
            raise EvaluationError(f"{features_path}, the features of {path}, is missing")
        features = np.load(features_path, mmap_mode="r", allow_pickle=False)
        if features.shape != (reference.num_images, len(reference.mu)):
            raise EvaluationError(f"{features_path} has shape {features.shape}, not that of {path}'s features")
        return features

    def spec(self, extractor: Any) -> FeatureSpec:
        return next(s for s in self.specs if s.extractor is extractor)

    def extractors(self) -> dict[str, dict]:
        """What the report records of the feature networks."""
        out = {}
        if self.inception is not None:
            out["inception"] = {"path": str(self.inception.weights_path), "id": self.inception.weights_id}
        if self.dinov2 is not None:
            out["dinov2"] = {"model": self.dinov2.model, "id": self.dinov2.weights_id}
        if self.clip is not None:
            out["clip"] = {"model": self.clip.model, "id": self.clip.weights_id}
        return out


def compute_metrics(
    settings: EvaluationSettings, measures: Measures, samples: SampleStore, nll: ShardStore | None, num_nll: int
) -> dict:
    """Every asked metric from the shards (main process), each with its image count and feature extractor, under
    the keys of `ddpm_hf.metrics_format` (what the model card reads)."""
    metrics, details, n, asked = {}, {}, settings.num_samples, set(settings.metrics)
    if "fid" in asked:
        stats = shard_statistics(samples, measures.spec(measures.inception), n)
        metrics[FID.key] = frechet_distance(stats, measures.reference)
        reference = reference_record(settings.reference, measures.reference)
        details[FID.key] = {"num_samples": n, "features": FID.features, "reference": reference}
    if "is" in asked:
        blocks = samples.blocks(measures.spec(measures.inception).probabilities_name, n)
        metrics[INCEPTION_SCORE.key], metrics[INCEPTION_SCORE.spread] = inception_score_of_blocks(
            blocks, n, settings.is_splits
        )
        record = {"num_samples": n, "features": INCEPTION_SCORE.features, "splits": settings.is_splits}
        details[INCEPTION_SCORE.key] = record
    if "precision_recall" in asked:
        features = samples.array(measures.spec(measures.inception).features_name, n)
        pr = precision_recall(measures.reference_features, features, device=measures.inception.device)
        metrics[PRECISION.key], metrics[RECALL.key] = pr.precision, pr.recall
        record = {"num_samples": n, "features": PRECISION.features, "k": pr.k}
        record["reference"] = reference_record(settings.reference, measures.reference)
        details[PRECISION.key] = details[RECALL.key] = record
    if "kid" in asked:
        features = samples.array(measures.spec(measures.inception).features_name, n)[0:n]
        metrics[KID.key], metrics[KID.spread] = kernel_inception_distance(
            features, measures.reference_features, settings.kid_subsets, settings.kid_subset_size, settings.seed
        )
        details[KID.key] = {
            "num_samples": n,
            "features": KID.features,
            "subsets": settings.kid_subsets,
            "subset_size": min(settings.kid_subset_size, n, len(measures.reference_features)),
            "reference": reference_record(settings.reference, measures.reference),
        }
    if "fd_dinov2" in asked:
        stats = shard_statistics(samples, measures.spec(measures.dinov2), n)
        metrics[FD_DINOV2.key] = frechet_distance(stats, measures.reference_dinov2)
        reference = reference_record(settings.reference_dinov2, measures.reference_dinov2)
        details[FD_DINOV2.key] = {"num_samples": n, "features": FD_DINOV2.features, "reference": reference}
    if "cmmd" in asked:
        embeddings = samples.array(measures.spec(measures.clip).features_name, n)[0:n]
        metrics[CMMD.key] = cmmd(embeddings, measures.reference_clip_features)
        reference = reference_record(settings.reference_clip, measures.reference_clip)
        details[CMMD.key] = {"num_samples": n, "features": CMMD.features, "reference": reference}
    if nll is not None:
        summary = bound_summary(nll, num_nll)
        metrics[NLL.key], metrics[NLL.spread] = summary["bpd"], summary["bpd_stderr"]
        details[NLL.key] = {
            "num_images": summary["num_images"],
            "data": {"dataset": settings.nll_dataset, "split": settings.nll_split},
        }
    non_finite = [name for name, value in metrics.items() if value is not None and not math.isfinite(value)]
    if non_finite:
        raise EvaluationError(f"{', '.join(non_finite)} came out NaN or infinite: not reported as results")
    return {"metrics": metrics, "measurements": details}
