"""Fréchet distances (FID, FD_DINOv2): Gaussian statistics of image features, cached as .npz, and their distance.

Statistics come either from a whole feature array (`FIDStatistics.from_features`) or from float64 sums that are
accumulated block by block and merged (`FeatureSums`), so that their memory does not grow with the image count.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..publish import write_file

_METADATA = ("weights_id", "dataset", "split", "extractor", "features_file")
EXTRACTOR_NAMES = {"inception": "Inception", "dinov2": "DINOv2"}  # how the errors name each feature extractor


@dataclass
class FIDStatistics:
    """Mean and covariance of image features (Inception pool features by default), with what they were computed from.

    Saved as .npz with `mu` and `sigma` like pytorch-fid's and the TTUR code's files (which load here too), plus
    `num_images` and, when known, `weights_id` (which weights file), `dataset`, `split`, `extractor` (`"inception"`
    or `"dinov2"`; files without one are Inception's) and `features_file` (the features themselves, an .npy beside
    the statistics, which precision/recall need).
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    weights_id: str | None = None
    dataset: str | None = None
    split: str | None = None
    extractor: str | None = None
    features_file: str | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mu).all() and np.isfinite(self.sigma).all()):
            raise InputError(
                "the statistics hold NaN or infinite values: the features, or the images they were computed from, "
                "are not finite (a diverged model samples NaN); nothing meaningful can be measured from them"
            )

    def check_made_by(self, extractor: Any, source: str) -> None:
        """Raise ValueError unless these statistics (read from `source`) come from `extractor`: the same kind of
        network (`extractor.name`) and, when recorded, the same weights (`extractor.weights_id`)."""
        if self.extractor_name != extractor.name:
            raise InputError(
                f"{source} holds {self.extractor_name} statistics, but these features come from {extractor.name}; "
                f"make them with examples/fid_stats.py --extractor {extractor.name}"
            )
        if self.weights_id not in (None, extractor.weights_id):
            raise InputError(
                f"{source} was computed with other {EXTRACTOR_NAMES.get(extractor.name, extractor.name)} weights "
                f"({self.weights_id}) than these ({extractor.weights_id}); recompute it with examples/fid_stats.py "
                "and the same weights"
            )

    @property
    def extractor_name(self) -> str:
        """The feature extractor, `"inception"` for files written before statistics recorded it."""
        return self.extractor or "inception"

    @classmethod
    def from_features(cls, features: np.ndarray, **metadata: str | None) -> FIDStatistics:
        """Mean and unbiased covariance (float64) of an [N, D] feature array."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise InputError(f"need an [N, D] feature array with N >= 2, got shape {features.shape}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), len(features), **metadata)

    @classmethod
    def from_sums(cls, sums: FeatureSums, **metadata: str | None) -> FIDStatistics:
        """Mean and unbiased covariance from float64 sums of features and of their outer products."""
        return cls(sums.mean(), sums.covariance(), sums.count, **metadata)

    def save(self, path: str | Path) -> None:
        """Write the statistics to an .npz file, whole (`ddpm_hf.publish.write_file`)."""
        extra = {k: np.array(getattr(self, k)) for k in _METADATA if getattr(self, k) is not None}
        buffer = io.BytesIO()  # not a path, so that numpy does not append ".npz" to the name
        np.savez(buffer, mu=self.mu, sigma=self.sigma, num_images=np.array(self.num_images), **extra)
        write_file(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> FIDStatistics:
        """Read statistics written by `save` (or any .npz with `mu` and `sigma`)."""
        with np.load(path, allow_pickle=False) as data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise InputError(f"{path} is not an FID statistics file: it lacks {sorted(missing)}")
            metadata = {k: str(data[k]) for k in _METADATA if k in data.files}
            num_images = int(data["num_images"]) if "num_images" in data.files else 0
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
        problem = covariance_problem(mu, sigma)
        if problem:
            raise InputError(f"{path} does not hold valid FID statistics: {problem}; recompute them (fid_stats.py)")
        return cls(mu, sigma, num_images, **metadata)


def covariance_problem(mu: np.ndarray, sigma: np.ndarray) -> str | None:
    """Why (mu, sigma) cannot be a mean and covariance (shapes, non-finite values, a sigma that is not symmetric
    positive semi-definite, as every covariance is), or None. A non-PSD sigma still gives a finite "FID"."""
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        return f"mu has shape {mu.shape} and sigma {sigma.shape}; they must be [D] and [D, D]"
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        return "it holds NaN or infinite values"
    scale = max(float(np.abs(sigma).max()), 1e-300)
    if not np.allclose(sigma, sigma.T, rtol=0, atol=1e-9 * scale):
        return f"sigma is not symmetric (largest |sigma - sigmaᵀ| = {float(np.abs(sigma - sigma.T).max()):.3g})"
    lowest = float(np.linalg.eigvalsh(sigma).min())
    if lowest < -1e-6 * scale:  # rounding makes a true covariance's zero eigenvalues slightly negative, no more
        return f"sigma is not positive semi-definite (smallest eigenvalue {lowest:.3g})"
    return None


@dataclass
class FeatureSums:
    """Running float64 sums of [N, D] features — count, Σx and Σxxᵀ — from which their mean and covariance follow.

    Memory is D + D² floats whatever N: features are added block by block (`add`) and sums from other shards or
    processes are merged (`merge`). Sums added in the same order give bit-identical statistics.
    """

    dim: int
    count: int = 0
    sum: np.ndarray = field(default=None)  # type: ignore[assignment]
    outer: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.sum is None:
            self.sum = np.zeros(self.dim, dtype=np.float64)
        if self.outer is None:
            self.outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def add(self, features: np.ndarray) -> FeatureSums:
        """Add the count, Σx and Σxxᵀ of an [n, D] block of features (converted to float64 first)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"expected [n, {self.dim}] features, got shape {x.shape}")
        self.count += len(x)
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: FeatureSums) -> FeatureSums:
        """Add another set of sums (of other images) to these."""
        if other.dim != self.dim:
            raise InputError(f"cannot merge sums of {other.dim}-d features into {self.dim}-d ones")
        self.count += other.count
        self.sum += other.sum
        self.outer += other.outer
        return self

    def mean(self) -> np.ndarray:
        """μ = Σx / N."""
        return self.sum / self.count

    def covariance(self) -> np.ndarray:
        """The unbiased covariance (Σxxᵀ − N μμᵀ) / (N − 1), as np.cov computes it from the features."""
        if self.count < 2:
            raise InputError(f"need at least 2 feature vectors for a covariance, got {self.count}")
        mu = self.mean()
        sigma = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return (sigma + sigma.T) / 2  # exactly symmetric, as the eigendecompositions of the distance assume


