"""Sample-quality metrics as the paper measured them: FID and Inception Score on TF Inception-v3 features.

`python -m ddpm_hf.evaluation.fid DIR_A DIR_B` prints the FID between two folders of images.
"""

from .features import compute_features, dataset_statistics, image_folder, statistics_of
from .frechet import FIDStatistics, frechet_distance
from .inception import InceptionV3, NoClassifierError, default_weights_path, resize_like_tensorflow
from .inception_score import inception_score

__all__ = [
    "FIDStatistics",
    "InceptionV3",
    "NoClassifierError",
    "compute_features",
    "dataset_statistics",
    "default_weights_path",
    "frechet_distance",
    "image_folder",
    "inception_score",
    "resize_like_tensorflow",
    "statistics_of",
]
