"""Improved precision and recall (Kynkäänniemi et al. 2019) of generated images, on features read in blocks.

Each set's manifold is the union of balls around its feature vectors, each ball's radius the distance to the
vector's k-th nearest neighbour within the set (k = 3). Precision is the fraction of generated images inside the
real images' manifold; recall, the fraction of real images inside the generated images' manifold. This is what
improved-diffusion's evaluator (`ManifoldEstimator`, after the authors' code) computes: squared Euclidean distances
‖u‖² − 2u·v + ‖v‖² clamped at 0, the radius taken as the (k+1)-th smallest distance of a row that includes the
vector itself, and "inside" meaning distance ≤ radius. That evaluator first tries its distance blocks in float16;
here they are float32 throughout (TF32 off), which only changes decisions that fall within float16's rounding.

Features are any sliceable [N, D] array — a NumPy array, an `np.load(..., mmap_mode="r")` memory map, or the
sharded store's `ShardedArray` — and are read `block_size` rows at a time, so memory stays at a few blocks and a
distance block whatever N.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..errors import InputError
from .defaults import NEIGHBOURHOOD
from .inception import full_float32

BLOCK_SIZE = 10000  # rows per distance block, as improved-diffusion's evaluator


class FeatureArray(Protocol):
    """What the metrics read features from: a length and row slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice) -> np.ndarray: ...


@dataclass
class PrecisionRecall:
    """Precision and recall with the counts they are fractions of."""

    precision: float
    recall: float
    num_real: int
    num_fake: int
    k: int


def _blocks(features: FeatureArray, block_size: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """(start row, float32 block on `device`) over an [N, D] feature array."""
    for start in range(0, len(features), block_size):
        block = np.array(features[start : start + block_size], dtype=np.float32)  # a copy: maps are read-only
        yield start, torch.from_numpy(block).to(device)


def squared_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances max(‖u‖² − 2 u·vᵀ + ‖v‖², 0) between rows of u [n, D] and v [m, D]."""
    norm_u = u.square().sum(dim=1, keepdim=True)
    norm_v = v.square().sum(dim=1, keepdim=True).T
    return (norm_u - 2.0 * (u @ v.T) + norm_v).clamp_min(0.0)


@torch.inference_mode()
def manifold_radii(
    features: FeatureArray,
    k: int = NEIGHBOURHOOD,
    block_size: int = BLOCK_SIZE,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Squared distance from each feature vector to its k-th nearest neighbour in the same set, float32 [N].

    The vector itself is among the candidates (distance 0), so this is the (k+1)-th smallest distance of its row,
    as the reference takes it; row blocks against column blocks, keeping the k+1 smallest per row.
    """
    device = torch.device(device)
    if len(features) <= k:
        raise InputError(f"need more than k = {k} feature vectors for k-NN radii, got {len(features)}")
    radii = np.empty(len(features), dtype=np.float32)
    with full_float32():
        for start, rows in _blocks(features, block_size, device):
            nearest = torch.full((len(rows), 0), float("inf"), device=device)
            for _, cols in _blocks(features, block_size, device):
                candidates = torch.cat([nearest, squared_distances(rows, cols)], dim=1)
                nearest = torch.topk(candidates, min(k + 1, candidates.shape[1]), dim=1, largest=False).values
            radii[start : start + len(rows)] = nearest[:, k].cpu().numpy()
    return radii


@torch.inference_mode()
def coverage(
    queries: FeatureArray,
    points: FeatureArray,
    radii: np.ndarray,
    block_size: int = BLOCK_SIZE,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """For each query vector, whether it lies in some point's ball: any_j ‖q − p_j‖² ≤ radii_j; bool [N_queries]."""
    device = torch.device(device)
    if len(radii) != len(points):
        raise InputError(f"{len(radii)} radii for {len(points)} points")
    inside = np.zeros(len(queries), dtype=bool)
    with full_float32():
        for start, rows in _blocks(queries, block_size, device):
            hit = torch.zeros(len(rows), dtype=torch.bool, device=device)
            for col_start, cols in _blocks(points, block_size, device):
                r = torch.from_numpy(np.asarray(radii[col_start : col_start + len(cols)], dtype=np.float32))
                hit |= (squared_distances(rows, cols) <= r.to(device)[None, :]).any(dim=1)
            inside[start : start + len(rows)] = hit.cpu().numpy()
    return inside


def precision_recall(
    real: FeatureArray,
    fake: FeatureArray,
    k: int = NEIGHBOURHOOD,
    block_size: int = BLOCK_SIZE,
    device: torch.device | str = "cpu",
) -> PrecisionRecall:
    """Improved precision (fake inside the real manifold) and recall (real inside the fake manifold), k-NN balls."""
    real_radii = manifold_radii(real, k, block_size, device)
    fake_radii = manifold_radii(fake, k, block_size, device)
    precision = coverage(fake, real, real_radii, block_size, device).mean()
    recall = coverage(real, fake, fake_radii, block_size, device).mean()
    return PrecisionRecall(float(precision), float(recall), len(real), len(fake), k)
