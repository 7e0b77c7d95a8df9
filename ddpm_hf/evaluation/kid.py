"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the squared MMD between two sets of
Inception features under the cubic polynomial kernel, estimated without bias, averaged over random subsets as
their code (and torch-fidelity, clean-fid) report it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .defaults import KID_SUBSET_SIZE as SUBSET_SIZE
from .defaults import KID_SUBSETS as SUBSETS


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)³ for every pair of rows, in float64 (Bińkowski et al., Sec. 4)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimate of MMD² (Gretton et al. 2012, Lemma 6) under `polynomial_kernel`: the within-set means
    leave out the diagonal k(x_i, x_i)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise InputError(f"the unbiased MMD² needs at least 2 rows in each set, got {m} and {n}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_inception_distance(
    samples: np.ndarray,
    reference: np.ndarray,
    num_subsets: int = SUBSETS,
    subset_size: int = SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID of [N, D] sample features against [M, D] reference features: the mean of `mmd2_unbiased` over
    `num_subsets` pairs of random subsets (each drawn without replacement, `subset_size` rows or all there are),
    and the standard deviation over those subsets. The subsets come from a generator seeded `seed`."""
    if num_subsets < 1:
        raise InputError(f"num_subsets must be ≥ 1, got {num_subsets}")
    size = min(subset_size, len(samples), len(reference))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = np.asarray(samples[np.sort(rng.choice(len(samples), size, replace=False))])
        y = np.asarray(reference[np.sort(rng.choice(len(reference), size, replace=False))])
        values.append(mmd2_unbiased(x, y))
    return float(np.mean(values)), float(np.std(values))