def _root(eigenvalues: np.ndarray) -> np.ndarray:
    """√λ, except that eigenvalues below 1e-10 (round-off around 0) are kept as they are, as the reference does."""
    return np.where(eigenvalues < 1e-10, eigenvalues, np.sqrt(np.abs(eigenvalues)))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr(sqrt(Σ1 Σ2)), computed as Tr(sqrt(A Σ2 A)) with A = sqrt(Σ1): both roots are of symmetric matrices.

    This is the paper's released code (a NumPy port of tfgan's `trace_sqrt_product`), with its SVDs of symmetric
    matrices written as the equivalent eigendecompositions, and only eigenvalues for the second (a trace needs no
    vectors), which is several times faster at 2048×2048.
    """
    eigenvalues, vectors = np.linalg.eigh(sigma1)
    a = (vectors * _root(eigenvalues)) @ vectors.T
    return float(_root(np.linalg.eigvalsh(a @ sigma2 @ a)).sum())


def frechet_distance(a: FIDStatistics, b: FIDStatistics) -> float:
    """|μ1 − μ2|² + Tr(Σ1 + Σ2 − 2 sqrt(Σ1 Σ2)), the FID between two sets of statistics."""
    if a.extractor_name != b.extractor_name:
        raise InputError(
            f"statistics of different feature extractors ({a.extractor_name} vs {b.extractor_name}): "
            "their distance would mean nothing; recompute one side with the other's extractor"
        )
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise InputError(f"statistics of different feature sizes: {a.mu.shape} vs {b.mu.shape}")
    if a.weights_id and b.weights_id and a.weights_id != b.weights_id:
        name = EXTRACTOR_NAMES.get(a.extractor_name, a.extractor_name)
        raise InputError(
            f"statistics computed with different {name} weights ({a.weights_id} vs {b.weights_id}): "
            "their distance would mean nothing; recompute one side with the other's weights"
        )
    diff = a.mu - b.mu
    covariance = np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt_product(a.sigma, b.sigma)
    return float(diff @ diff + covariance)
