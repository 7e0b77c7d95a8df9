"""Sample-quality metrics: FID and Inception Score on TF Inception-v3 features as the paper measured them, plus
improved precision/recall and FD_DINOv2; a sharded, resumable sample store for evaluations on many processes.

`evaluate(pipe_or_folder, metrics=[...], reference=..., num_samples=...)` samples and measures a pipeline (one
process, or every process of an `accelerate launch`) and returns an `EvaluationReport`; `reference_statistics(
dataset, output=...)` computes the reference statistics it compares with;
`python -m ddpm_hf.evaluation.fid DIR_A DIR_B` prints the FID between two folders of images.
"""

from .analytic import estimate_analytic_variance
from .dinov2 import DEFAULT_DINOV2, DINOv2, DINOv2WeightsError
from .features import compute_features, dataset_statistics, image_folder, statistics_of
from .frechet import FeatureSums, FIDStatistics, frechet_distance
from .inception import InceptionV3, NoClassifierError, default_weights_path, resize_like_tensorflow
from .inception_score import inception_score, inception_score_of_blocks
from .precision_recall import PrecisionRecall, manifold_radii, precision_recall
from .reference import push_reference, reference_statistics, resolve_reference
from .report import EvaluationError, EvaluationReport, EvaluationSettings
from .runner import evaluate, evaluate_bound
from .store import SampleStore, Shard, ShardStore, StoreDamagedError, StoreMismatchError

__all__ = [
    "DEFAULT_DINOV2",
    "DINOv2",
    "DINOv2WeightsError",
    "EvaluationError",
    "EvaluationReport",
    "EvaluationSettings",
    "FIDStatistics",
    "FeatureSums",
    "InceptionV3",
    "NoClassifierError",
    "PrecisionRecall",
    "SampleStore",
    "Shard",
    "ShardStore",
    "StoreDamagedError",
    "StoreMismatchError",
    "compute_features",
    "dataset_statistics",
    "default_weights_path",
    "estimate_analytic_variance",
    "evaluate",
    "evaluate_bound",
    "frechet_distance",
    "image_folder",
    "inception_score",
    "inception_score_of_blocks",
    "manifold_radii",
    "precision_recall",
    "push_reference",
    "reference_statistics",
    "resize_like_tensorflow",
    "resolve_reference",
    "statistics_of",
]
