"""Inception Score: exp(E_x KL(p(y|x) ‖ p(y))), reported as mean ± std over splits like the original code."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from .defaults import IS_SPLITS


def inception_score(probabilities: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Mean and standard deviation of the score over `splits` consecutive, equal parts of an [N, K] probability array.

    Parts are cut at i·N // splits as in improved-gan's `inception_score.py`; with `splits=1` this is the paper's
    released `classifier_score_from_logits` on softmax(logits).
    """
    from scipy.special import rel_entr  # the eval extra; imported when a score is asked

    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise InputError(f"need an [N, K] probability array with N >= splits >= 1, got {p.shape} and {splits} splits")
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits : (i + 1) * len(p) // splits]
        kl = rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1)  # 0·log 0 = 0 for empty classes
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_of_blocks(
    blocks: Iterable[np.ndarray], num_images: int, splits: int = IS_SPLITS
) -> tuple[float, float]:
    """`inception_score` of the first `num_images` rows of [n, K] probability blocks, in one pass and flat memory.

    Per split, E_x KL(p(y|x) ‖ p(y)) = E_x Σ_y p log p − Σ_y p̄ log p̄ with p̄ = E_x p(y|x), so only Σ_x p and
    Σ_x Σ_y p log p are kept per split (0·log 0 = 0); splits are cut at i·N // splits as in `inception_score`.
    """
    from scipy.special import xlogy  # the eval extra; imported when a score is asked

    if num_images < splits or splits < 1:
        raise InputError(f"need num_images >= splits >= 1, got {num_images} images and {splits} splits")
    bounds = np.array([i * num_images // splits for i in range(splits + 1)])
    sum_p, sum_plogp, row = None, np.zeros(splits), 0
    for block in blocks:
        p = np.asarray(block[: num_images - row], dtype=np.float64)
        if sum_p is None:
            sum_p = np.zeros((splits, p.shape[1]))
        split = np.searchsorted(bounds, np.arange(row, row + len(p)), side="right") - 1
        np.add.at(sum_p, split, p)
        np.add.at(sum_plogp, split, xlogy(p, p).sum(axis=1))
        row += len(p)
        if row >= num_images:
            break
    if row < num_images:
        raise InputError(f"only {row} probability rows for {num_images} images")
    counts = np.diff(bounds)[:, None]
    mean_p = sum_p / counts
    scores = np.exp(sum_plogp / counts[:, 0] - xlogy(mean_p, mean_p).sum(axis=1))
    return float(np.mean(scores)), float(np.std(scores))
