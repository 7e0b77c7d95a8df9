"""Kernel Inception Distance against a direct computation of its definition (Bińkowski et al. 2018)."""

import itertools

import numpy as np
import pytest

from ddpm_hf.evaluation.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² written out pair by pair, with k(a, b) = (a·b / d + 1)³."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_the_unbiased_estimate_is_its_definition():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.2, size=(9, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-12)
    assert polynomial_kernel(x, y).shape == (7, 9)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd2_unbiased(x[:1], y)


def test_kid_is_zero_on_average_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(400, 16)).astype(np.float32)
    same = rng.normal(size=(300, 16)).astype(np.float32)
    shifted = same + 0.5
    kid_same, std_same = kernel_inception_distance(same, reference, num_subsets=20, subset_size=100)
    kid_shifted, _ = kernel_inception_distance(shifted, reference, num_subsets=20, subset_size=100)
    assert abs(kid_same) < 3 * std_same  # unbiased: no positive offset for equal distributions
    assert kid_shifted > 20 * max(std_same, abs(kid_same))
    # With subsets as large as the sets, every subset is the whole of both: the estimate itself, with no spread.
    whole, spread = kernel_inception_distance(same[:50], reference[:50], num_subsets=3, subset_size=1000)
    assert whole == mmd2_unbiased(same[:50], reference[:50]) and spread == 0.0
    assert kernel_inception_distance(same, reference, 5, 100, seed=3) == kernel_inception_distance(
        same, reference, 5, 100, seed=3
    )  # the subsets come from the seed
    assert kernel_inception_distance(same, reference, 5, 100, seed=3) != kernel_inception_distance(
        same, reference, 5, 100, seed=4
    )


def test_subsets_are_capped_by_the_reference_rows_too():
    """1,200 samples against a 500-row reference with subsets of 1,000: each subset is capped at 500 rows on both
    sides, not drawn as 1,000 reference rows out of 500 (numpy: "Cannot take a larger sample than population")."""
    rng = np.random.default_rng(2)
    samples, reference = rng.normal(size=(1200, 8)), rng.normal(size=(500, 8))
    kid, spread = kernel_inception_distance(samples, reference, num_subsets=2, subset_size=1000)
    assert np.isfinite(kid) and spread > 0.0  # the sample subsets differ from one another
    # With every sample row alike, any 30-row subset of them is the same set: the estimate is fixed, and it is the
    # one on the whole 30-row reference.
    alike = np.repeat(rng.normal(size=(1, 8)), 80, axis=0)
    small = rng.normal(size=(30, 8))
    kid, spread = kernel_inception_distance(alike, small, num_subsets=3, subset_size=50)
    assert kid == pytest.approx(direct_mmd2(alike[:30], small), rel=1e-12) and spread == pytest.approx(0.0, abs=1e-12)
    # The same the other way round: fewer samples than the subset size and the reference.
    kid, _ = kernel_inception_distance(small, alike, num_subsets=3, subset_size=50)
    assert kid == pytest.approx(direct_mmd2(small, alike[:30]), rel=1e-12)
