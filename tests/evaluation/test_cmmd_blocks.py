"""CMMD's kernel means, taken block by block over the rows, against the mean written out pair by pair.

Real evaluations hold tens of thousands of embeddings, many blocks: a block that dropped or repeated a row would
shift CMMD with no error, and only shows with more rows than a block.
"""

import math

import numpy as np
import pytest

from ddpm_hf.evaluation.clip import SIGMA, cmmd, gaussian_kernel_mean


def direct_kernel_mean(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> float:
    """The mean of exp(−‖x_i − y_j‖² / 2σ²) over every pair, one pair at a time."""
    total = 0.0
    for a in x:
        for b in y:
            total += math.exp(-float(np.sum((a - b) ** 2)) / (2.0 * sigma**2))
    return total / (len(x) * len(y))


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    rows = rng.normal(size=(n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5, 7, 16])
def test_every_row_counts_once_whatever_the_block(block):
    rng = np.random.default_rng(block)
    x, y = unit_rows(rng, 13, 6), unit_rows(rng, 9, 6) * 3.0  # 13 rows: blocks of any size leave a short last one
    sigma = 1.5  # a narrow kernel, so that each pair's value differs from the others'
    assert gaussian_kernel_mean(x, y, sigma, block=block) == pytest.approx(direct_kernel_mean(x, y, sigma), rel=1e-12)
    assert gaussian_kernel_mean(y, x, sigma, block=block) == pytest.approx(direct_kernel_mean(y, x, sigma), rel=1e-12)


def test_cmmd_over_more_embeddings_than_a_block():
    """4,100 samples: more than the default block of 4,096 rows, with its last block of 4 rows."""
    rng = np.random.default_rng(0)
    samples = unit_rows(rng, 4100, 3) * 20.0  # spread out: far rows add ~0, so each row's own terms show
    samples[-4:] = 0.0  # the rows of the last block, each close to every reference row
    reference = unit_rows(rng, 5, 3)
    by_row = [direct_kernel_mean(samples[i : i + 1], reference) for i in range(len(samples))]
    k_xy = float(np.mean(by_row))
    assert gaussian_kernel_mean(samples, reference) == pytest.approx(k_xy, rel=1e-12)
    # The within-samples mean, pair by pair, vectorised over one row at a time.
    squared = lambda row: np.sum((samples - row) ** 2, axis=1)  # noqa: E731
    k_xx = float(np.mean([np.exp(-squared(row) / (2.0 * SIGMA**2)).mean() for row in samples]))
    k_yy = direct_kernel_mean(reference, reference)
    assert cmmd(samples, reference) == pytest.approx(1000.0 * (k_xx + k_yy - 2.0 * k_xy), rel=1e-9)
